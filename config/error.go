package config

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a configuration file. Load and Parse return
// every problem at once as an errors.Join of *Error values; Errors unwraps
// them for printing.
//
// The zero value prints as an empty message. Error values are not modified
// after they are returned and are safe to share between goroutines.
type Error struct {
	// File is the path the configuration was read from, as given to Load
	// ("" for Parse without a path).
	File string
	// Line is the 1-based line the problem is on, or 0 when it concerns the
	// whole file (a missing file, say).
	Line int
	// Key is the TOML path of the offending setting, such as
	// "listener[0].route[1].pool" or "pool.api.backends[1].weight"; "" for
	// file-level problems.
	Key string
	// Msg says what is wrong and what to do about it.
	Msg string
}

// Error formats the problem as "FILE:LINE: KEY: MSG", leaving out the parts
// that are empty or zero, e.g.
//
//	config.toml:14: listener[0].route[1].pool: no pool named "apii"; define [pool.apii] or fix the name
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors flattens err, as returned by Load or Parse, into its *Error values
// in order, for printing one per line. Any other error found inside err is
// returned as an *Error with only Msg set, so nothing is lost. Errors(nil)
// is nil.
func Errors(err error) []*Error {
	if err == nil {
		return nil
	}
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, inner := range joined.Unwrap() {
				if inner != nil {
					walk(inner)
				}
			}
			return
		}
		var ce *Error
		if errors.As(err, &ce) {
			out = append(out, ce)
			return
		}
		out = append(out, &Error{Msg: err.Error()})
	}
	walk(err)
	return out
}

// join sorts errs by line (file-level problems first), then key, and joins
// them; it returns nil for no errors.
func join(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
