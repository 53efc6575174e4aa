package transcode

import (
	"strings"
	"testing"
)

// FuzzParseTemplate: any template text parses or is refused, without a
// panic, and a parsed one matches the path made of its own shape.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"/v1/shelves/{shelf}", "/v1/{name=shelves/*/books/*}", "/v1/{name=**}:verb",
		"/v1/*/x/**", "/{a.b.c}", "/v1/{x=a/*}/{y}:do", "/:", "/{", "/a/{b=}", "/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := parseTemplate(src)
		if err != nil {
			return
		}
		n := &node{}
		b := &Binding{Template: src}
		if n.insert(tm, b) != nil {
			t.Fatal("insert into an empty tree conflicts")
		}
		var segs []string
		for _, s := range tm.segs {
			switch s.kind {
			case segLiteral:
				segs = append(segs, s.lit)
			case segStar:
				segs = append(segs, "x")
			}
		}
		if got := n.match(segs, tm.verb); got != b {
			t.Fatalf("%q does not match its own shape %q", src, strings.Join(segs, "/"))
		}
	})
}

// FuzzTranscodeRequest: any method, path, query and body is answered with
// a call or an *Error, never a panic.
func FuzzTranscodeRequest(f *testing.F) {
	tc := bookstore(f, Options{})
	f.Add("GET", "/v1/shelves/7", "", "")
	f.Add("POST", "/v1/shelves/3/books", "", `{"book":{"title":"x"}}`)
	f.Add("PATCH", "/v1/shelves/1/books/2", "update_mask=a", `{"title":"T","createTime":"2024-01-02T03:04:05Z"}`)
	f.Add("GET", "/v1/echo", "i64=1&tags=a&labels[k]=v&nested.inner.s=x&ts=2024-01-02T03:04:05Z&val=%7B%7D", "")
	f.Add("GET", "/v1/echo/a%2Fb/1/RED/true", "", "")
	f.Add("GET", "/v1/books/a/b/c:x", "", "")
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		m, err := tc.Match(method, path)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Match error %T", err)
			}
			return
		}
		c, err := tc.NewCall(m, query, []byte(body))
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("NewCall error %T: %v", err, err)
			}
			return
		}
		if _, err := c.AppendFrame(nil); err != nil {
			t.Fatal(err)
		}
	})
}
