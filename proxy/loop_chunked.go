package proxy

import "errors"

// chunkScanner follows the framing of a chunked body (RFC 9112 7.1) as it
// is relayed verbatim, to find where it ends: the event loop (loop.go)
// passes a backend's chunked answer through unchanged and must know when the
// connection is free again. It never copies or allocates.
type chunkScanner struct {
	state   int
	size    int64 // bytes left in the current chunk's data
	digits  int   // hex digits of the size line read so far
	lineLen int   // bytes of the current trailer line
	data    int64 // bytes of chunk data seen: the body without its framing
}

const (
	chunkSize     = iota // reading the hex size
	chunkExt             // after the size: extensions up to LF
	chunkData            // size bytes of data
	chunkDataCR          // the CRLF after data
	chunkDataLF          // the LF after data
	chunkTrailer         // trailer lines up to an empty one
	chunkDone            // the body ended
	maxChunkDigit = 15   // a size of 16 hex digits could overflow int64
)

var errBadChunk = errors.New("proxy: malformed chunked body from the backend")

// scan consumes b, which continues the body. It returns how many bytes of b
// belong to the body (all of b unless it ended inside b) and whether it
// ended.
func (s *chunkScanner) scan(b []byte) (int, bool, error) {
	i := 0
	for i < len(b) {
		switch s.state {
		case chunkSize:
			c := b[i]
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if s.digits == maxChunkDigit {
					return i, false, errBadChunk
				}
				s.size = s.size<<4 | int64(unhex(c))
				s.digits++
			case c == ';' || c == ' ' || c == '\t' || c == '\r':
				if s.digits == 0 {
					return i, false, errBadChunk
				}
				s.state = chunkExt
			case c == '\n':
				if s.digits == 0 {
					return i, false, errBadChunk
				}
				s.endSizeLine()
			default:
				return i, false, errBadChunk
			}
			i++
		case chunkExt:
			if b[i] == '\n' {
				s.endSizeLine()
			}
			i++
		case chunkData:
			n := int64(len(b) - i)
			if n > s.size {
				n = s.size
			}
			i += int(n)
			s.size -= n
			s.data += n
			if s.size == 0 {
				s.state = chunkDataCR
			}
		case chunkDataCR:
			switch b[i] {
			case '\r':
				s.state = chunkDataLF
			case '\n':
				s.state = chunkSize
			default:
				return i, false, errBadChunk
			}
			i++
		case chunkDataLF:
			if b[i] != '\n' {
				return i, false, errBadChunk
			}
			s.state = chunkSize
			i++
		case chunkTrailer:
			c := b[i]
			i++
			if c == '\n' {
				if s.lineLen == 0 {
					s.state = chunkDone
					return i, true, nil
				}
				s.lineLen = 0
			} else if c != '\r' {
				s.lineLen++
			}
		case chunkDone:
			return i, true, nil
		}
	}
	return i, s.state == chunkDone, nil
}

func (s *chunkScanner) endSizeLine() {
	if s.size == 0 {
		s.state, s.lineLen = chunkTrailer, 0
		return
	}
	s.state, s.digits = chunkData, 0
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
