package model

import "testing"

func TestMatchName(t *testing.T) {
	names := []string{"MegaTelecom", "bank", "Dup", "dup"}
	for _, tc := range []struct {
		in, want, err string
	}{
		{"MegaTelecom", "MegaTelecom", ""},
		{"megatelecom", "MegaTelecom", ""},
		{"BANK", "bank", ""},
		{"dup", "dup", ""}, // the exact name wins over the folded ones
		{"DUP", "", `connection "DUP" is ambiguous: Dup, dup differ only in case (want the name exactly)`},
		{"telco", "", `no connection "telco" (configured: MegaTelecom, bank, Dup, dup)`},
	} {
		got, err := MatchName("connection", tc.in, names)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("MatchName(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := MatchName("tunnel", "api", nil); err == nil || err.Error() != `no tunnel "api" (configured: none)` {
		t.Errorf("no names: %v", err)
	}
}
