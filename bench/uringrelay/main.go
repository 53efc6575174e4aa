package main

import (
	"flag"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"frontdoor/internal/uring"
)

const bufSize = 4096

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to listen on (IPv4 loopback only)")
	backend := flag.String("backend", "127.0.0.1:8091", "backend address")
	mode := flag.String("mode", "epoll", "epoll | uring | uringw")
	flags := flag.String("flags", "coop", "uring setup: coop (COOP_TASKRUN) | defer (SINGLE_ISSUER|DEFER_TASKRUN, thread locked) | "+
		"fixed (defer, plus a registered ring descriptor and registered files) | "+
		"skip (defer; a received message is copied to its connection's buffer and sent from there with CQE_SKIP_SUCCESS)")
	short := flag.Duration("short", 100*time.Microsecond, "raw wait, holding the P, before a wait through the runtime (0: none)")
	maxRun := flag.Duration("max", 10*time.Minute, "exit after this long")
	flag.Parse()
	la, err := netip.ParseAddrPort(*listen)
	if err != nil || !la.Addr().IsLoopback() {
		log.Fatalf("uringrelay: -listen %q: want 127.0.0.1:PORT", *listen)
	}
	ba, err := netip.ParseAddrPort(*backend)
	if err != nil || !ba.Addr().IsLoopback() {
		log.Fatalf("uringrelay: -backend %q: want 127.0.0.1:PORT", *backend)
	}
	lfd, err := listenFD(la)
	if err != nil {
		log.Fatal(err)
	}
	rl := &relay{lfd: lfd, backend: &unix.SockaddrInet4{Port: int(ba.Port()), Addr: ba.Addr().As4()},
		peer: make([]int32, 65536), buf: make([][]byte, 65536)}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		select {
		case <-sig:
		case <-time.After(*maxRun):
		}
		os.Exit(0)
	}()
	var setup uint32 = uring.SetupSubmitAll | uring.SetupCoopTaskrun | uring.SetupTaskrunFlag
	fixed, skip := *flags == "fixed", *flags == "skip"
	if *flags == "defer" || fixed || skip {
		runtime.LockOSThread()
		setup = uring.SetupSubmitAll | uring.SetupSingleIssuer | uring.SetupDeferTaskrun
	}
	switch *mode {
	case "epoll":
		err = rl.runEpoll(nil, short)
	case "uring":
		err = rl.runUring(setup, short, fixed, skip)
	case "uringw":
		var r *uring.Ring
		if r, err = uring.New(1024, 4096, setup); err == nil {
			err = rl.runEpoll(r, short)
		}
	default:
		log.Fatalf("uringrelay: unknown -mode %q", *mode)
	}
	log.Fatal(err)
}

func listenFD(a netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err = unix.Bind(fd, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}); err != nil {
		return -1, err
	}
	return fd, unix.Listen(fd, 4096)
}

// relay is the state of the one loop: peer[fd] is the other side of fd
// (-1 when closed), buf[fd] its read buffer (epoll modes).
type relay struct {
	lfd     int
	backend *unix.SockaddrInet4
	peer    []int32
	buf     [][]byte
}

// pair dials the backend for client fd c and records both.
func (rl *relay) pair(c int) (int, error) {
	b, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err = unix.Connect(b, rl.backend); err != nil {
		_ = unix.Close(b)
		return -1, err
	}
	_ = unix.SetNonblock(b, true)
	_ = unix.SetsockoptInt(b, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetNonblock(c, true)
	rl.peer[c], rl.peer[b] = int32(b), int32(c)
	for _, fd := range [2]int{c, b} {
		if rl.buf[fd] == nil {
			rl.buf[fd] = make([]byte, bufSize)
		}
	}
	return b, nil
}

func (rl *relay) closePair(fd int) {
	p := int(rl.peer[fd])
	if p < 0 {
		return
	}
	rl.peer[fd], rl.peer[p] = -1, -1
	_ = unix.Close(fd)
	_ = unix.Close(p)
}

func rawRead(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

func rawWrite(fd int, p []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(r), e
}

// runEpoll is the epoll loop; with r, writes go out as send SQEs submitted
// once per iteration (mode uringw).
func (rl *relay) runEpoll(r *uring.Ring, short *time.Duration) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(rl.lfd)}
	if err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, rl.lfd, &ev); err != nil {
		return err
	}
	var events [128]unix.EpollEvent
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), 128, 0, 0, 0)
		if n == 0 && e == 0 && *short > 0 {
			ts := unix.NsecToTimespec(int64(*short))
			n, _, e = unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), 128,
				uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
		if n == 0 && (e == 0 || e == unix.EINTR) {
			n, _, e = unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), 128,
				^uintptr(0), 0, 0)
		}
		if e != 0 && e != unix.EINTR {
			return e
		}
		for i := range int(n) {
			fd := int(events[i].Fd)
			if fd == rl.lfd {
				rl.acceptEpoll(ep)
				continue
			}
			p := int(rl.peer[fd])
			if p < 0 {
				continue
			}
			buf := rl.buf[fd]
			m, e := rawRead(fd, buf)
			if e == unix.EAGAIN {
				continue
			}
			if e != 0 || m == 0 {
				rl.closePair(fd)
				continue
			}
			if r == nil {
				for off := 0; off < m; {
					w, e := rawWrite(p, buf[off:m])
					if e == unix.EAGAIN {
						continue
					}
					if e != 0 {
						rl.closePair(fd)
						break
					}
					off += w
				}
				continue
			}
			s := r.GetSQE()
			if s == nil {
				if _, err := r.Enter(); err != nil {
					return err
				}
				s = r.GetSQE()
			}
			s.Opcode, s.Fd, s.Addr, s.Len = uring.OpSend, int32(p), uint64(uintptr(unsafe.Pointer(&buf[0]))), uint32(m)
			s.Flags = uring.SQECQESkipSuccess
			s.UserData = uint64(p)
		}
		if r != nil && r.Pending() > 0 {
			if _, err := r.Enter(); err != nil {
				return err
			}
			// Only failed sends post a completion.
			for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
				if c.Res < 0 {
					rl.closePair(int(c.UserData))
				}
				r.SeenCQE()
			}
		}
	}
}

func (rl *relay) acceptEpoll(ep int) {
	for {
		c, _, err := unix.Accept4(rl.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		b, err := rl.pair(c)
		if err != nil {
			_ = unix.Close(c)
			continue
		}
		for _, fd := range [2]int{c, b} {
			ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
			_ = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev)
		}
	}
}

// Completion kinds, in the low byte of user_data; the fd is in bits 8-39,
// a send's buffer id in bits 40-55.
const (
	kAccept = 1 + iota
	kRecv
	kSend
	kSendSkip
)

// sendState is a send in flight from provided buffer id.
type sendState struct {
	fd, off, n int32
}

// runUring is the io_uring loop. skip: a message is copied into the
// buffer of the connection it came from and sent from there without a
// completion on success; the provided buffer goes back at once. That
// relies on one message in flight per connection (request, then answer).
func (rl *relay) runUring(setup uint32, short *time.Duration, fixed, skip bool) error {
	r, err := uring.New(1024, 8192, setup)
	if err != nil {
		return err
	}
	br, err := r.NewBufRing(1024, bufSize, 1)
	if err != nil {
		return err
	}
	if fixed {
		if err = r.RegisterRing(); err != nil {
			return err
		}
		if err = r.RegisterFiles(8192); err != nil {
			return err
		}
	}
	// fileOf fills s's descriptor: the slot of the same number when files
	// are registered.
	fileOf := func(s *uring.SQE, fd int) {
		s.Fd = int32(fd)
		if fixed && fd < 8192 {
			s.Flags |= uring.SQEFixedFile
		}
	}
	sends := make([]sendState, 1024)
	sqe := func() *uring.SQE {
		s := r.GetSQE()
		if s == nil {
			_, _ = r.Enter()
			s = r.GetSQE()
		}
		return s
	}
	armAccept := func() {
		s := sqe()
		s.Opcode, s.Fd, s.Ioprio, s.UserData = uring.OpAccept, int32(rl.lfd), uring.AcceptMultishot, kAccept
		s.OpFlags = unix.SOCK_CLOEXEC
	}
	armRecv := func(fd int) {
		s := sqe()
		s.Opcode, s.Ioprio, s.Flags = uring.OpRecv, uring.RecvMultishot, uring.SQEBufferSelect
		fileOf(s, fd)
		s.BufIndex = br.Group()
		s.UserData = kRecv | uint64(fd)<<8
	}
	send := func(fd int, id uint16, off, n int32) {
		sends[id] = sendState{fd: int32(fd), off: off, n: n}
		b := br.Buf(id)
		s := sqe()
		s.Opcode, s.Addr, s.Len = uring.OpSend, uint64(uintptr(unsafe.Pointer(&b[off]))), uint32(n-off)
		fileOf(s, fd)
		s.UserData = kSend | uint64(fd)<<8 | uint64(id)<<40
	}
	armAccept()
	for {
		if _, err := r.Enter(); err != nil {
			return err
		}
		ready := r.PeekCQE() != nil
		if !ready && *short > 0 {
			if ready, err = r.WaitShort(*short); err != nil {
				return err
			}
		}
		if !ready {
			if err := r.Wait(); err != nil {
				return err
			}
		}
		for c := r.PeekCQE(); c != nil; c = r.PeekCQE() {
			ud, res, fl := c.UserData, c.Res, c.Flags
			r.SeenCQE()
			fd := int(uint32(ud >> 8))
			switch ud & 0xff {
			case kAccept:
				if res >= 0 {
					if b, err := rl.pair(int(res)); err == nil {
						if fixed && b < 8192 { // a slot is overwritten when its number is reused
							_ = r.SetFile(int(res), int(res))
							_ = r.SetFile(b, b)
						}
						armRecv(int(res))
						armRecv(b)
					} else {
						_ = unix.Close(int(res))
					}
				}
				if fl&uring.CQEFMore == 0 {
					armAccept()
				}
			case kRecv:
				p := int(rl.peer[fd])
				switch {
				case res > 0 && fl&uring.CQEFBuffer != 0 && p >= 0 && skip:
					b := rl.buf[fd][:copy(rl.buf[fd], br.Buf(c.BufferID())[:res])]
					br.Recycle(c.BufferID())
					s := sqe()
					s.Opcode, s.Addr, s.Len = uring.OpSend, uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b))
					s.Flags = uring.SQECQESkipSuccess
					s.UserData = kSendSkip | uint64(p)<<8
					fileOf(s, p)
				case res > 0 && fl&uring.CQEFBuffer != 0 && p >= 0:
					send(p, c.BufferID(), 0, res)
				case fl&uring.CQEFBuffer != 0:
					br.Recycle(c.BufferID())
				}
				switch {
				case res == 0 || (res < 0 && res != -int32(unix.ENOBUFS)):
					rl.closePair(fd)
				case fl&uring.CQEFMore == 0 && p >= 0:
					armRecv(fd)
				}
			case kSendSkip: // failed
				rl.closePair(fd)
			case kSend:
				id := uint16(ud >> 40)
				st := &sends[id]
				if res > 0 && st.off+res < st.n && rl.peer[fd] >= 0 {
					send(fd, id, st.off+res, st.n)
					continue
				}
				if res < 0 {
					rl.closePair(fd)
				}
				br.Recycle(id)
			}
		}
		br.Publish()
	}
}
