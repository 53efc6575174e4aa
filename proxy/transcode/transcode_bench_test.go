package transcode

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// BenchmarkTranscodeCall is the transcoder's whole work for one small
// unary call, no I/O: match GET /v1/shelves/7, build and frame the request,
// turn a small answer into JSON. Its allocs/op are the transcoding's
// allocations per call (dynamicpb and protojson allocate; zero-copy is not
// a goal here).
func BenchmarkTranscodeCall(b *testing.B) {
	tc := bookstore(b, Options{})
	answer := frameOfB(b, tc, "bookstore.v1.Shelf", `{"name":"shelves/7","theme":"theme","bookCount":"70"}`)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := tc.Match("GET", "/v1/shelves/7")
		if err != nil {
			b.Fatal(err)
		}
		c, err := tc.NewCall(m, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		if buf, err = c.AppendFrame(buf[:0]); err != nil {
			b.Fatal(err)
		}
		if buf, err = c.AppendResponse(buf[:0], answer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranscodeBody is BenchmarkTranscodeCall for a POST with body
// "*" and a query-free path variable.
func BenchmarkTranscodeBody(b *testing.B) {
	tc := bookstore(b, Options{})
	answer := frameOfB(b, tc, "bookstore.v1.Book", `{"name":"shelves/3/books/1","title":"New","genre":"HISTORY","pages":"12"}`)
	body := []byte(`{"book":{"title":"New","genre":"HISTORY","pages":"12"}}`)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m, err := tc.Match("POST", "/v1/shelves/3/books")
		if err != nil {
			b.Fatal(err)
		}
		c, err := tc.NewCall(m, "", body)
		if err != nil {
			b.Fatal(err)
		}
		if buf, err = c.AppendFrame(buf[:0]); err != nil {
			b.Fatal(err)
		}
		if buf, err = c.AppendResponse(buf[:0], answer); err != nil {
			b.Fatal(err)
		}
	}
}

func frameOfB(b *testing.B, tc *Transcoder, typ, js string) []byte {
	b.Helper()
	mt, err := tc.types.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		b.Fatal(err)
	}
	m := mt.New().Interface()
	if err := tc.unmarshal.Unmarshal([]byte(js), m); err != nil {
		b.Fatal(err)
	}
	out, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
