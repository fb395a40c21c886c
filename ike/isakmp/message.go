package isakmp

import (
	"encoding/binary"
	"fmt"
)

// Message is an ISAKMP message: the header and its top-level payloads.
type Message struct {
	Header   Header
	Payloads []Payload
	// Raw holds each payload's wire bytes, same order as Payloads; set by Decode only.
	Raw []RawPayload
}

// Decode decodes one ISAKMP message, which must fill b exactly (Header.Length == len(b)).
// If FlagEncryption is set, only the header is decoded: Payloads and Raw are nil, and the
// caller decrypts b[HeaderLen:] and passes the plaintext to DecodePayloads with
// Header.NextPayload. The payloads alias b.
func Decode(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if uint64(h.Length) != uint64(len(b)) {
		return nil, &ParseError{Field: "header length", Value: h.Length,
			Expected: fmt.Sprintf("== %d (message size)", len(b)), code: NotifyUnequalPayloadLengths}
	}
	m := &Message{Header: h}
	if h.Flags&FlagEncryption != 0 {
		return m, nil
	}
	body := b[HeaderLen:]
	var n int
	m.Payloads, m.Raw, n, err = DecodePayloads(h.NextPayload, body)
	if err != nil {
		return nil, err
	}
	if n != len(body) {
		return nil, &ParseError{Field: "bytes after last payload", Value: len(body) - n,
			Expected: "0 in an unencrypted message", code: NotifyUnequalPayloadLengths}
	}
	return m, nil
}

// Marshal encodes m unencrypted. Header.NextPayload and Header.Length are computed from the
// payloads (m is not modified); the other header fields are used as they are, so the
// caller clears FlagEncryption for a plaintext message. Raw is ignored.
func (m *Message) Marshal() []byte {
	h := m.Header
	h.NextPayload = PayloadNone
	if len(m.Payloads) > 0 {
		h.NextPayload = m.Payloads[0].Type()
	}
	b := h.AppendTo(make([]byte, 0, 512))
	b = AppendPayloads(b, m.Payloads)
	binary.BigEndian.PutUint32(b[posLength:], uint32(len(b)))
	return b
}
