package model

import (
	"fmt"
	"io"
)

// Secret's String and LogValue (model.go) cover %v, %s and slog; these cover the rest, so
// that no fmt verb (%#v, %x, %d), JSON or text encoding of a Secret, or of a Config holding
// one, shows the key.

func (Secret) GoString() string             { return "[redacted]" }
func (Secret) Format(f fmt.State, _ rune)   { io.WriteString(f, "[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }
