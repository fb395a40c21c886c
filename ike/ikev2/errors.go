package ikev2

import "fmt"

// ParseError reports a field of a received message that does not fit RFC 7296's wire format:
// which field, the value found and what is allowed there. Every decoding function returns its
// errors as *ParseError, so the engine can answer with the notification Notify returns.
type ParseError struct {
	Field    string // e.g. "proposal length"
	Value    any    // the value found on the wire
	Expected string // e.g. ">= 8"

	code NotifyType // zero means INVALID_SYNTAX
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("ikev2: %s %v, want %s", e.Field, e.Value, e.Expected)
}

// Notify returns the error notification that describes e to the peer: INVALID_SYNTAX unless
// it is INVALID_MAJOR_VERSION or UNSUPPORTED_CRITICAL_PAYLOAD (RFC 7296 sections 2.5, 3.10.1).
func (e *ParseError) Notify() NotifyType {
	if e.code == 0 {
		return NotifyInvalidSyntax
	}
	return e.code
}

// invalid returns an INVALID_SYNTAX error.
func invalid(field string, value any, expected string) *ParseError {
	return &ParseError{Field: field, Value: value, Expected: expected}
}

// atMost formats the expectation for a length that must fit the bytes left in its container.
func atMost(n int) string {
	return fmt.Sprintf("<= %d (bytes left)", n)
}
