package uring

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
	"unsafe"
)

// newRing makes a ring for a test, or skips it where io_uring is off.
func newRing(t *testing.T, flags uint32) *Ring {
	t.Helper()
	r, err := New(64, 256, flags)
	if errors.Is(err, ErrUnsupported) {
		t.Skip("io_uring unavailable here")
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// tcpPair is a connected pair of TCP sockets on 127.0.0.1: the accepted
// side as a raw descriptor, and the dialling side.
func tcpPair(t *testing.T) (int, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.(*net.TCPConn).File()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd()), cc.(*net.TCPConn)
}

// wait returns the next completion within a second.
func wait(t *testing.T, r *Ring) CQE {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if c := r.PeekCQE(); c != nil {
			v := *c
			r.SeenCQE()
			return v
		}
		if _, err := r.WaitShort(10 * time.Millisecond); err != nil {
			t.Fatalf("WaitShort: %v", err)
		}
	}
	t.Fatal("no completion within 1s")
	return CQE{}
}

func TestMultishotRecvAndSend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags uint32
	}{
		{"coop", SetupSubmitAll | SetupCoopTaskrun | SetupTaskrunFlag},
		{"plain", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRing(t, tc.flags)
			br, err := r.NewBufRing(4, 64, 3)
			if err != nil {
				t.Fatalf("NewBufRing: %v", err)
			}
			t.Cleanup(br.Free)
			fd, cc := tcpPair(t)

			s := r.GetSQE()
			s.Opcode, s.Fd, s.Ioprio, s.Flags, s.BufIndex = OpRecv, int32(fd), RecvMultishot, SQEBufferSelect, br.Group()
			s.UserData = 1
			if _, err := r.Enter(); err != nil {
				t.Fatalf("Enter: %v", err)
			}
			// Two messages, each read into a buffer of its own while the
			// one receive stays armed.
			for i, msg := range []string{"hello", "again"} {
				if _, err := cc.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				c := wait(t, r)
				if c.UserData != 1 || c.Res != int32(len(msg)) || c.Flags&CQEFBuffer == 0 || c.Flags&CQEFMore == 0 {
					t.Fatalf("message %d: completion %+v", i, c)
				}
				if got := string(br.Buf(c.BufferID())[:c.Res]); got != msg {
					t.Fatalf("message %d: got %q, want %q", i, got, msg)
				}
				br.Recycle(c.BufferID())
				br.Publish()
			}

			out := []byte("answer")
			s = r.GetSQE()
			s.Opcode, s.Fd, s.Addr, s.Len, s.UserData = OpSend, int32(fd), uint64(uintptr(unsafe.Pointer(&out[0]))), uint32(len(out)), 2
			if _, err := r.Enter(); err != nil {
				t.Fatalf("Enter: %v", err)
			}
			if c := wait(t, r); c.UserData != 2 || c.Res != int32(len(out)) {
				t.Fatalf("send completion %+v", c)
			}
			buf := make([]byte, 16)
			_ = cc.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := cc.Read(buf); err != nil || string(buf[:n]) != "answer" {
				t.Fatalf("client read %q, %v", buf[:n], err)
			}

			// The peer's close ends the multishot receive: res 0, no F_MORE.
			cc.Close()
			if c := wait(t, r); c.UserData != 1 || c.Res != 0 || c.Flags&CQEFMore != 0 {
				t.Fatalf("end of stream: completion %+v", c)
			}
		})
	}
}

func TestWaitShortTimesOut(t *testing.T) {
	t.Parallel()
	r := newRing(t, SetupCoopTaskrun)
	start := time.Now()
	ready, err := r.WaitShort(2 * time.Millisecond)
	if err != nil || ready {
		t.Fatalf("WaitShort on an idle ring = %v, %v; want false, nil", ready, err)
	}
	if d := time.Since(start); d < time.Millisecond {
		t.Fatalf("WaitShort returned after %v, before its timeout", d)
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	r := newRing(t, 0)
	n := 0
	for r.GetSQE() != nil {
		n++
	}
	if n != 64 || r.Pending() != 64 {
		t.Fatalf("%d SQEs free, %d pending; want 64", n, r.Pending())
	}
	// NOPs: 64 completions once submitted.
	if _, err := r.Enter(); err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if c := wait(t, r); c.Res != 0 {
			t.Fatalf("nop %d: %+v", i, c)
		}
	}
	if r.GetSQE() == nil {
		t.Fatal("queue still full after submission")
	}
}

// A no-op goes through the ring: submitted, completed, its user data back
// (it prints "42 0"; not run as a test, since a kernel may disable
// io_uring: the tests above skip there).
func Example() {
	r, err := New(8, 0, SetupCoopTaskrun)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	s := r.GetSQE()
	s.Opcode, s.UserData = OpNop, 42
	if err := r.Wait(); err != nil {
		fmt.Println(err)
		return
	}
	c := r.PeekCQE()
	fmt.Println(c.UserData, c.Res)
	r.SeenCQE()
}
