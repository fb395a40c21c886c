package ike

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// wallClock matches the calls that bypass Options.Clock.
var wallClock = regexp.MustCompile(`\btime\.(Now|Since|Until|AfterFunc|NewTimer|NewTicker|After|Tick|Sleep)\(`)

// TestOneClock: every time and timer of the engine goes through Options.Clock (timers.go),
// so tests on the manual clock see all of them; a direct time.Now or time.AfterFunc would
// escape it (and an AfterFunc callback would run without the engine lock).
func TestOneClock(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files here: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if wallClock.MatchString(line) {
				t.Errorf("%s:%d bypasses the engine's clock: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
