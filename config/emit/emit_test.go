package emit

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/espgw/espgw/config"
)

func TestScalar(t *testing.T) {
	for in, want := range map[string]string{
		"megatelecom": "megatelecom", "10.20.0.0-24": "10.20.0.0-24", "/etc/racoon/psk.txt": "/etc/racoon/psk.txt",
		"": `""`, "yes": `"yes"`, "Off": `"Off"`, "1024": `"1024"`, "1e5": `"1e5"`, "keyid:abc": `"keyid:abc"`,
		"a b": `"a b"`, "-x": `"-x"`, "@x": `"@x"`, "ключ": `"ключ"`, "a\"b\n": `"a\"b\n"`,
	} {
		if got := Scalar(in); got != want {
			t.Errorf("Scalar(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", 8 * time.Hour: "8h", 90 * time.Minute: "1h30m",
		45 * time.Second: "45s", 3601 * time.Second: "1h1s", 1500 * time.Millisecond: "1.5s"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %s, want %s", d, got, want)
		}
		if back, err := time.ParseDuration(Duration(d)); err != nil || back != d {
			t.Errorf("ParseDuration(%s) = %v, %v", Duration(d), back, err)
		}
	}
}

// TestCommentsStayComments: text from user files (invalid UTF-8, CR, line breaks) cannot
// leave the comment it is written into.
func TestCommentsStayComments(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, []string{"a\rb\xffc\nconnections: {}"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# a?b?c\n# connections: {}\nconnections:\n"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
	_, err = config.Parse(strings.NewReader(buf.String()))
	if err == nil || !strings.Contains(err.Error(), "connections: none defined") {
		t.Errorf("config.Parse: %v, want only the missing connections", err)
	}
}
