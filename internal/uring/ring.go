package uring

import (
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Setup flags (io_uring_setup(2)).
const (
	SetupSubmitAll    = 1 << 7
	SetupCoopTaskrun  = 1 << 8
	SetupTaskrunFlag  = 1 << 9
	SetupSingleIssuer = 1 << 12
	SetupDeferTaskrun = 1 << 13
	setupCQSize       = 1 << 3
)

// SQEFixedFile says an SQE's Fd is an index in the registered file table
// (RegisterFiles), not a descriptor.
const SQEFixedFile = 1 << 0

// Opcodes used here.
const (
	OpNop    = 0
	OpWritev = 2
	OpAccept = 13
	OpRead   = 22
	OpWrite  = 23
	OpSend   = 26
	OpRecv   = 27
)

// SQE flags.
const (
	SQEBufferSelect   = 1 << 5
	SQECQESkipSuccess = 1 << 6
)

// Operation flags carried in an SQE's ioprio.
const (
	RecvMultishot   = 1 << 1
	AcceptMultishot = 1 << 0
)

// CQE flags.
const (
	CQEFBuffer     = 1 << 0
	CQEFMore       = 1 << 1
	cqeBufferShift = 16
)

const (
	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3
	offSQRing      = 0
	offSQEs        = 0x10000000
	featSingleMmap = 1 << 0
	registerPBuf   = 22
	registerFiles2 = 13
	registerFilesU = 6
	registerRingFD = 20
	enterRegRing   = 1 << 4
	rsrcSparse     = 1
)

// ErrUnsupported is returned by New when the kernel has io_uring off or
// lacks a feature the ring needs.
var ErrUnsupported = errors.New("uring: io_uring unavailable")

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// SQE is a submission queue entry, laid out as the kernel's struct
// io_uring_sqe. Fill it between GetSQE and the next Enter.
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	pad         uint64
}

// CQE is a completion queue entry, laid out as struct io_uring_cqe.
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// BufferID is the provided buffer a receive completion filled (valid when
// Flags has CQEFBuffer).
func (c *CQE) BufferID() uint16 { return uint16(c.Flags >> cqeBufferShift) }

// Ring is one io_uring instance. The zero value is not usable; make one
// with New and Close it.
type Ring struct {
	fd      int
	enterFD int // fd, or its index once registered (RegisterRing)
	enterFl uintptr
	ringMem []byte
	sqeMem  []byte

	sqHead, sqTail *uint32
	sqMask         uint32
	sqEntries      uint32
	sqes           []SQE
	localTail      uint32 // SQEs filled, not yet published to the kernel
	submitted      uint32 // tail published

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []CQE
}

// New sets up a ring of entries submission slots (a power of two) and a
// completion queue of cqEntries (0: the kernel's default, twice entries),
// with the setup flags given.
func New(entries, cqEntries, flags uint32) (*Ring, error) {
	var p params
	p.flags = flags
	if cqEntries > 0 {
		p.flags |= setupCQSize
		p.cqEntries = cqEntries
	}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		if e == unix.ENOSYS || e == unix.EPERM {
			return nil, ErrUnsupported
		}
		return nil, e
	}
	r := &Ring{fd: int(fd), enterFD: int(fd)}
	if p.features&featSingleMmap == 0 {
		_ = unix.Close(r.fd)
		return nil, ErrUnsupported
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	mem, err := unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		_ = unix.Close(r.fd)
		return nil, err
	}
	r.ringMem = mem
	sqeMem, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.sqeMem = sqeMem
	base := unsafe.Pointer(&mem[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqEntries = p.sqEntries
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	// The SQ index array maps slot i to SQE i once and for all: SQEs are
	// used in ring order.
	arr := unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	for i := range arr {
		arr[i] = uint32(i)
	}
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	r.localTail = atomic.LoadUint32(r.sqTail)
	r.submitted = r.localTail
	return r, nil
}

// Close unmaps the rings and closes the ring's descriptor.
func (r *Ring) Close() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.ringMem != nil {
		_ = unix.Munmap(r.ringMem)
		r.ringMem = nil
	}
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
		r.fd = -1
	}
}

// FD is the ring's descriptor.
func (r *Ring) FD() int { return r.fd }

// Pending is the number of SQEs filled and not yet submitted.
func (r *Ring) Pending() uint32 { return r.localTail - r.submitted }

// GetSQE returns the next free submission slot, zeroed, or nil when the
// queue is full (call Enter first).
func (r *Ring) GetSQE() *SQE {
	if r.localTail-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		return nil
	}
	s := &r.sqes[r.localTail&r.sqMask]
	*s = SQE{}
	r.localTail++
	return s
}

// Enter submits the filled SQEs and runs the ring's pending task work, so
// that every completion that is due is posted, without waiting. It is a
// raw system call (no scheduler entry). It returns the number submitted.
func (r *Ring) Enter() (int, error) {
	n := r.publish()
	for {
		s, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.enterFD), uintptr(n), 0, enterGetEvents|r.enterFl, 0, 0)
		if e == unix.EINTR {
			n = 0
			continue
		}
		if e != 0 {
			return int(s), e
		}
		return int(s), nil
	}
}

// Wait submits the filled SQEs and waits, through the runtime (the P is
// handed off while it sleeps), until at least one completion is ready. A
// signal ends the wait early with no error.
func (r *Ring) Wait() error {
	n := r.publish()
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.enterFD), uintptr(n), 1, enterGetEvents|r.enterFl, 0, 0)
	if e != 0 && e != unix.EINTR {
		return e
	}
	return nil
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32
	ts        uint64
}

// WaitShort submits the filled SQEs and waits up to d for a completion, as
// a raw system call: the thread sleeps in the kernel still holding its P
// (what proxy/loop.go's pollShort does with epoll_pwait2). It reports
// whether a completion is ready.
func (r *Ring) WaitShort(d time.Duration) (bool, error) {
	n := r.publish()
	ts := unix.NsecToTimespec(int64(d))
	arg := getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&ts)))}
	_, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.enterFD), uintptr(n), 1, enterGetEvents|enterExtArg|r.enterFl,
		uintptr(unsafe.Pointer(&arg)), unsafe.Sizeof(arg))
	if e != 0 && e != unix.EINTR && e != unix.ETIME {
		return false, e
	}
	return r.PeekCQE() != nil, nil
}

func (r *Ring) publish() uint32 {
	n := r.localTail - r.submitted
	atomic.StoreUint32(r.sqTail, r.localTail)
	r.submitted = r.localTail
	return n
}

// PeekCQE returns the oldest completion not yet consumed, or nil.
func (r *Ring) PeekCQE() *CQE {
	h := *r.cqHead
	if h == atomic.LoadUint32(r.cqTail) {
		return nil
	}
	return &r.cqes[h&r.cqMask]
}

// SeenCQE consumes the completion PeekCQE returned.
func (r *Ring) SeenCQE() { atomic.StoreUint32(r.cqHead, *r.cqHead+1) }

type rsrcUpdate struct {
	offset, resv uint32
	data         uint64
}

type rsrcRegister struct {
	nr, flags   uint32
	resv2, data uint64
	tags        uint64
}

// RegisterRing registers the ring's own descriptor with the kernel
// (IORING_REGISTER_RING_FDS), so io_uring_enter skips the descriptor
// lookup. The ring is then entered only from the thread that registered
// it: use it with SetupSingleIssuer and a locked thread.
func (r *Ring) RegisterRing() error {
	u := rsrcUpdate{offset: ^uint32(0), data: uint64(r.fd)}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerRingFD, uintptr(unsafe.Pointer(&u)), 1, 0, 0)
	if e != 0 {
		return e
	}
	r.enterFD, r.enterFl = int(u.offset), enterRegRing
	return nil
}

// RegisterFiles makes an empty table of n registered files; SetFile fills
// a slot, and an SQE with SQEFixedFile names the slot in Fd.
func (r *Ring) RegisterFiles(n int) error {
	reg := rsrcRegister{nr: uint32(n), flags: rsrcSparse}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFiles2, uintptr(unsafe.Pointer(&reg)),
		unsafe.Sizeof(reg), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// SetFile puts descriptor fd (-1: none) in slot i of the registered files.
func (r *Ring) SetFile(i, fd int) error {
	fds := [1]int32{int32(fd)}
	u := rsrcUpdate{offset: uint32(i), data: uint64(uintptr(unsafe.Pointer(&fds[0])))}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFilesU, uintptr(unsafe.Pointer(&u)), 1, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// BufRing is a ring of provided buffers (IORING_REGISTER_PBUF_RING) of one
// size, that multishot receives of its group pick from.
type BufRing struct {
	mem   []byte // the ring of io_uring_buf entries
	bufs  []byte // the buffers, n * size
	size  int
	mask  uint16
	tail  uint16
	group uint16
}

type ioUringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// NewBufRing registers n buffers (a power of two) of size bytes as group
// group of r, all of them available.
func (r *Ring) NewBufRing(n, size int, group uint16) (*BufRing, error) {
	mem, err := unix.Mmap(-1, 0, n*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	bufs, err := unix.Mmap(-1, 0, n*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), ringEntries: uint32(n), bgid: group}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPBuf, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if e != 0 {
		_ = unix.Munmap(mem)
		_ = unix.Munmap(bufs)
		return nil, e
	}
	b := &BufRing{mem: mem, bufs: bufs, size: size, mask: uint16(n - 1), group: group}
	for i := range n {
		b.put(uint16(i))
	}
	b.Publish()
	return b, nil
}

// Group is the buffer group id to put in a receive SQE's BufIndex.
func (b *BufRing) Group() uint16 { return b.group }

// Buf is buffer id's bytes.
func (b *BufRing) Buf(id uint16) []byte {
	off := int(id) * b.size
	return b.bufs[off : off+b.size : off+b.size]
}

func (b *BufRing) put(id uint16) {
	e := (*ioUringBuf)(unsafe.Pointer(&b.mem[int(b.tail&b.mask)*16]))
	e.addr = uint64(uintptr(unsafe.Pointer(&b.bufs[int(id)*b.size])))
	e.len = uint32(b.size)
	e.bid = id
	b.tail++
}

// Recycle gives buffer id back to the kernel; Publish makes the buffers
// given back visible.
func (b *BufRing) Recycle(id uint16) { b.put(id) }

// Publish makes the recycled buffers available to the kernel.
func (b *BufRing) Publish() {
	// The entry's first 14 bytes are written above; the tail shares the
	// 16-byte slot of entry 0 and must be stored atomically after them.
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b.mem[12])), uint32(b.tail)<<16|uint32(*(*uint16)(unsafe.Pointer(&b.mem[12]))))
}

// Free unmaps the buffers; the ring must be closed first.
func (b *BufRing) Free() {
	_ = unix.Munmap(b.mem)
	_ = unix.Munmap(b.bufs)
}
