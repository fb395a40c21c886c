package testutil

import (
	"encoding/hex"
	"testing"
)

// Unhex decodes a hex test vector, failing the test on a typo.
func Unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("test vector %q: %v", s, err)
	}
	return b
}
