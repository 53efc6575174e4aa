// Command grpcbackend is the grpc-go backend of the side-by-side gRPC
// workloads (bench/cmd/sidebyside): the service of bench/grpcbench over
// h2c (HTTP/2 with prior knowledge), with grpc-go's default server settings.
//
//	grpcbackend -listen 127.0.0.1:50051
//
// It serves Empty (unary, empty message), Echo (unary, the message sent
// back), Download (server stream of the bytes asked for, 64 KiB a message)
// and Chat (bidi, every message echoed). The address must be a loopback
// address: the program refuses anything else. It logs one line when it
// listens and stops on SIGINT or SIGTERM (in-flight calls get 5 s), exiting 0.
package main
