package transcode

import (
	"errors"
	"strings"
)

var errEscape = errors.New("bad percent-encoding")

// unescape percent-decodes s. With all false, "%2F" and "%2f" stay as they
// are: a multi-segment variable keeps an encoded slash (google/api/http.proto,
// "reserved expansion"). '+' is not a space in a path.
func unescape(s string, all bool) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", errEscape
		}
		d := unhex(s[i+1])<<4 | unhex(s[i+2])
		if d == '/' && !all {
			b = append(b, s[i:i+3]...)
		} else {
			b = append(b, d)
		}
		i += 2
	}
	return string(b), nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// splitPath splits a raw request path (starting with '/', no query) into
// its raw segments, and their percent-decoded forms for matching literals.
func splitPath(raw string) (rawSegs, segs []string, err error) {
	if raw == "" || raw[0] != '/' {
		return nil, nil, errEscape
	}
	rawSegs = strings.Split(raw[1:], "/")
	segs = make([]string, len(rawSegs))
	for i, s := range rawSegs {
		if segs[i], err = unescape(s, true); err != nil {
			return nil, nil, err
		}
	}
	return rawSegs, segs, nil
}

// queryUnescape decodes a query key or value: percent-encoding and '+' as a
// space (application/x-www-form-urlencoded).
func queryUnescape(s string) (string, error) {
	if strings.IndexByte(s, '+') >= 0 {
		s = strings.ReplaceAll(s, "+", " ")
	}
	return unescape(s, true)
}
