package config

import (
	"errors"
	"os"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads, decodes, defaults and validates the configuration file at
// path. On success the returned *Config is complete and immutable: every
// setting has its value or documented default, Pool.Name and JWTPolicy.Name
// are filled, and relative file names (jwks_file, public_key_file,
// hmac_secret_file, a log.access path) are resolved against the directory of
// path. A health check left unset is "tcp".
//
// On failure it returns nil and every problem found, as an errors.Join of
// *Error values ordered by line; use Errors to list them. Load touches the
// file system only to read path and to check that the files the config
// names exist; it is safe to call from several goroutines.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, join([]*Error{{File: path, Msg: "cannot read config: " + pathErr(err)}})
	}
	return Parse(data, path)
}

// Parse is Load for configuration text already in memory. path names the
// file in error messages and anchors relative file names; with path == ""
// relative names are left relative to the working directory.
func Parse(data []byte, path string) (*Config, error) {
	text := string(data)
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return nil, join([]*Error{syntaxError(path, err)})
	}

	if raw == nil {
		raw = map[string]any{}
	}
	idx := indexLines(text)
	d := newDecoder(path, idx)
	var decoded Config
	d.value("", raw, reflect.ValueOf(&decoded).Elem())
	decoded.Path = path

	cfg := withDefaults(decoded, d.set)
	v := &validator{file: path, idx: idx, bad: d.bad}
	v.validate(cfg)
	if err := join(append(d.errs, v.errs...)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// syntaxError turns an error of the TOML parser into an *Error.
func syntaxError(path string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := strings.TrimSuffix(pe.Message, ".")
		return &Error{File: path, Line: pe.Position.Line, Msg: "TOML syntax: " + msg}
	}
	return &Error{File: path, Msg: "TOML syntax: " + err.Error()}
}
