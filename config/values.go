package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UnmarshalText parses a Go duration string such as "2s" or "1m30s". An
// empty string is the zero Duration (unset). Negative durations parse; Load
// rejects them where a timeout is expected.
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	if s == "" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: use a Go duration such as 2s or 1m30s", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string ("1m30s").
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// String returns the duration as a Go duration string ("1m30s").
func (d Duration) String() string { return d.Duration.String() }

// Sources a HashKey may name.
const (
	sourceIP     = "source_ip"
	sourcePath   = "path"
	sourceHeader = "header"
	sourceCookie = "cookie"
	sourceQuery  = "query"
)

// ParseHashKey parses a key source: "source_ip", "path", "header:NAME",
// "cookie:NAME" or "query:NAME". NAME must be non-empty; header and cookie
// names must be HTTP tokens (letters, digits and !#$%&'*+-.^_`|~). The empty
// string parses to the zero HashKey (unset). It is shared by hash_on,
// affinity and token_from; each of those accepts only some sources, which
// Load checks.
func ParseHashKey(s string) (HashKey, error) {
	switch s {
	case "":
		return HashKey{}, nil
	case sourceIP, sourcePath:
		return HashKey{Source: s}, nil
	}
	src, name, ok := strings.Cut(s, ":")
	switch {
	case !ok && (src == sourceHeader || src == sourceCookie || src == sourceQuery):
		return HashKey{}, fmt.Errorf("bad key source %q: %s needs a name, as in %s:NAME", s, src, src)
	case !ok:
		return HashKey{}, fmt.Errorf("bad key source %q: use source_ip, path, header:NAME, cookie:NAME or query:NAME", s)
	}
	switch src {
	case sourceHeader, sourceCookie:
		if name == "" {
			return HashKey{}, fmt.Errorf("bad key source %q: the %s name after the colon is empty", s, src)
		}
		if !isToken(name) {
			return HashKey{}, fmt.Errorf("bad key source %q: %q is not a valid %s name (use letters, digits, '-' or '_')", s, name, src)
		}
	case sourceQuery:
		if name == "" {
			return HashKey{}, fmt.Errorf("bad key source %q: the query parameter name after the colon is empty", s)
		}
	default:
		return HashKey{}, fmt.Errorf("bad key source %q: %q is not a source; use source_ip, path, header:NAME, cookie:NAME or query:NAME", s, src)
	}
	return HashKey{Source: src, Name: name}, nil
}

// UnmarshalText parses the key source with ParseHashKey.
func (k *HashKey) UnmarshalText(text []byte) error {
	v, err := ParseHashKey(string(text))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// MarshalText writes the key source as it is written in the config.
func (k HashKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// String returns the key source as it is written in the config: "source_ip",
// "header:X-User-ID", or "" for the zero HashKey.
func (k HashKey) String() string {
	if k.Name == "" {
		return k.Source
	}
	return k.Source + ":" + k.Name
}

// IsZero reports whether the key is unset.
func (k HashKey) IsZero() bool { return k == HashKey{} }

// errStatusRange is the hint every bad expect_status gets.
var errStatusRange = errors.New(`use a status code such as "200" or a range such as "200-399", within 100-599`)

// UnmarshalText parses "LOW-HIGH" or a single code "204"; both ends must lie
// within 100-599 and LOW must not exceed HIGH. The empty string is the zero
// StatusRange (unset).
func (r *StatusRange) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		*r = StatusRange{}
		return nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	low, err1 := strconv.Atoi(strings.TrimSpace(lo))
	high, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad status range %q: %w", s, errStatusRange)
	}
	v := StatusRange{Low: low, High: high}
	if !v.Valid() {
		return fmt.Errorf("bad status range %q: %w", s, errStatusRange)
	}
	*r = v
	return nil
}

// MarshalText writes the range as "200-399", or "204" for a single code.
func (r StatusRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String returns "200-399", "204" for a single code, or "" when unset.
func (r StatusRange) String() string {
	switch {
	case r == StatusRange{}:
		return ""
	case r.Low == r.High:
		return strconv.Itoa(r.Low)
	}
	return strconv.Itoa(r.Low) + "-" + strconv.Itoa(r.High)
}

// Valid reports whether the range lies within 100-599 with Low <= High.
func (r StatusRange) Valid() bool {
	return r.Low >= 100 && r.High <= 599 && r.Low <= r.High
}

// errStatusSet is the hint every bad failure_statuses gets.
var errStatusSet = errors.New(`use codes and ranges within 500-599 such as "500,502-504"`)

// ParseStatusSet parses a comma-separated list of status codes and ranges
// ("500,502-504"), each within 500-599. Spaces around items are ignored;
// the empty string is the empty set.
func ParseStatusSet(s string) (StatusSet, error) {
	var set StatusSet
	if strings.TrimSpace(s) == "" {
		return set, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		if !isRange {
			hi = lo
		}
		low, err1 := strconv.Atoi(strings.TrimSpace(lo))
		high, err2 := strconv.Atoi(strings.TrimSpace(hi))
		switch {
		case item == "" || err1 != nil || err2 != nil:
			return StatusSet{}, fmt.Errorf("bad status list %q: item %q is not a code or range: %w", s, item, errStatusSet)
		case low < 500 || high > 599:
			return StatusSet{}, fmt.Errorf("bad status list %q: %q is outside 500-599: %w", s, item, errStatusSet)
		case low > high:
			return StatusSet{}, fmt.Errorf("bad status list %q: range %q is reversed: %w", s, item, errStatusSet)
		}
		for c := low; c <= high; c++ {
			set.has[c-500] = true
		}
	}
	return set, nil
}

// MustStatusSet is ParseStatusSet for constants; it panics on error.
func MustStatusSet(s string) StatusSet {
	set, err := ParseStatusSet(s)
	if err != nil {
		panic("config: " + err.Error())
	}
	return set
}

// Has reports whether code is in the set. Codes outside 500-599 never are.
func (s *StatusSet) Has(code int) bool {
	return code >= 500 && code <= 599 && s.has[code-500]
}

// UnmarshalText parses the list with ParseStatusSet.
func (s *StatusSet) UnmarshalText(text []byte) error {
	v, err := ParseStatusSet(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText writes the set as String does.
func (s StatusSet) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String writes the set as a list of codes and ranges in ascending order,
// "500,502-504" for the default; "" for the empty set.
func (s StatusSet) String() string {
	var b []byte
	for i := 0; i < len(s.has); i++ {
		if !s.has[i] {
			continue
		}
		j := i
		for j+1 < len(s.has) && s.has[j+1] {
			j++
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(500+i), 10)
		if j > i {
			b = append(b, '-')
			b = strconv.AppendInt(b, int64(500+j), 10)
		}
		i = j
	}
	return string(b)
}

// isToken reports whether s is a non-empty HTTP token (RFC 9110 tchar).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
