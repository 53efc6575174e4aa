// Command grpcbackend is the grpc-go backend of the side-by-side gRPC
// workloads (bench/cmd/sidebyside): the service frontdoor.bench.Bench over
// h2c (HTTP/2 with prior knowledge), with grpc-go's default server settings.
//
//	grpcbackend -listen 127.0.0.1:50051
//
// Its messages are protobuf's well-known types, so no generated code is
// needed (bench/grpcload is its client, and the harness writes h2load's
// request bodies itself):
//
//	/frontdoor.bench.Bench/Empty     unary          google.protobuf.Empty -> Empty
//	/frontdoor.bench.Bench/Echo      unary          BytesValue -> the same BytesValue
//	/frontdoor.bench.Bench/Download  server stream  UInt64Value{n} -> n zero bytes as
//	                                                BytesValue messages of 64 KiB, the last shorter
//	/frontdoor.bench.Bench/Chat      bidi stream    every BytesValue received is sent back
//
// The address must be a loopback address: the program refuses anything
// else. It logs one line when it
// listens and stops on SIGINT or SIGTERM (in-flight calls get 5 s), exiting 0.
package main
