# preflight.sh — sourced by scripts that start external programs (the demo, the VM runner):
# check that what they will run or load exists before starting it, and say in one line which
# Debian package to install when it does not. test/deps resolves every need_tool/need_file call
# and every charon plugin named here with dpkg -S and checks that `make deps` installs its owner.

# CHARON_PLUGIN_DIR is where Debian's strongSwan keeps its plugins (a test points it elsewhere).
CHARON_PLUGIN_DIR=${CHARON_PLUGIN_DIR:-/usr/lib/ipsec/plugins}

# preflight_fail MESSAGE prints MESSAGE as the one line that says what to do, and exits 1.
preflight_fail() { printf 'missing: %s\n' "$*" >&2; exit 1; }

# need_tool NAME PACKAGE: NAME must be in PATH.
need_tool() {
	command -v "$1" >/dev/null 2>&1 || preflight_fail "$1 not found: apt-get install $2"
}

# need_file PATH PACKAGE: PATH must exist.
need_file() {
	[ -e "$1" ] || preflight_fail "$1 not found: apt-get install $2"
}

# charon_plugin_package NAME prints the Debian package that ships charon plugin NAME.
# openssl and gcm are in libstrongswan-standard-plugins, which strongswan-charon only Recommends.
charon_plugin_package() {
	case $1 in
	openssl | gcm) echo libstrongswan-standard-plugins ;;
	kernel-libipsec) echo libcharon-extra-plugins ;;
	socket-default | updown) echo strongswan-libcharon ;;
	vici) echo strongswan-swanctl ;;
	*) echo libstrongswan ;;
	esac
}

# need_charon_plugins NAME...: every plugin of a strongswan.conf `load` list must be installed;
# charon would otherwise start and fail the negotiation later ("negotiated DH group not supported").
need_charon_plugins() {
	local p
	for p in "$@"; do
		[ -f "$CHARON_PLUGIN_DIR/libstrongswan-$p.so" ] ||
			preflight_fail "charon plugin '$p' ($CHARON_PLUGIN_DIR/libstrongswan-$p.so): apt-get install $(charon_plugin_package "$p")"
	done
}
