// Package grpcbench is the gRPC service of the side-by-side benchmark
// (bench/cmd/sidebyside): its method names, the grpc-go server behind
// bench/grpcbackend, the request bodies h2load sends, the one-call check the
// harness makes through each proxy before measuring, and the bidi ping-pong
// loop of bench/grpcload.
//
// The service is frontdoor.bench.Bench, with messages from the protobuf
// well-known types, so no generated code is needed:
//
//	Empty    unary          google.protobuf.Empty -> Empty
//	Echo     unary          BytesValue -> the same BytesValue
//	Download server stream  UInt64Value{n} -> n payload bytes, as BytesValue
//	                        messages of ChunkBytes (the last may be shorter)
//	Chat     bidi stream    every BytesValue received is sent back
//
// Nothing here is imported by the daemon. Every function is safe for
// concurrent use.
package grpcbench
