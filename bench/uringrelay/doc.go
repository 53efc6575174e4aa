// Command uringrelay is the io_uring prototype of issue 24: a loopback
// byte relay shaped like the proxy's small keep-alive GET (each client
// connection gets one backend connection; request bytes go to the backend,
// answer bytes back), served by one goroutine in one of three ways:
//
//	epoll   edge-triggered epoll, read(2) and write(2) per operation, as
//	        proxy/loop.go does today
//	uring   io_uring only: multishot accept, multishot recv into a provided
//	        buffer ring, send straight from that buffer, every submission
//	        of an iteration in one io_uring_enter that also waits
//	uringw  epoll readiness and read(2) as in epoll, but the writes of an
//	        iteration are queued as send SQEs and submitted with one
//	        io_uring_enter (the cheapest change to the loop)
//
// It parses nothing; run it behind wrk with one request in flight per
// connection. It listens on IPv4 loopback only and exits on SIGINT/SIGTERM
// (or after -max). bench/uringrelay/run.sh measures CPU per request of the
// three modes, interleaved.
//
//	uringrelay -listen 127.0.0.1:8090 -backend 127.0.0.1:8091 -mode uring
package main
