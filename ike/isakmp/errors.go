package isakmp

import "fmt"

// ParseError reports a field of a received message that does not fit the wire format:
// which field, the value found and what RFC 2408 (or RFC 2407/3947) allows there.
//
// Decode, DecodePayloads, ParseHeader and ParseAttributes return their errors as *ParseError,
// so a responder can answer with the notification Notify returns.
type ParseError struct {
	Field    string // e.g. "proposal length"
	Value    any    // the value found on the wire
	Expected string // e.g. ">= 8"

	code NotifyType // zero means PAYLOAD-MALFORMED
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("isakmp: %s %v, want %s", e.Field, e.Value, e.Expected)
}

// Notify returns the RFC 2408 section 3.14.1 notify message type that describes the error
// to the peer: PAYLOAD-MALFORMED unless the error is more specific (INVALID-MAJOR-VERSION,
// BAD-PROPOSAL-SYNTAX, UNEQUAL-PAYLOAD-LENGTHS, INVALID-ID-INFORMATION, ...).
func (e *ParseError) Notify() NotifyType {
	if e.code == 0 {
		return NotifyPayloadMalformed
	}
	return e.code
}

// malformed returns a PAYLOAD-MALFORMED error.
func malformed(field string, value any, expected string) *ParseError {
	return &ParseError{Field: field, Value: value, Expected: expected}
}

// badProposal returns a BAD-PROPOSAL-SYNTAX error (RFC 2408 section 5.4).
func badProposal(field string, value any, expected string) *ParseError {
	return &ParseError{Field: field, Value: value, Expected: expected, code: NotifyBadProposalSyntax}
}

// atMost formats the expectation for a length that must fit the bytes left in its container.
func atMost(n int) string {
	return fmt.Sprintf("<= %d (bytes left)", n)
}
