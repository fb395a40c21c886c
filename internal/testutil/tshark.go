package testutil

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Row is one packet of tshark -T fields output: field name → every occurrence of the field in
// the packet, outermost first (an ESP packet decrypted in tunnel mode has two ip.src values).
type Row map[string][]string

// First returns the first (outermost) occurrence of field, "" if absent.
func (r Row) First(field string) string {
	if v := r[field]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Last returns the last (innermost) occurrence of field, "" if absent.
func (r Row) Last(field string) string {
	if v := r[field]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// RunTShark runs `tshark -n -r pcap args...` and returns its stdout. stderr is only returned as
// part of an error (tshark warns about running as root on every run).
func RunTShark(pcap string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("tshark", append([]string{"-n", "-r", pcap}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+noConfigDir)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(strings.Replace(stderr.String(), rootWarning, "", 1))
		return stdout.String(), fmt.Errorf("tshark -r %s %s: %w: %s", pcap, strings.Join(redactUAT(args), " "), err, msg)
	}
	return stdout.String(), nil
}

// noConfigDir does not exist, so tshark ignores the user's personal preferences and key tables
// and the result depends only on the options passed.
const noConfigDir = "/nonexistent/espgw-tshark"

// rootWarning is what tshark prints on every run as root; it is not an error.
const rootWarning = `Running as user "root" and group "root". This could be dangerous.`

// redactUAT hides key tables in error messages: they carry key material.
func redactUAT(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if p := strings.SplitN(a, ":", 3); len(p) == 3 && p[0] == "uat" {
			a = p[0] + ":" + p[1] + ":[redacted]"
		}
		out[i] = a
	}
	return out
}

// TShark dissects pcap with keys loaded (ESP decryption and ICV checks on), keeps the packets
// matching the display filter ("" = all) and returns the requested fields of each.
// It skips the test if tshark is missing and fails it if tshark fails.
func TShark(tb testing.TB, pcap string, keys Keys, filter string, fields ...string) []Row {
	tb.Helper()
	RequireTool(tb, "tshark", "tshark")
	args := keys.Options()
	args = append(args, tsharkDecodeAs...)
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	args = append(args, "-T", "fields", "-E", "header=n", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := RunTShark(pcap, args...)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	var rows []Row
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		vals := strings.Split(line, "\t")
		r := make(Row, len(fields))
		for i, f := range fields {
			if i < len(vals) && vals[i] != "" {
				r[f] = strings.Split(vals[i], "|")
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// tsharkDecodeAs makes the ESP-in-UDP port explicit. Wireshark already dissects UDP 4500 as
// UDP encapsulation of IPsec (RFC 3948: non-ESP marker → ISAKMP, else ESP); this keeps it so.
var tsharkDecodeAs = []string{"-d", "udp.port==4500,udpencap"}

// ESPRow is what tshark saw in one ESP packet.
type ESPRow struct {
	Frame      int
	OuterSrc   netip.Addr
	OuterDst   netip.Addr
	UDPEncap   bool // ESP in UDP (RFC 3948)
	SPI        uint32
	Seq        uint32
	ICVGood    bool // tshark verified the ICV with the loaded keys
	Decrypted  bool // tshark decrypted it and found an inner IP packet
	InnerSrc   netip.Addr
	InnerDst   netip.Addr
	InnerProto uint8 // IP protocol of the inner packet (1 = ICMP)
}

// ESPRows decrypts every ESP packet of pcap with keys and returns what tshark found, in order.
func ESPRows(tb testing.TB, pcap string, keys Keys) []ESPRow {
	tb.Helper()
	rows := TShark(tb, pcap, keys, "esp",
		"frame.number", "ip.src", "ip.dst", "ip.proto", "udp.srcport", "esp.spi", "esp.sequence", "esp.icv_good")
	out := make([]ESPRow, 0, len(rows))
	for _, r := range rows {
		var e ESPRow
		var err error
		fail := func(field string, perr error) {
			tb.Fatalf("tshark ESP row %v: field %s: %v", r, field, perr)
		}
		if e.Frame, err = strconv.Atoi(r.First("frame.number")); err != nil {
			fail("frame.number", err)
		}
		if e.OuterSrc, err = netip.ParseAddr(r.First("ip.src")); err != nil {
			fail("ip.src", err)
		}
		if e.OuterDst, err = netip.ParseAddr(r.First("ip.dst")); err != nil {
			fail("ip.dst", err)
		}
		e.UDPEncap = r.First("udp.srcport") != ""
		spi, err := strconv.ParseUint(strings.TrimPrefix(r.First("esp.spi"), "0x"), 16, 32)
		if err != nil {
			fail("esp.spi", err)
		}
		e.SPI = uint32(spi)
		seq, err := strconv.ParseUint(r.First("esp.sequence"), 10, 32)
		if err != nil {
			fail("esp.sequence", err)
		}
		e.Seq = uint32(seq)
		e.ICVGood = tsharkBool(r.First("esp.icv_good"))
		if len(r["ip.src"]) >= 2 {
			e.Decrypted = true
			e.InnerSrc, _ = netip.ParseAddr(r["ip.src"][1])
			e.InnerDst, _ = netip.ParseAddr(r["ip.dst"][1])
			if p := r["ip.proto"]; len(p) >= 2 {
				v, _ := strconv.ParseUint(p[1], 10, 8)
				e.InnerProto = uint8(v)
			}
		}
		out = append(out, e)
	}
	return out
}

func tsharkBool(s string) bool {
	return s == "1" || strings.EqualFold(s, "true")
}

// Protocols dissects pcap without any keys and returns the sorted set of protocol names tshark
// found in all frames (frame.protocols, e.g. eth, ethertype, ip, udp, isakmp, udpencap, esp).
// A protected flow leaking in clear shows up as e.g. "icmp" or "tcp".
func Protocols(tb testing.TB, pcap string) []string {
	tb.Helper()
	set := map[string]bool{}
	for _, r := range TShark(tb, pcap, Keys{}, "", "frame.protocols") {
		for _, p := range strings.Split(r.First("frame.protocols"), ":") {
			if p != "" {
				set[p] = true
			}
		}
	}
	ps := make([]string, 0, len(set))
	for p := range set {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}
