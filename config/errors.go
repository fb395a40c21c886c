package config

import (
	"cmp"
	"errors"
	"slices"
)

// FieldError is one problem with one configuration field. Config errors are joined
// FieldErrors (errors.Join), one per line; use errors.As to inspect them.
type FieldError struct {
	Path string // dotted key path, e.g. connections.megatelecom.tunnels.api.local_subnet
	Msg  string // the value found and what was expected; never contains a secret
	Err  error  // the underlying cause, if any; it names the value when Msg is empty
}

func (e *FieldError) Error() string {
	switch {
	case e.Msg == "" && e.Err != nil:
		return e.Path + ": " + e.Err.Error()
	case e.Err != nil:
		return e.Path + ": " + e.Msg + ": " + e.Err.Error()
	}
	return e.Path + ": " + e.Msg
}

func (e *FieldError) Unwrap() error { return e.Err }

// join sorts errs by path (stable, so one field's errors keep their order) and joins them.
func join(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return cmp.Compare(a.Path, b.Path) })
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// sub returns the path of key below path.
func sub(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
