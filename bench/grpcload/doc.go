// Command grpcload is the client side of the side-by-side gRPC workloads
// (bench/cmd/sidebyside): the load generator of the bidi workload, which
// h2load cannot drive (h2load sends a request's whole body before it reads
// the answer, one stream per call, while a bidi call is a long-lived stream
// whose messages go both ways), and the one-call check the harness makes
// through every proxy before measuring.
//
//	grpcload -addr 127.0.0.1:8080 -conns 4 -streams 16 -size 1024 -d 10s -n 10000000
//	grpcload -addr 127.0.0.1:8080 -check /frontdoor.bench.Bench/Download -size 1048576 -d 2s
//
// The load opens -conns grpc-go client connections and -streams Chat
// streams on each (bench/grpcbackend echoes every message), and on every
// stream sends a -size-byte message and waits for its echo before sending
// the next (a closed loop, like wrk and h2load), for -d or until -n round
// trips over all streams, then half-closes the streams. A stream that fails
// is counted and reopened after 10 ms; nothing runs more than 10 s past -d.
// It prints one line, the harness's format:
//
//	FDBENCH {"requests":N,"duration_us":...,"bytes":...,"status":E,"timeout":T,"p50_us":...,"p99_us":...}
//
// where requests counts round trips, bytes the echoed bytes received (gRPC
// framing included), status the streams that failed, timeout those cut at
// the hard deadline, and the percentiles are round-trip times (buckets about
// 3% wide, lower bound).
//
// -check makes one call of the given method instead (Empty; Echo and Chat
// with -size bytes, Chat three times on one stream; Download of -size bytes)
// and exits 0 only when the status is OK and every byte came back.
//
// The address must be a loopback address: the program refuses anything else.
package main
