package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"frontdoor/internal/loopback"
)

// TestAwaitAnswer: a held request goes out from awaitAnswer, which returns
// once the answer can be read and reads none of it; a silent backend ends
// the wait at the read deadline.
func TestAwaitAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		handle  func(net.Conn)
		wantErr error
	}{
		{name: "answer", handle: func(c net.Conn) { _, _ = io.Copy(c, c) }},
		{name: "silent", handle: func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }, wantErr: os.ErrDeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := net.Dial("tcp", loopback.Serve(t, tc.handle))
			if err != nil {
				t.Fatal(err)
			}
			c := newDeferConn(nc.(*net.TCPConn), false)
			defer c.Close()
			c.deferNext = true
			if err := c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Write([]byte("ping\n")); n != 5 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if c.heldN != 5 {
				t.Fatalf("held %d bytes, want 5", c.heldN)
			}
			err = c.awaitAnswer()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("awaitAnswer = %v, want %v", err, tc.wantErr)
			}
			if c.heldN != 0 || c.held != nil {
				t.Fatalf("still holding %d bytes", c.heldN)
			}
			if tc.wantErr != nil {
				return
			}
			buf := make([]byte, 16)
			n, err := io.ReadFull(c, buf[:5])
			if err != nil || string(buf[:n]) != "ping\n" {
				t.Fatalf("Read = %q, %v", buf[:n], err)
			}
		})
	}
}

// TestAwaitAnswerNothingHeld: without held bytes (a client connection, or
// a request too large to hold) awaitAnswer returns at once and Read waits.
func TestAwaitAnswerNothingHeld(t *testing.T) {
	t.Parallel()
	nc, err := net.Dial("tcp", loopback.Serve(t, func(c net.Conn) { _, _ = io.Copy(c, c) }))
	if err != nil {
		t.Fatal(err)
	}
	c := newDeferConn(nc.(*net.TCPConn), false)
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil { // deferNext unset: sent at once
		t.Fatal(err)
	}
	if err := c.awaitAnswer(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
}
