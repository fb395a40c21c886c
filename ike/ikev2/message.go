package ikev2

import (
	"encoding/binary"
	"fmt"
)

// Message is an IKE message: the header and its payloads. In a protected message the last
// payload is Encrypted (or EncryptedFragment); the engine decrypts it and decodes the inner
// payloads with DecodePayloads.
type Message struct {
	Header   Header
	Payloads []Payload
}

// Decode decodes one IKE message, which must fill b exactly (Header.Length == len(b)).
// The payloads alias b.
func Decode(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	if uint64(h.Length) != uint64(len(b)) {
		return nil, invalid("header length", h.Length, fmt.Sprintf("== %d (the datagram's size)", len(b)))
	}
	ps, err := DecodePayloads(h.NextPayload, b[HeaderLen:])
	if err != nil {
		return nil, err
	}
	return &Message{Header: h, Payloads: ps}, nil
}

// Marshal encodes m. Header.NextPayload and Header.Length are computed from the payloads
// (m is not modified); the other header fields are used as they are.
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

// Find returns the first payload of type T in ps, or nil.
func Find[T Payload](ps []Payload) T {
	var zero T
	for _, p := range ps {
		if q, ok := p.(T); ok {
			return q
		}
	}
	return zero
}

// Notifies returns the Notify payloads in ps of type t.
func Notifies(ps []Payload, t NotifyType) []*Notify {
	var ns []*Notify
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			ns = append(ns, n)
		}
	}
	return ns
}
