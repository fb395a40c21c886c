package config

import (
	"fmt"
	"os"
	"syscall"
)

// checkPSKFile refuses a pre-shared key file that others could read or replace, as racoon
// does ("has weak file permission"): it must be a regular file, owned by the user the
// daemon runs as (or root), with no group or other permission bits (chmod 600 or 400).
// Refusing rather than warning keeps a config that leaks its keys from ever running, and
// this package returns errors, it does not log.
func checkPSKFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("file type %v, want a regular file", fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("mode %#o gives group or others access, want 0600 or 0400 (chmod 600)", perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(st.Uid) != uid && st.Uid != 0 {
			return fmt.Errorf("owner uid %d, want %d (the daemon's user) or 0", st.Uid, uid)
		}
	}
	return nil
}

// CheckPSKFile opens path and applies the checks Load applies to a psk_file (espgw doctor
// reports them without loading the whole configuration).
func CheckPSKFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return checkPSKFile(f)
}
