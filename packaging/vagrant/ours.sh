#!/bin/sh
# ours.sh [DEB] -- provisions "ours": installs the espgw package (default: the newest
# /vagrant/build/espgw_*_amd64.deb, from `make package`) and configures the seed's tunnel to
# the bank (bank.sh): $OURS <-> $BANK, IKEv1 3DES/SHA1/modp1024, service address 10.10.1.1
# on the interface that routes to the bank, tunnel api to 10.20.0.0/24; then enables and
# starts espgw.service. Afterwards `ping -I 10.10.1.1 10.20.0.10` goes through the tunnel.
# Run as root by the Vagrantfile (VM "ours") and by the VM test (test/kernel TestSystemdLifecycle).
set -eu
OURS=${OURS:-192.0.2.1}
BANK=${BANK:-192.0.2.2}
PSK=${PSK:-SUPERPASSWORD}
DEB=${1:-$(ls /vagrant/build/espgw_*_amd64.deb 2>/dev/null | tail -n 1)}
[ -f "$DEB" ] || { echo "ours.sh: no espgw package (run 'make package' on the host first)" >&2; exit 1; }

# confold: a re-provision keeps the configuration written below
dpkg -i --force-confold "$DEB"

wan=$(ip -o route get "$BANK" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
[ -n "$wan" ] || { echo "ours.sh: no route to the bank at $BANK" >&2; exit 1; }
umask 077
printf '%s %s\n' "$BANK" "$PSK" > /etc/espgw/psk.txt
cat > /etc/espgw/espgw.yaml <<CONF
# The seed's tunnel to the bank (packaging/vagrant/ours.sh).
control_socket: /run/espgw/espgw.sock
datapath: auto
connections:
  bank:
    local_address: $OURS
    remote_address: $BANK
    psk_file: /etc/espgw/psk.txt
    service_address: {address: 10.10.1.1/32, interface: $wan}
    ike: {mode: main, proposals: [3des-sha1-modp1024], lifetime: 24h}
    tunnels:
      api: {local_subnet: 10.10.1.1/32, remote_subnet: 10.20.0.0/24, proposals: [3des-sha1-modp1024], lifetime: 8h, start: always}
CONF
espgw config check -c /etc/espgw/espgw.yaml
systemctl enable espgw.service
# Type=notify: this returns once espgw has applied the configuration
systemctl restart espgw.service
echo "ours: $(systemctl show -P StatusText espgw.service)"
