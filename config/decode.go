package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// decoder turns the untyped YAML tree viper produced into typed values. It records every
// problem and the paths it reported, so that Validate stays quiet about those paths and
// everything below them (a missing field is no news when its mapping was malformed).
type decoder struct {
	baseDir  string // relative psk_file paths start here
	loosePSK bool   // accept psk_files others may read (LoadIgnoringPSKFileMode)
	errs     []*FieldError
	reported map[string]bool
	// inlinePSK are the paths of psk settings (key in the file itself), for LoadWarn.
	inlinePSK []string
}

func (d *decoder) fail(path, format string, args ...any) {
	d.failErr(path, nil, format, args...)
}

func (d *decoder) failErr(path string, err error, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), Err: err})
	d.markReported(path)
}

// isReported reports whether path or a parent of it had an error already.
func (d *decoder) isReported(path string) bool {
	for p := path; ; {
		if d.reported[p] {
			return true
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

func (d *decoder) markReported(path string) {
	if d.reported == nil {
		d.reported = make(map[string]bool)
	}
	d.reported[path] = true
}

// object returns v as a map and reports its keys that are not in known.
// A missing (nil) v is an empty map.
func (d *decoder) object(path string, v any, known ...string) map[string]any {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(path, "%s is not a mapping (want keys: %s)", describe(v), strings.Join(known, ", "))
		return nil
	}
	for k := range m {
		if !slices.Contains(known, k) {
			d.unknown(sub(path, k), k, known)
		}
	}
	return m
}

func (d *decoder) unknown(path, key string, known []string) {
	if s := suggest(key, known); s != "" {
		d.fail(path, "unknown key (did you mean %s?)", s)
		return
	}
	d.fail(path, "unknown key (want one of: %s)", strings.Join(known, ", "))
}

// names returns the keys of the mapping at path, sorted; what names its values.
func (d *decoder) names(path string, v any, what string) []string {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.fail(path, "%s is not a mapping (want names, each with a %s)", describe(v), what)
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// str returns the string at path; ok is false if it is absent or not a string.
func (d *decoder) str(path string, v any, want string) (s string, ok bool) {
	if v == nil {
		return "", false
	}
	s, ok = v.(string)
	if !ok {
		d.fail(path, "%s is not a string (want %s)", describe(v), want)
	}
	return s, ok
}

// uint returns the non-negative integer at path, which must not exceed max.
func (d *decoder) uint(path string, v any, max uint64, want string) (n uint64, ok bool) {
	if v == nil {
		return 0, false
	}
	switch i := v.(type) {
	case int:
		if i >= 0 && uint64(i) <= max {
			return uint64(i), true
		}
	case uint64:
		if i <= max {
			return i, true
		}
	}
	d.fail(path, "%s is not %s", describe(v), want)
	return 0, false
}

// duration returns the Go duration ("30s", "8h") at path.
func (d *decoder) duration(path string, v any) (time.Duration, bool) {
	if v == nil {
		return 0, false
	}
	s, _ := v.(string)
	t, err := time.ParseDuration(s)
	if err != nil {
		d.fail(path, "%s is not a duration (want e.g. 30s, 8h or 1h30m)", describe(v))
		return 0, false
	}
	return t, true
}

// addr returns the address at path; checks beyond syntax are Validate's.
func (d *decoder) addr(path string, v any) (netip.Addr, bool) {
	const want = "an IPv4 address such as 192.0.2.1"
	s, ok := d.str(path, v, want)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		d.fail(path, "%q is not an IPv4 address (want e.g. 192.0.2.1)", s)
		return netip.Addr{}, false
	}
	return a, true
}

// prefix returns the prefix at path; checks beyond syntax are Validate's.
func (d *decoder) prefix(path string, v any) (netip.Prefix, bool) {
	s, ok := d.str(path, v, "an IPv4 prefix such as 10.10.1.0/24")
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		d.fail(path, "%q is not an IPv4 prefix (want e.g. 10.10.1.0/24)", s)
		return netip.Prefix{}, false
	}
	return p, true
}

// list returns a list of strings at path; a single string is a list of one.
func (d *decoder) list(path string, v any, want string) ([]string, bool) {
	switch l := v.(type) {
	case nil:
		return nil, false
	case string:
		return []string{l}, true
	case []any:
		out := make([]string, 0, len(l))
		for i, e := range l {
			s, ok := d.str(fmt.Sprintf("%s[%d]", path, i), e, want)
			if !ok {
				d.markReported(path)
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	d.fail(path, "%s is not a list (want a list of %s)", describe(v), want)
	return nil, false
}

// describe shows a YAML value of the wrong type in an error.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", v)
	}
	return fmt.Sprintf("%v", v)
}

// suggest returns the element of known closest to key if it is a plausible typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 3 // at most two edits
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
