package requestid_test

import (
	"fmt"

	"frontdoor/proxy/internal/requestid"
)

func ExamplePick() {
	ids := requestid.New()
	for _, h := range []struct{ traceparent, xRequestID string }{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "req-1"},
		{"", "req-1"},
		{"", "two words"},
	} {
		id, src := requestid.Pick(h.traceparent, h.xRequestID)
		if src == requestid.None {
			var buf [requestid.Len]byte
			id = string(ids.Next(&buf))
			fmt.Println("new", len(id))
			continue
		}
		fmt.Println(id)
	}
	// Output:
	// 4bf92f3577b34da6a3ce929d0e0e4736
	// req-1
	// new 32
}
