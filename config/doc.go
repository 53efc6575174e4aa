// Package config loads frontdoor's TOML configuration: it decodes the file
// strictly (an unknown key is an error), applies the documented defaults,
// resolves relative file names, and validates the result, reporting every
// problem at once with its file, line and TOML path.
//
// Loading goes decode → defaults (a new value) → validate. The *Config that
// Load returns is plain data: it holds no goroutines, loggers, clients or
// atomics, is never changed afterwards, and is safe to read from any number
// of goroutines. A reload loads a new *Config; a file that fails leaves the
// caller's current one in use.
//
//	cfg, err := config.Load("/etc/frontdoor/config.toml")
//	if err != nil {
//		for _, e := range config.Errors(err) {
//			fmt.Fprintln(os.Stderr, e) // config.toml:14: listener[0].route[1].pool: no pool named "apii"; ...
//		}
//		os.Exit(1)
//	}
//
// The schema and every default are documented on the types in types.go and
// in DESIGN.md. The package imports nothing else of frontdoor.
package config
