package transcode_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"frontdoor/proxy/transcode"
)

// Load a descriptor set that protoc wrote, match a request and build its
// gRPC call.
func ExampleLoad() {
	dir, _ := os.MkdirTemp("", "transcode-example")
	defer os.RemoveAll(dir)
	set := filepath.Join(dir, "api.pb")
	protos := filepath.Join("..", "..", "internal", "transcodetest", "testdata")
	if out, err := exec.Command("protoc", "-I", protos, "--include_imports", "-o", set, "bookstore.proto").CombinedOutput(); err != nil {
		fmt.Println("protoc:", err, string(out))
		return
	}
	tc, err := transcode.Load(set, transcode.Options{Services: []string{"bookstore.v1.Bookstore"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := tc.Match("GET", "/v1/shelves/7")
	if err != nil {
		fmt.Println(err)
		return
	}
	call, err := tc.NewCall(m, "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	frame, _ := call.AppendFrame(nil)
	fmt.Println(m.Binding.GRPCMethod, m.Binding.Template)
	fmt.Printf("% x\n", frame)
	_, err = tc.Match("GET", "/v1/nowhere")
	fmt.Println(err)
	// Output:
	// /bookstore.v1.Bookstore/GetShelf /v1/shelves/{shelf}
	// 00 00 00 00 02 08 07
	// transcode: Not Found
}

// HTTPStatus maps a grpc-status to the answer's HTTP status.
func ExampleHTTPStatus() {
	fmt.Println(transcode.HTTPStatus(transcode.CodeNotFound), transcode.HTTPStatus(transcode.CodeUnavailable))
	// Output: 404 503
}
