package strongswan

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Config describes one site-to-site connection of a strongSwan partner, IKEv1 unless Version is 2.
// Addresses, identities and traffic selectors are strings in swanctl.conf syntax.
type Config struct {
	Name       string // connection and CHILD_SA name; "" = "s2s"
	LocalAddr  string // local_addrs, e.g. "192.0.2.2"
	RemoteAddr string // remote_addrs, e.g. "192.0.2.1" or "%any"
	LocalID    string // "" = LocalAddr
	RemoteID   string // "" = RemoteAddr
	PSK        string

	IKEProposals string // swanctl syntax, e.g. "3des-sha1-modp1024"
	ESPProposals string // swanctl syntax, e.g. "aes256gcm16-modp2048"
	LocalTS      string // comma-separated, e.g. "10.20.0.0/24"
	RemoteTS     string

	Version     int    // IKE version: 1 (0) or 2
	Aggressive  bool   // aggressive mode instead of main mode (IKEv1)
	StartAction string // child start_action: none (default), trap or start
	ExtraConn   string // raw swanctl.conf lines added inside connections.<Name>
	ExtraChild  string // raw swanctl.conf lines added inside children.<Name>
	LogLevel    int    // charon ike/chd log level; 0 = 4, which logs keys (Keys needs it)

	// KernelESP makes charon install its SAs and policies in the kernel (kernel-netlink)
	// instead of doing ESP in userspace (kernel-libipsec), and install no routes: the test's
	// own routes lead the traffic into the policies. It needs a kernel with ESP.
	KernelESP bool

	// HalfOpenPerIP is charon.block_threshold, how many half-open IKE_SAs charon keeps from
	// one peer address before it ignores that address's new ones; 0 = charon's 5. One espgw
	// with many connections to one charon's many addresses needs one per connection.
	HalfOpenPerIP int

	// Charon holds raw strongswan.conf lines added inside charon { }, e.g.
	// "cookie_threshold = 1" or "fragment_size = 500".
	Charon string

	// Children are further CHILD_SAs of the connection, with its ESP proposals and start
	// action (IKEv2 negotiates them under one IKE_SA).
	Children []Child

	// More are further connections of the same charon (a partner with many peers: one
	// local address each). Only their connection fields count; the first Config's own
	// charon settings (LogLevel, KernelESP) apply to all.
	More []Config
}

// Child is a further CHILD_SA of a connection: its name and traffic selectors.
type Child struct {
	Name, LocalTS, RemoteTS string
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "s2s"
	}
	if c.LocalID == "" {
		c.LocalID = c.LocalAddr
	}
	if c.RemoteID == "" {
		c.RemoteID = c.RemoteAddr
	}
	if c.StartAction == "" {
		c.StartAction = "none"
	}
	if c.LogLevel == 0 {
		c.LogLevel = 4
	}
}

// Charon's explicit plugin lists. Debian has no des plugin: 3DES comes from openssl.
const (
	cryptoPlugins = "random nonce openssl aes sha1 sha2 md5 hmac gcm pem pkcs1 x509 pubkey kdf "
	// kernel-libipsec precedes kernel-netlink so it becomes the IPsec backend (the host kernel
	// has no ESP); kernel-netlink still handles addresses and routes.
	libipsecPlugins = cryptoPlugins + "kernel-libipsec kernel-netlink socket-default vici updown"
	netlinkPlugins  = cryptoPlugins + "kernel-netlink socket-default vici updown"
	swanctlPlugins  = "pem pkcs1 pkcs8 x509 pubkey openssl random nonce"
)

// PluginDir is where Debian's strongSwan keeps the plugins.
const PluginDir = "/usr/lib/ipsec/plugins"

// pluginPackages names the Debian package of each plugin loaded here that libstrongswan (a
// dependency of strongswan-charon) does not ship. strongswan-charon only Recommends
// libstrongswan-standard-plugins, so an install without recommends lacks openssl and gcm, and
// charon then fails every modp, 3DES and GCM negotiation. test/deps checks it with dpkg -S.
var pluginPackages = map[string]string{
	"openssl":         "libstrongswan-standard-plugins",
	"gcm":             "libstrongswan-standard-plugins",
	"kernel-libipsec": "libcharon-extra-plugins",
	"socket-default":  "strongswan-libcharon",
	"updown":          "strongswan-libcharon",
	"vici":            "strongswan-swanctl",
}

// PluginFiles maps the file of every plugin charon (in the mode kernelESP selects) and swanctl
// load to the Debian package that ships it.
func PluginFiles(kernelESP bool) map[string]string {
	load := libipsecPlugins
	if kernelESP {
		load = netlinkPlugins
	}
	files := make(map[string]string)
	for _, p := range strings.Fields(load + " " + swanctlPlugins) {
		pkg, ok := pluginPackages[p]
		if !ok {
			pkg = "libstrongswan"
		}
		files[PluginDir+"/libstrongswan-"+p+".so"] = pkg
	}
	return files
}

// writeStrongswanConf writes the strongswan.conf of c for an instance living in dir.
func writeStrongswanConf(w io.Writer, dir string, c Config) error {
	plugins, routes := libipsecPlugins, `install_routes = yes
	routing_table = 220
	routing_table_prio = 220`
	if c.KernelESP {
		plugins, routes = netlinkPlugins, "install_routes = no"
	}
	blockThreshold := ""
	if c.HalfOpenPerIP > 0 {
		blockThreshold = fmt.Sprintf("block_threshold = %d", c.HalfOpenPerIP)
	}
	_, err := fmt.Fprintf(w, `charon {
	load_modular = no
	load = %[3]s
	%[4]s
	%[6]s
	%[7]s
	retransmit_tries = 3
	# as responder, charon refuses aggressive mode with PSK unless told otherwise
	i_dont_care_about_security_and_use_aggressive_mode_psk = yes
	filelog {
		main {
			path = %[1]s/charon.log
			time_format = %%H:%%M:%%S
			ike_name = yes
			append = no
			flush_line = yes
			default = 1
			ike = %[2]d
			chd = %[2]d
			cfg = 2
			knl = 2
			net = 1
			esp = 2
			lib = 1
		}
	}
	plugins {
		vici {
			socket = unix://%[1]s/run/charon.vici
		}
		kernel-libipsec {
			allow_peer_ts = no
		}
	}
}
swanctl {
	load = %[5]s
	socket = unix://%[1]s/run/charon.vici
}
`, dir, c.LogLevel, plugins, routes, swanctlPlugins, blockThreshold, c.Charon)
	return err
}

// writeSwanctlConf writes the swanctl.conf holding c's connections (c and c.More) and PSKs.
func writeSwanctlConf(w io.Writer, c Config) error {
	all := append([]Config{c}, c.More...)
	for i := range all {
		all[i].setDefaults()
	}
	if _, err := io.WriteString(w, "connections {\n"); err != nil {
		return err
	}
	for _, c := range all {
		if err := writeConnection(w, c); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(w, "}\nsecrets {\n"); err != nil {
		return err
	}
	for _, c := range all {
		if _, err := fmt.Fprintf(w, `	ike-%[1]s {
		id-local = %[2]s
		id-remote = %[3]s
		secret = 0x%[4]s
	}
`, c.Name, c.LocalID, c.RemoteID, hex.EncodeToString([]byte(c.PSK))); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "}\n")
	return err
}

// writeConnection writes c's entry of connections {}.
func writeConnection(w io.Writer, c Config) error {
	_, err := fmt.Fprintf(w, `	%[1]s {
		version = %[14]d
		aggressive = %[2]s
		local_addrs = %[3]s
		remote_addrs = %[4]s
		proposals = %[5]s
		local {
			auth = psk
			id = %[6]s
		}
		remote {
			auth = psk
			id = %[7]s
		}
%[12]s
		children {
			%[1]s {
				mode = tunnel
				local_ts = %[8]s
				remote_ts = %[9]s
				esp_proposals = %[10]s
				start_action = %[11]s
%[13]s
			}
%[15]s		}
	}
`, c.Name, yesNo(c.Aggressive), c.LocalAddr, c.RemoteAddr, c.IKEProposals, c.LocalID, c.RemoteID,
		c.LocalTS, c.RemoteTS, c.ESPProposals, c.StartAction,
		indent(c.ExtraConn, "\t\t"), indent(c.ExtraChild, "\t\t\t\t"), max(c.Version, 1), moreChildren(c))
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func indent(s, prefix string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

// moreChildren writes c.Children's entries of children {}.
func moreChildren(c Config) string {
	var b strings.Builder
	for _, ch := range c.Children {
		fmt.Fprintf(&b, "\t\t\t%s {\n\t\t\t\tmode = tunnel\n\t\t\t\tlocal_ts = %s\n\t\t\t\tremote_ts = %s\n\t\t\t\tesp_proposals = %s\n\t\t\t\tstart_action = %s\n\t\t\t}\n",
			ch.Name, ch.LocalTS, ch.RemoteTS, c.ESPProposals, c.StartAction)
	}
	return b.String()
}
