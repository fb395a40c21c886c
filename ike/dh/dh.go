// Package dh implements the Diffie-Hellman groups an IKEv1 gateway negotiates: the MODP
// groups 2, 5, 14, 15 and 16 (RFC 2409 section 6, RFC 3526) and the ECP groups 19 and 20
// (RFC 5903). Public values and shared secrets use the encodings of the IKE KE payload.
//
// Private keys are ephemeral, one per exchange, and log and print as [redacted].
package dh

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Group is one Diffie-Hellman group. Groups are immutable and safe for concurrent use.
type Group interface {
	// ID is the IANA group number (the IKE Group Description attribute value).
	ID() uint16
	// PublicLen is the exact length in bytes of a public value in this group.
	PublicLen() int
	// GenerateKey makes a new private key whose secret is read from rand
	// (crypto/rand.Reader in production).
	GenerateKey(rand io.Reader) (PrivateKey, error)
	// CheckPublic validates a peer's public value as SharedSecret does, cheaply and before
	// any exponentiation: a responder checks it before it makes its own key.
	CheckPublic(peerPublic []byte) error
}

// PrivateKey is one side's ephemeral Diffie-Hellman secret.
type PrivateKey interface {
	// Public is the public value to send in a KE payload, PublicLen bytes long.
	Public() []byte
	// SharedSecret validates the peer's public value and returns g^xy, encoded as
	// RFC 2409 and RFC 5903 require for SKEYID: MODP left-padded to the prime's
	// length, ECP the x coordinate only.
	SharedSecret(peerPublic []byte) ([]byte, error)
	// Destroy overwrites the private value where the implementation can reach it (the
	// MODP exponent; crypto/ecdh keeps its scalar out of reach) and makes the key unusable.
	Destroy()
}

// ErrUnsupportedGroup is returned by ByID for a group number this package does not implement.
var ErrUnsupportedGroup = errors.New("unsupported Diffie-Hellman group")

// ErrInvalidPublic is wrapped by SharedSecret when the peer's public value is malformed,
// out of range or not on the curve.
var ErrInvalidPublic = errors.New("invalid Diffie-Hellman public value")

// groups lists every supported group in ascending ID order.
var groups = []Group{
	newMODP(2, modp1024, exponentBitsFloor),
	newMODP(5, modp1536, exponentBitsFloor),
	newMODP(14, modp2048, exponentBitsFloor),
	newMODP(15, modp3072, exponentBitsFloor),
	newMODP(16, modp4096, exponentBitsMODP4096),
	newECP(19, ecdh.P256(), 32),
	newECP(20, ecdh.P384(), 48),
}

// ByID returns the group with IANA number id.
func ByID(id uint16) (Group, error) {
	for _, g := range groups {
		if g.ID() == id {
			return g, nil
		}
	}
	ids := make([]string, len(groups))
	for i, g := range groups {
		ids[i] = fmt.Sprint(g.ID())
	}
	return nil, fmt.Errorf("dh: group %d: %w, want one of %s", id, ErrUnsupportedGroup, strings.Join(ids, ", "))
}

// redacted keeps private keys out of logs and fmt output.
type redacted struct{}

func (redacted) LogValue() slog.Value { return slog.StringValue("[redacted]") }
func (redacted) String() string       { return "[redacted]" }
func (redacted) GoString() string     { return "[redacted]" }
