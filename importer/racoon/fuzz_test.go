package racoon

import (
	"bytes"
	"testing"

	"github.com/espgw/espgw/config"
	"github.com/espgw/espgw/internal/testutil"
)

// FuzzRacoonConf: any racoon.conf either fails to parse or converts without panicking, and
// the YAML it produces is read back by espgw's loader without a syntax error.
func FuzzRacoonConf(f *testing.F) {
	testutil.AddFileSeeds(f, "seed/racoon.conf")
	testutil.AddFileSeeds(f, "variants/*.conf")
	testutil.AddFileSeeds(f, "variants/include/racoon.d/*.conf")
	f.Fuzz(func(t *testing.T, src []byte) {
		stmts, err := Parse("fuzz.conf", src)
		if err != nil {
			return
		}
		res := Convert(Input{Racoon: stmts, PSKFile: "/nonexistent/psk.txt", ServiceInterface: "eth1"})
		var buf bytes.Buffer
		if err := res.WriteYAML(&buf, "fuzz.conf"); err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(&buf); err != nil && !isFieldErrors(err) {
			t.Fatalf("import wrote YAML the loader cannot read: %v\n%s", err, buf.String())
		}
	})
}

// FuzzSetkey: any setkey file either fails to parse or yields policies with both tunnel
// endpoints and a valid direction.
func FuzzSetkey(f *testing.F) {
	testutil.AddFileSeeds(f, "seed/ipsec-tools.conf")
	testutil.AddFileSeeds(f, "variants/*.setkey")
	f.Fuzz(func(t *testing.T, src []byte) {
		sk, err := ParseSetkey("fuzz.setkey", src)
		if err != nil {
			return
		}
		for _, p := range sk.Policies {
			if !p.TunnelSrc.IsValid() || !p.TunnelDst.IsValid() || (p.Dir != "in" && p.Dir != "out" && p.Dir != "fwd") {
				t.Fatalf("policy %+v", p)
			}
		}
	})
}

// isFieldErrors reports whether err is only configuration problems (not a YAML syntax error).
func isFieldErrors(err error) bool {
	u, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return false
	}
	for _, e := range u.Unwrap() {
		if _, ok := e.(*config.FieldError); !ok {
			return false
		}
	}
	return true
}
