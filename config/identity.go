package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/espgw/espgw/model"
)

// ParseIdentity parses a local_id or remote_id: an IPv4 address (ID_IPV4_ADDR),
// "user@example.com" (ID_USER_FQDN), "keyid:<opaque>" (ID_KEY_ID) or a host name (ID_FQDN).
func ParseIdentity(s string) (model.Identity, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		id := model.Identity{Kind: model.IDAddr, Addr: a}
		return id, checkIdentity(id)
	}
	var id model.Identity
	switch {
	case strings.HasPrefix(s, model.KeyIDPrefix):
		id = model.Identity{Kind: model.IDKeyID, Name: s[len(model.KeyIDPrefix):]}
	case strings.Contains(s, "@"):
		id = model.Identity{Kind: model.IDUserFQDN, Name: s}
	default:
		id = model.Identity{Kind: model.IDFQDN, Name: s}
	}
	return id, checkIdentity(id)
}

// checkIdentity reports why id cannot be sent as an IKEv1 identification payload.
func checkIdentity(id model.Identity) error {
	switch id.Kind {
	case model.IDAddr:
		return checkIPv4(id.Addr)
	case model.IDFQDN:
		return checkHostname(id.Name)
	case model.IDUserFQDN:
		user, host, _ := strings.Cut(id.Name, "@")
		if user == "" {
			return errors.New("has nothing before the @ (want user@example.com)")
		}
		return checkHostname(host)
	case model.IDKeyID:
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
