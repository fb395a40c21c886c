package racoon

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/config"
)

// groups are racoon's dh_group / pfs_group names with their IANA numbers.
var groups = map[string]uint16{
	"modp768": 1, "modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15, "modp4096": 16,
	"modp6144": 17, "modp8192": 18, "ecp256": 19, "ecp384": 20,
}

// group reads a group name or number.
func group(s string) (uint16, error) {
	if g, ok := groups[strings.ToLower(s)]; ok {
		return g, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("unknown group %q (want modp1024, modp2048, ... or a number)", s)
	}
	return uint16(n), nil
}

// timeUnits are racoon's units of `lifetime time N unit` and `dpd_delay`.
var timeUnits = map[string]time.Duration{
	"sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"hour": time.Hour, "hours": time.Hour,
}

// byteUnits are racoon's units of `lifetime byte N unit`, in bytes.
var byteUnits = map[string]uint64{"b": 1, "byte": 1, "bytes": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}

// lifetime reads the words after "lifetime": "time N unit" or "byte N unit". It returns a
// duration, or a number of kilobytes (rounded up).
func lifetime(words []string) (d time.Duration, kb uint64, err error) {
	if len(words) != 3 && len(words) != 2 {
		return 0, 0, fmt.Errorf("want lifetime time N sec|min|hour or lifetime byte N B|KB|MB|GB")
	}
	n, err := strconv.ParseUint(words[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a number", words[1])
	}
	unit := "sec"
	if len(words) == 3 {
		unit = strings.ToLower(words[2])
	}
	switch words[0] {
	case "time":
		u, ok := timeUnits[unit]
		if !ok || n == 0 || n > uint64(math.MaxInt64/u) {
			return 0, 0, fmt.Errorf("%q %q: want a positive number of sec, min or hour", words[1], unit)
		}
		return time.Duration(n) * u, 0, nil
	case "byte", "bytes":
		u, ok := byteUnits[unit]
		if !ok || n == 0 || n > math.MaxUint64/u {
			return 0, 0, fmt.Errorf("%q %q: want a positive number of B, KB, MB or GB", words[1], unit)
		}
		return 0, (n*u + 1023) / 1024, nil
	}
	return 0, 0, fmt.Errorf("%q: want time or byte", words[0])
}

// identity reads my_identifier / peers_identifier: "address [A]", "fqdn NAME",
// "user_fqdn NAME", "keyid tag NAME". def is the identity when "address" has no argument.
func identity(words []string, def model.Identity) (model.Identity, error) {
	if len(words) == 0 {
		return model.Identity{}, fmt.Errorf("no identifier type")
	}
	arg := ""
	if len(words) > 1 {
		arg = words[len(words)-1]
	}
	switch words[0] {
	case "address":
		if arg == "" {
			return def, nil
		}
		id, err := config.ParseIdentity(arg)
		if err == nil && id.Kind != model.IDAddr {
			err = fmt.Errorf("%q is not an address", arg)
		}
		return id, err
	case "fqdn":
		return model.Identity{Kind: model.IDFQDN, Name: arg}, nil
	case "user_fqdn":
		return model.Identity{Kind: model.IDUserFQDN, Name: arg}, nil
	case "keyid":
		if len(words) == 3 && words[1] == "tag" {
			return model.Identity{Kind: model.IDKeyID, Name: arg}, nil
		}
		return model.Identity{}, fmt.Errorf("keyid from a file: espgw takes keyid:<name> inline (want keyid tag \"name\")")
	}
	return model.Identity{}, fmt.Errorf("identifier type %s: espgw has no certificates (want address, fqdn, user_fqdn or keyid tag)", words[0])
}
