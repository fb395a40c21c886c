// Package emit writes connections as espgw YAML, the form `espgw config check` reads, with
// comments where a converter (racoon import, sheet import) has something to say. Keys come in
// the order of the README; defaults that carry no information (replay window, DPD timeout)
// are left out.
package emit

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/ike/proposal"
	"github.com/espgw/espgw/model"
)

// Connection is one connection to write. Exactly one of PSK (inline), PSKFile or PSKNote
// is written: the key, a racoon psk.txt path, or a commented-out psk line saying why the
// key is not here ("sent separately").
type Connection struct {
	model.Connection
	PSKFile  string
	PSKNote  string
	Comments []string // written above the connection, one "# " line each
}

// Write writes a configuration file holding conns (in order) after the header comment lines.
func Write(w io.Writer, header []string, conns []Connection) error {
	var b strings.Builder
	for _, h := range header {
		comment(&b, "", h)
	}
	b.WriteString("connections:\n")
	for _, c := range conns {
		writeConnection(&b, c)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// comment writes text as comment lines; bytes YAML would not keep inside a comment (invalid
// UTF-8, control characters such as CR) become '?'.
func comment(b *strings.Builder, indent, text string) {
	text = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(text, "?"))
	for l := range strings.SplitSeq(text, "\n") {
		fmt.Fprintf(b, "%s# %s\n", indent, l)
	}
}

func writeConnection(b *strings.Builder, c Connection) {
	const in = "    "
	for _, s := range c.Comments {
		comment(b, "  ", s)
	}
	fmt.Fprintf(b, "  %s:\n", Scalar(c.Name))
	fmt.Fprintf(b, in+"local_address: %s\n", addr(c.LocalAddress))
	fmt.Fprintf(b, in+"remote_address: %s\n", addr(c.RemoteAddress))
	if c.LocalID.Kind != 0 && !(c.LocalID.Kind == model.IDAddr && c.LocalID.Addr == c.LocalAddress) {
		fmt.Fprintf(b, in+"local_id: %s\n", Scalar(c.LocalID.String()))
	}
	if c.RemoteID.Kind != 0 && !(c.RemoteID.Kind == model.IDAddr && c.RemoteID.Addr == c.RemoteAddress) {
		fmt.Fprintf(b, in+"remote_id: %s\n", Scalar(c.RemoteID.String()))
	}
	switch {
	case c.PSKFile != "":
		fmt.Fprintf(b, in+"psk_file: %s\n", Scalar(c.PSKFile))
	case len(c.PSK) > 0:
		fmt.Fprintf(b, in+"psk: %s\n", quote(string(c.PSK)))
	default:
		fmt.Fprintf(b, in+"# psk: \"...\"  # %s\n", c.PSKNote)
	}
	if sa := c.ServiceAddress; sa != nil {
		fmt.Fprintf(b, in+"service_address: {address: %s, interface: %s}\n", sa.Address, Scalar(sa.Interface))
	}
	ike := c.IKE
	b.WriteString(in + "ike:\n")
	if ike.IsV2() {
		b.WriteString(in + "  version: 2\n")
	} else {
		fmt.Fprintf(b, in+"  mode: %s\n", ike.Mode)
	}
	fmt.Fprintf(b, in+"  proposals: [%s]\n", ike.FormatProposals())
	fmt.Fprintf(b, in+"  lifetime: %s\n", Duration(ike.Lifetime))
	fmt.Fprintf(b, in+"  nat_traversal: %s\n", ike.NATTraversal)
	if ike.DPDDelay > 0 {
		fmt.Fprintf(b, in+"  dpd_delay: %s\n", Duration(ike.DPDDelay))
		if ike.DPDTimeout != config.DefaultDPDTimeout {
			fmt.Fprintf(b, in+"  dpd_timeout: %s\n", Duration(ike.DPDTimeout))
		}
	}
	b.WriteString(in + "tunnels:\n")
	for _, t := range c.Tunnels {
		writeTunnel(b, in+"  ", t)
	}
}

func writeTunnel(b *strings.Builder, in string, t model.Tunnel) {
	fmt.Fprintf(b, "%s%s:\n", in, Scalar(t.Name))
	in += "  "
	fmt.Fprintf(b, "%slocal_subnet: %s\n", in, model.Prefixes(t.LocalSubnets))
	fmt.Fprintf(b, "%sremote_subnet: %s\n", in, model.Prefixes(t.RemoteSubnets))
	if t.Protocol != 0 {
		fmt.Fprintf(b, "%sprotocol: %d\n", in, t.Protocol)
	}
	if t.LocalPort != 0 {
		fmt.Fprintf(b, "%slocal_port: %d\n", in, t.LocalPort)
	}
	if t.RemotePort != 0 {
		fmt.Fprintf(b, "%sremote_port: %d\n", in, t.RemotePort)
	}
	fmt.Fprintf(b, "%sproposals: [%s]\n", in, proposal.FormatESP(t.Proposals))
	fmt.Fprintf(b, "%slifetime: %s\n", in, Duration(t.Lifetime))
	if t.LifeKilobytes != 0 {
		fmt.Fprintf(b, "%slifetime_kilobytes: %d\n", in, t.LifeKilobytes)
	}
	if t.ReplayWindow != config.DefaultReplayWindow {
		fmt.Fprintf(b, "%sreplay_window: %d\n", in, t.ReplayWindow)
	}
	fmt.Fprintf(b, "%sstart: %s\n", in, t.Start)
}

// Duration formats d the way people write lifetimes: 24h, 8h, 90m, 45s, 1h30m.
func Duration(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	h, m, s := d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	var out string
	if h > 0 {
		out += strconv.FormatInt(int64(h), 10) + "h"
	}
	if m > 0 {
		out += strconv.FormatInt(int64(m), 10) + "m"
	}
	if s > 0 {
		out += strconv.FormatInt(int64(s), 10) + "s"
	}
	return out
}

func addr[T fmt.Stringer](a T) string {
	if s := a.String(); s != "invalid IP" && s != "" {
		return s
	}
	return `""`
}

// Scalar writes s bare when YAML reads it back as the same string, quoted otherwise.
func Scalar(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/@", r)) {
			return quote(s)
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~":
		return quote(s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "@") {
		return quote(s)
	}
	return s
}

// quote is a YAML double-quoted scalar; Go's escapes (\", \\, \n, \xNN, \uNNNN) are YAML's too.
func quote(s string) string { return strconv.Quote(s) }

// TunnelName names a tunnel after its remote side, for converters whose input has no names:
// "10.20.0.0-24", "10.22.0.10-32-tcp-443".
func TunnelName(remote netip.Prefix, port uint16, proto uint8) string {
	n := strings.ReplaceAll(remote.Masked().String(), "/", "-")
	switch proto {
	case 0:
	case 1:
		n += "-icmp"
	case 6:
		n += "-tcp"
	case 17:
		n += "-udp"
	default:
		n += fmt.Sprintf("-proto%d", proto)
	}
	if port != 0 {
		n += fmt.Sprintf("-%d", port)
	}
	return n
}
