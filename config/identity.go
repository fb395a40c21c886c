package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

const keyIDPrefix = "keyid:"

// ParseIdentity parses a local_id or remote_id: an IPv4 address (ID_IPV4_ADDR),
// "user@example.com" (ID_USER_FQDN), "keyid:<opaque>" (ID_KEY_ID) or a host name (ID_FQDN).
func ParseIdentity(s string) (Identity, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		id := Identity{Kind: IDAddr, Addr: a}
		return id, id.check()
	}
	var id Identity
	switch {
	case strings.HasPrefix(s, keyIDPrefix):
		id = Identity{Kind: IDKeyID, Name: s[len(keyIDPrefix):]}
	case strings.Contains(s, "@"):
		id = Identity{Kind: IDUserFQDN, Name: s}
	default:
		id = Identity{Kind: IDFQDN, Name: s}
	}
	return id, id.check()
}

// String formats id the way ParseIdentity reads it.
func (id Identity) String() string {
	switch id.Kind {
	case IDAddr:
		return id.Addr.String()
	case IDKeyID:
		return keyIDPrefix + id.Name
	default:
		return id.Name
	}
}

// check reports why id cannot be sent as an IKEv1 identification payload.
func (id Identity) check() error {
	switch id.Kind {
	case IDAddr:
		return checkIPv4(id.Addr)
	case IDFQDN:
		return checkHostname(id.Name)
	case IDUserFQDN:
		user, host, _ := strings.Cut(id.Name, "@")
		if user == "" {
			return errors.New("has nothing before the @ (want user@example.com)")
		}
		return checkHostname(host)
	case IDKeyID:
		if id.Name == "" {
			return errors.New("has an empty key id (want keyid:<name>)")
		}
		return nil
	default:
		return errors.New("is missing (want an address, host name, user@fqdn or keyid:<name>)")
	}
}

// checkHostname accepts an RFC 1123 host name.
func checkHostname(h string) error {
	const want = "(want a host name such as vpn.example.com)"
	if h == "" || len(h) > 253 {
		return fmt.Errorf("has a host name of %d characters %s", len(h), want)
	}
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("has the bad label %q %s", l, want)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("has the character %q in label %q %s", c, l, want)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("ends in the numeric label %q: not an IPv4 address nor a host name %s", labels[len(labels)-1], want)
	}
	return nil
}

// checkIPv4 accepts a unicast IPv4 address.
func checkIPv4(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("is missing (want an IPv4 address)")
	case !a.Is4():
		return errors.New("is IPv6 (want an IPv4 address: IPv4 only for now)")
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return errors.New("is not a unicast address (want e.g. 192.0.2.1)")
	}
	return nil
}
