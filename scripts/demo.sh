#!/usr/bin/env bash
# espgw demo: the seed's MegaTelecom tunnel (IKEv1 main mode, 3des-sha1-modp1024, PFS
# modp1024, service address 10.10.1.1 -> partner subnet 10.20.0.0/24), run entirely inside
# three throw-away network namespaces on this machine:
#
#   gw (espgw)  eth1 192.0.2.1 + 10.10.1.1  ===  partner 192.0.2.2 / 10.20.0.1  ===  host 10.20.0.10
#
# The partner is strongSwan (charon) when installed, else a second espgw
# (ESPGW_DEMO_PARTNER=espgw picks the second espgw anyway).
# Usage (as root): scripts/demo.sh BINARY     e.g. scripts/demo.sh build/espgw
# Exits non-zero if the tunnel does not come up or the ping through it fails.
set -euo pipefail

BIN=${1:?usage: $0 path/to/espgw}
BIN=$(readlink -f "$BIN")
CHARON=/usr/lib/ipsec/charon
# The partner's plugins. kernel-libipsec before kernel-netlink: this kernel may lack ESP, so
# charon does ESP in userspace. 3DES and modp1024 come from openssl.
CHARON_PLUGINS="random nonce openssl aes sha1 sha2 md5 hmac gcm pem pkcs1 x509 pubkey kdf kernel-libipsec kernel-netlink socket-default vici updown"
SWANCTL_PLUGINS="pem pkcs1 x509 pubkey openssl random nonce"
PARTNER=${ESPGW_DEMO_PARTNER:-auto}
PSK=SUPERPASSWORD

step=0
say() { step=$((step + 1)); printf '\n%d. %s\n' "$step" "$*"; }
info() { printf '   %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it creates network namespaces): sudo $0 $*"
[ -x "$BIN" ] || die "$BIN is not an executable (build it with: make build)"
. "$(dirname "$0")/lib/preflight.sh"
need_tool ip iproute2
need_tool ping iputils-ping
# The partner: strongSwan if it is installed (then with every plugin it loads), else a second espgw.
if [ "$PARTNER" != espgw ] && [ -x "$CHARON" ] && command -v swanctl >/dev/null; then
	need_charon_plugins $CHARON_PLUGINS $SWANCTL_PLUGINS
	PARTNER=strongswan
fi

# Everything this script creates, so that the EXIT trap removes exactly that.
suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
NS_GW=demo-gw-$suffix NS_PARTNER=demo-partner-$suffix NS_HOST=demo-host-$suffix
WORK=$(mktemp -d /tmp/espgw-demo.XXXXXX)
created_ns=() pids=()

cleanup() {
	rc=$?
	trap - EXIT INT TERM
	set +e
	if [ "$rc" -ne 0 ]; then
		for log in "$WORK"/*.log; do
			[ -s "$log" ] || continue
			printf '\n--- last lines of %s ---\n' "$(basename "$log")"
			grep -v ' => \|: [0-9A-F][0-9A-F] [0-9A-F][0-9A-F] ' "$log" | tail -n 25
		done
	fi
	say "Tearing down: stopping what this demo started, deleting its namespaces"
	# Newest first: espgw deletes its SAs (and tells the partner) before the partner stops.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for ns in "${created_ns[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$WORK"
	info "done"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# start NS LOGFILE CMD... runs CMD in NS in the background and remembers its PID
# (`ip netns exec` execs CMD, so $! is CMD's own PID).
start() {
	local ns=$1 log=$2; shift 2
	ip netns exec "$ns" "$@" >"$log" 2>&1 &
	pids+=("$!")
}

# wait_for SECONDS DESCRIPTION CMD... retries CMD every 0.2 s.
wait_for() {
	local secs=$1 what=$2; shift 2
	for _ in $(seq $((secs * 5))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "$what did not happen within ${secs}s"
}

say "Creating three network namespaces: our gateway, the partner, a host behind the partner"
for ns in "$NS_GW" "$NS_PARTNER" "$NS_HOST"; do
	ip netns add "$ns"
	created_ns+=("$ns")
	in_ns "$ns" ip link set lo up
	info "$ns"
done
ip link add eth1 netns "$NS_GW" type veth peer name wan netns "$NS_PARTNER"
ip link add lan netns "$NS_PARTNER" type veth peer name eth0 netns "$NS_HOST"
in_ns "$NS_GW" ip addr add 192.0.2.1/24 dev eth1
in_ns "$NS_GW" ip link set eth1 up
in_ns "$NS_PARTNER" ip addr add 192.0.2.2/24 dev wan
in_ns "$NS_PARTNER" ip addr add 10.20.0.1/24 dev lan
in_ns "$NS_PARTNER" ip link set wan up
in_ns "$NS_PARTNER" ip link set lan up
in_ns "$NS_PARTNER" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
in_ns "$NS_HOST" ip addr add 10.20.0.10/24 dev eth0
in_ns "$NS_HOST" ip link set eth0 up
in_ns "$NS_HOST" ip route add default via 10.20.0.1
info "gateway eth1 192.0.2.1  <->  partner 192.0.2.2, partner 10.20.0.1  <->  host 10.20.0.10"

# The partner's side of the connection, as the partner's Excel sheet would describe it.
if [ "$PARTNER" = strongswan ]; then
	say "Starting the partner: strongSwan (charon, IKEv1, userspace ESP via kernel-libipsec)"
	S=$WORK/strongswan
	mkdir -p "$S/run"
	cat >"$S/strongswan.conf" <<EOF
charon {
	load_modular = no
	load = $CHARON_PLUGINS
	install_routes = yes
	filelog {
		main {
			path = $WORK/charon.log
			time_format = %H:%M:%S
			flush_line = yes
			default = 1
			ike = 1
		}
	}
	plugins {
		vici {
			socket = unix://$S/run/charon.vici
		}
	}
}
swanctl {
	load = $SWANCTL_PLUGINS
	socket = unix://$S/run/charon.vici
}
EOF
	cat >"$S/swanctl.conf" <<EOF
connections {
	espgw {
		version = 1
		local_addrs = 192.0.2.2
		remote_addrs = 192.0.2.1
		proposals = 3des-sha1-modp1024
		local { auth = psk
			id = 192.0.2.2 }
		remote { auth = psk
			id = 192.0.2.1 }
		children {
			espgw {
				mode = tunnel
				local_ts = 10.20.0.0/24
				remote_ts = 10.10.1.1/32
				esp_proposals = 3des-sha1-modp1024
			}
		}
	}
}
secrets {
	ike-espgw {
		id-local = 192.0.2.2
		id-remote = 192.0.2.1
		secret = "$PSK"
	}
}
EOF
	# charon's pid file path is fixed: give this instance its own /run (netns exec has a
	# private mount namespace, so the bind mount stays inside it).
	start "$NS_PARTNER" "$WORK/charon.stdout.log" env STRONGSWAN_CONF="$S/strongswan.conf" \
		sh -c 'mount --bind "$1/run" /run && exec "$2"' sh "$S" "$CHARON"
	wait_for 10 "charon start" test -S "$S/run/charon.vici"
	STRONGSWAN_CONF="$S/strongswan.conf" swanctl --load-all --file "$S/swanctl.conf" --uri "unix://$S/run/charon.vici" \
		>"$WORK/swanctl.out" 2>&1 || { cat "$WORK/swanctl.out"; die "swanctl could not load the partner's connection"; }
	info "charon pid ${pids[-1]}, connection loaded: 3des-sha1-modp1024, 10.20.0.0/24 <-> 10.10.1.1/32"
else
	say "Starting the partner: a second espgw (strongSwan is not installed)"
	cat >"$WORK/partner.yaml" <<EOF
control_socket: $WORK/partner.sock
datapath: auto
connections:
  gateway:
    local_address: 192.0.2.2
    remote_address: 192.0.2.1
    psk: "$PSK"
    ike:
      mode: main
      proposals: [3des-sha1-modp1024]
    tunnels:
      api:
        local_subnet: 10.20.0.0/24
        remote_subnet: 10.10.1.1/32
        proposals: [3des-sha1-modp1024]
        start: manual
EOF
	start "$NS_PARTNER" "$WORK/partner-espgw.log" "$BIN" run -c "$WORK/partner.yaml"
	wait_for 10 "partner espgw start" "$BIN" status --socket "$WORK/partner.sock"
	info "partner espgw pid ${pids[-1]}"
fi

say "Starting espgw on our gateway with the seed's MegaTelecom connection"
cat >"$WORK/espgw.yaml" <<EOF
control_socket: $WORK/espgw.sock
datapath: auto                # xfrm if the kernel has ESP, else userspace ESP over a TUN device
connections:
  megatelecom:
    local_address: 192.0.2.1
    remote_address: 192.0.2.2
    psk: "$PSK"
    service_address: {address: 10.10.1.1/32, interface: eth1}
    ike:
      mode: main
      proposals: [3des-sha1-modp1024]
      lifetime: 24h
      nat_traversal: auto
    tunnels:
      api:
        local_subnet: 10.10.1.1/32
        remote_subnet: 10.20.0.0/24
        proposals: [3des-sha1-modp1024]   # trailing modp1024 = PFS
        lifetime: 8h
        start: on-demand
EOF
sed 's/^/   | /' "$WORK/espgw.yaml"
"$BIN" config check -c "$WORK/espgw.yaml" | sed 's/^/   /'
start "$NS_GW" "$WORK/espgw.log" "$BIN" run -c "$WORK/espgw.yaml"
wait_for 10 "espgw start" "$BIN" status --socket "$WORK/espgw.sock"
espgw() { "$BIN" --socket "$WORK/espgw.sock" "$@"; }
info "espgw pid ${pids[-1]}, $(grep -o 'datapath=[a-z]*' "$WORK/espgw.log" | tail -n 1)"

say "Bringing the tunnel up: espgw up megatelecom/api (IKEv1 main mode + quick mode)"
espgw up megatelecom/api | sed 's/^/   /' || die "the tunnel did not come up"

say "Pinging the host behind the partner (10.20.0.10) from the service address 10.10.1.1"
in_ns "$NS_GW" ping -c 3 -W 2 -I 10.10.1.1 10.20.0.10 | sed 's/^/   /' ||
	die "ping 10.10.1.1 -> 10.20.0.10 through the tunnel failed"

say "espgw status (IKE SA, IPsec SA with its packet and byte counters)"
espgw status | sed 's/^/   /'

say "The tunnel works; everything is removed next"
