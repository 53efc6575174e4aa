// Package transcodetest serves the tests of JSON/HTTP to gRPC transcoding
// (proxy/transcode and the proxy's transcoding engine): it compiles
// testdata/bookstore.proto with protoc into a descriptor set and runs a
// real grpc-go server for its Bookstore service, built from the
// descriptors with dynamicpb (no generated code). Tests only.
package transcodetest
