package health

import "testing"

// FuzzRespReader feeds arbitrary bytes, in pieces of arbitrary size, to the
// HTTP check's response reader: it must never panic, never read outside its
// buffer, and report a status only from a parsed status line.
func FuzzRespReader(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nok\n\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody to the close",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\nextra",
		"HTTP/1.1 2x0\r\n\r\n",
	} {
		f.Add([]byte(seed), uint8(0), false)
		f.Add([]byte(seed), uint8(1), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8, head bool) {
		r := &respReader{buf: make([]byte, httpBufSize), headReq: head}
		r.reset()
		n := int(step) + 1
		for len(data) > 0 {
			space := r.space()
			if len(space) == 0 {
				return // head or line too long: the check fails
			}
			k := copy(space, data[:min(n, len(data))])
			data = data[k:]
			done, err := r.feed(k)
			if r.r < 0 || r.r > r.w || r.w > len(r.buf) {
				t.Fatalf("r %d w %d outside the buffer of %d", r.r, r.w, len(r.buf))
			}
			if err != nil {
				return
			}
			if done {
				if r.status < 100 || r.status > 999 {
					t.Fatalf("done with status %d", r.status)
				}
				return
			}
		}
		_ = r.eof()
	})
}
