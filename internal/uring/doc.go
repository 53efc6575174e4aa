// Package uring is a minimal io_uring ring for event loops: setup and
// mmap of the rings through raw system calls (golang.org/x/sys/unix, no
// cgo), a submission queue filled in place and handed to the kernel with one
// io_uring_enter per loop iteration, the completion queue read in place, and
// a provided-buffer ring for multishot receives.
//
// It exists because no maintained pure-Go io_uring library is served by the
// module proxy this project builds from (bench/NOTES.md, "io_uring").
//
// A Ring is used by one goroutine only; nothing in it is safe for
// concurrent use. Memory handed to the kernel through an SQE (a send's
// bytes) must stay untouched until its completion is read.
package uring
