package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary text to Parse. It must never panic, and any
// error must consist only of *Error values, each with a message.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"full.toml", "acceptance.toml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	if data, err := os.ReadFile("../config.toml"); err == nil {
		f.Add(string(data))
	}
	f.Add(minimal("", "", "", ""))
	f.Add("[[listener]]\n[[listener.route]]\n[[listener]]\nroute = [{ pool = 1 }]\n")
	f.Add("a = \"\"\"\n[[x]]\n\"\"\"\n[pool.'q.r']\nbackends = [ {address=\"h:1\"},\n{ address = 2 } ]\n")
	f.Add("[pool.x]\nstrategy = \"consistent_hash\"\ntable_size = 9223372036854775807\nbounded_load = nan\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse([]byte(text), "testdata/fuzz.toml")
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		if cfg != nil {
			t.Fatal("config returned with an error")
		}
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) {
			t.Fatalf("error is not a join: %T", err)
		}
		for _, inner := range joined.Unwrap() {
			var ce *Error
			if !errors.As(inner, &ce) || ce != inner {
				t.Fatalf("error %T is not a *Error: %v", inner, inner)
			}
			if ce.Msg == "" || ce.File != "testdata/fuzz.toml" || ce.Line < 0 {
				t.Fatalf("incomplete error %#v", ce)
			}
		}
		// The line index must cope with the text whatever it is.
		indexLines(text)
	})
}
