// Package rawio reads and writes non-blocking sockets with raw system calls:
// read(2) and write(2) made with unix.RawSyscall, retried on EINTR. It serves
// the event loop and the deferred connection of proxy and the check engine
// of health, which drive their own non-blocking sockets.
//
// unix.Read and unix.Write go through unix.Syscall, which tells the
// scheduler that the goroutine may block (entersyscall). A call that
// outlasts a sysmon tick (20 µs) then makes sysmon hand the P to another
// thread, and the first such call after the process was idle wakes sysmon
// and resets its poll interval: thread wake-ups and context switches that
// cost more than the I/O itself. A read or write of a non-blocking socket
// never waits (it returns EAGAIN instead), so the scheduler need not know,
// and a raw call pays for neither.
//
// The price: nothing else runs on the goroutine's P during the call, and a
// stop-the-world waits for it. So the descriptor must be non-blocking; a
// raw call on a blocking descriptor that waits for data or room stalls the
// P and every garbage collection until it returns.
//
// The package imports nothing of frontdoor's.
package rawio
