#!/bin/sh
# bank.sh -- provisions the partner ("bank") of the seed's tunnel: strongSwan (charon-systemd +
# swanctl, kernel ESP), IKEv1 main mode, 3DES/SHA1/modp1024, PFS, PSK, $BANK <-> $OURS, with the
# bank's LAN 10.20.0.0/24 (tunnel api) and 10.30.0.0/24 (tunnel db) on a dummy interface
# holding 10.20.0.10 and 10.30.0.10, the hosts to ping. Run as root by the Vagrantfile (VM
# "bank") and by the VM test (test/kernel TestSystemdLifecycle, in a network namespace).
set -eu
OURS=${OURS:-192.0.2.1}
BANK=${BANK:-192.0.2.2}
PSK=${PSK:-SUPERPASSWORD}

# by file: the VM test's image has them unpacked without a dpkg database (and no network)
if [ ! -x /usr/sbin/charon-systemd ] || [ ! -x /usr/sbin/swanctl ] || [ ! -x /sbin/ip ] ||
	[ ! -f /usr/lib/ipsec/plugins/libstrongswan-openssl.so ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		charon-systemd strongswan-swanctl libstrongswan-standard-plugins iproute2
fi

cat > /etc/swanctl/conf.d/ours.conf <<CONF
connections {
  ours {
    version = 1
    local_addrs = $BANK
    remote_addrs = $OURS
    proposals = 3des-sha1-modp1024
    local { auth = psk
            id = $BANK }
    remote { auth = psk
             id = $OURS }
    children {
      api { local_ts = 10.20.0.0/24
            remote_ts = 10.10.1.1/32
            esp_proposals = 3des-sha1-modp1024 }
      db { local_ts = 10.30.0.0/24
           remote_ts = 10.10.1.1/32
           esp_proposals = 3des-sha1-modp1024 }
    }
  }
}
secrets {
  ike-ours { id = $OURS
             secret = "$PSK" }
}
CONF
chmod 600 /etc/swanctl/conf.d/ours.conf

# the bank's LAN, again at every boot
cat > /etc/systemd/system/bank-lan.service <<'UNIT'
[Unit]
Description=the bank's LAN hosts 10.20.0.10 and 10.30.0.10 on dummy interface lan0
Before=strongswan.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link add lan0 type dummy
ExecStart=/sbin/ip addr add 10.20.0.10/24 dev lan0
ExecStart=/sbin/ip addr add 10.30.0.10/24 dev lan0
ExecStart=/sbin/ip link set lan0 up
ExecStop=/sbin/ip link del lan0
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now bank-lan.service
systemctl enable strongswan.service
systemctl restart strongswan.service
echo "bank: strongSwan up, $(swanctl --list-conns | head -1)"
