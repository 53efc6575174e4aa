// Command grpcload is the load generator of the side-by-side bidi workload
// (bench/cmd/sidebyside), which h2load cannot drive: h2load sends a
// request's whole body before it reads the answer, one stream per call,
// while a bidi call is a long-lived stream whose messages go both ways.
//
//	grpcload -addr 127.0.0.1:8080 -conns 4 -streams 16 -size 1024 -d 10s
//
// It opens -conns grpc-go client connections and -streams Chat streams on
// each (the service of bench/grpcbench), and on every stream sends a
// -size-byte message and waits for its echo before sending the next (a
// closed loop, like wrk and h2load), for -d or until -n round trips, then
// half-closes the streams. It prints one line, the harness's format:
//
//	FDBENCH {"requests":N,"duration_us":...,"bytes":...,"status":E,"timeout":T,"p50_us":...,"p99_us":...}
//
// where requests counts round trips, bytes the echoed bytes received (gRPC
// framing included), status the streams that failed, timeout those still
// stuck 10 s after -d. The address must be a loopback address.
package main
