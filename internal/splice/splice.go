// Package splice moves bytes between sockets with splice(2) through pooled
// kernel pipes, so payload never enters user space. It serves the Layer-4
// engine (proxy/tcp) and the HTTP engine's large response bodies (proxy).
package splice

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MaxMove is the most one Move asks to move into a pipe; the pipe's
// capacity caps it in practice.
const MaxMove = 1 << 20

// PipeSize is the capacity asked for each pipe. A pipe exists only while
// bytes are in flight, so the kernel memory it costs follows the number of
// busy transfers, not of connections. A larger pipe means fewer splice(2)
// calls per byte (iperf3 on loopback: about 7,000 per GB at 1 MiB, 40,000 at
// 64 KiB). Smaller pipes cost more CPU per GB on loopback (64 KiB:
// 0.84-1.05x HAProxy's, 1 MiB: 0.73-0.96x) while raising throughput
// somewhat, because reading less per call keeps the sender's receive window
// shut longer, so more of the sender's own TCP transmit runs in the proxy's
// context instead of the sender's.
const PipeSize = 1 << 20

const flags = unix.SPLICE_F_NONBLOCK | unix.SPLICE_F_MOVE

// Move moves at most n bytes from rfd to wfd with splice(2), as a raw system
// call: the runtime is not told (no entersyscall/exitsyscall), so the
// goroutine keeps its P for the call. That is safe because the call never
// waits: SPLICE_F_NONBLOCK and non-blocking sockets make it return EAGAIN
// instead of sleeping for data or room, so it lasts only as long as the
// kernel takes to move the bytes there are. As an ordinary system call, one
// that outlasted a sysmon tick (20 µs; a large write on loopback also runs
// the receiver's TCP input and takes far longer) made sysmon hand the P to
// another thread, and each such call cost thread wake-ups, futex and
// sched_yield calls and context switches: with GOMAXPROCS=1 and 8 iperf3
// streams, sysmon and the scheduler took more of the proxy's CPU than
// splice itself. The price is that nothing else runs on this P, and a
// stop-the-world waits, while a call moves its bytes.
//
// Both descriptors must be non-blocking (a pipe from a Pool, a socket of
// the net package). EINTR is returned to the caller, who retries.
func Move(rfd, wfd, n int) (int64, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), flags)
	if e != 0 {
		return 0, e
	}
	return int64(r), nil
}

// Pipe is a kernel pipe used as the splice buffer of one transfer while
// bytes are in flight. A pipe in a Pool is always empty.
type Pipe struct {
	R, W    int // read and write ends, non-blocking
	cleanup runtime.Cleanup
}

// Pool hands out empty pipes. Pipes dropped by the sync.Pool at garbage
// collection are closed by a cleanup. The zero Pool is ready to use.
type Pool struct {
	pool    sync.Pool
	created atomic.Int64
	inUse   atomic.Int64
}

func closePipe(fds [2]int) {
	_ = unix.Close(fds[0])
	_ = unix.Close(fds[1])
}

// Get returns an empty pipe, from the pool or new.
func (pp *Pool) Get() (*Pipe, error) {
	if p, _ := pp.pool.Get().(*Pipe); p != nil {
		pp.inUse.Add(1)
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// A larger pipe moves more per splice(2) pair. Errors are ignored: the
	// kernel refuses it past pipe-max-size or, for unprivileged users, past
	// pipe-user-pages-soft, and the default 64 KiB pipe works.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, PipeSize)
	p := &Pipe{R: fds[0], W: fds[1]}
	p.cleanup = runtime.AddCleanup(p, closePipe, fds)
	pp.created.Add(1)
	pp.inUse.Add(1)
	return p, nil
}

// Put returns an empty pipe to the pool.
func (pp *Pool) Put(p *Pipe) {
	pp.inUse.Add(-1)
	pp.pool.Put(p)
}

// Destroy closes a pipe that may still hold bytes.
func (pp *Pool) Destroy(p *Pipe) {
	pp.inUse.Add(-1)
	p.cleanup.Stop()
	closePipe([2]int{p.R, p.W})
}

// Created returns how many pipes the pool ever created. No engine reads
// it; the tests of proxy/tcp and of this package prove with it that pipes
// are reused.
func (pp *Pool) Created() int64 { return pp.created.Load() }

// InUse returns how many pipes are handed out and not yet returned. No
// engine reads it; the tests of proxy and of this package prove with it
// that every transfer gives its pipe back.
func (pp *Pool) InUse() int64 { return pp.inUse.Load() }

// Transfer is one direction's use of a pipe: bytes move from a source
// socket into the pipe (Fill) and from the pipe to a destination socket
// (Drain). It holds a pipe from Pool only while bytes are in flight. Fill and
// Drain never wait: they are the bodies of RawConn.Read and RawConn.Write
// callbacks, whose waits the netpoller does.
type Transfer struct {
	Pool   *Pool
	pipe   *Pipe
	InPipe int // bytes in the pipe, not yet drained
}

// Fill moves at most max bytes from the socket rfd into the pipe, taking a
// pipe from the Pool first. again reports that the source has nothing now
// (EAGAIN); an empty pipe has then gone back to the Pool, so a stalled
// transfer holds none. n == 0 without an error and without again is the
// source's end of stream.
func (t *Transfer) Fill(rfd, max int) (n int64, again bool, err error) {
	if t.pipe == nil {
		p, err := t.Pool.Get()
		if err != nil {
			return 0, false, err
		}
		t.pipe = p
	}
	for {
		n, err := Move(rfd, t.pipe.W, max)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if t.InPipe == 0 {
				t.Pool.Put(t.pipe)
				t.pipe = nil
			}
			return 0, true, nil
		case nil:
			t.InPipe += int(n)
		}
		return n, false, err
	}
}

// Drain moves the pipe's bytes to the socket wfd until the pipe is empty or
// the socket takes no more for now (again). A socket that takes nothing
// without an error has been shut down: EPIPE.
func (t *Transfer) Drain(wfd int) (moved int64, again bool, err error) {
	for t.InPipe > 0 {
		n, err := Move(t.pipe.R, wfd, t.InPipe)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return moved, true, nil
		case err != nil:
			return moved, false, err
		case n == 0:
			return moved, false, unix.EPIPE
		}
		t.InPipe -= int(n)
		moved += n
	}
	return moved, false, nil
}

// Release gives the pipe back to the Pool, or closes it when it still holds
// bytes.
func (t *Transfer) Release() {
	if t.pipe != nil {
		if t.InPipe == 0 {
			t.Pool.Put(t.pipe)
		} else {
			t.Pool.Destroy(t.pipe)
		}
	}
	t.pipe, t.InPipe = nil, 0
}
