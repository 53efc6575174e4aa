package config

import (
	"strings"
	"testing"
	"time"
)

// A validation case is a whole config with exactly one problem. The line the
// error must carry is marked in the text with "#<".
type errCase struct {
	name string
	text string
	key  string // the error's Key
	msg  string // a substring of the error's Msg
}

// marked returns the line of text marked with "#<", or 0.
func marked(text string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "#<") {
			return i + 1
		}
	}
	return 0
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.text), "testdata/case.toml")
			errs := Errors(err)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v\nconfig:\n%s", len(errs), err, tc.text)
			}
			e := errs[0]
			if e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %s\nwant key %q, message containing %q", e, tc.key, tc.msg)
			}
			if want := marked(tc.text); e.Line != want {
				t.Errorf("got line %d, want %d: %s", e.Line, want, e)
			}
			if e.File != "testdata/case.toml" {
				t.Errorf("got file %q", e.File)
			}
		})
	}
}

// listenerCfg is a valid config whose only listener carries extra, with one
// route to pool "api".
func listenerCfg(extra string) string { return minimal(extra, "", "", "") }

// poolCfg is a valid config whose pool "api" carries extra.
func poolCfg(extra string) string { return minimal("", "", extra, "") }

// jwtCfg is a valid config with policy "users" made of extra.
// The line to report is marked in extra, or is the header when extra carries
// no mark.
func jwtCfg(extra string) string {
	header := "[jwt.users]\n"
	if !strings.Contains(extra, "#<") {
		header = "[jwt.users] #<\n"
	}
	return minimal("", "", "", header+extra)
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"syntax error", listenerCfg(`mode = "http #<`), "", "TOML syntax"},
		{"duplicate table", minimal("", "", "", "[pool.api] #<\n"), "", "TOML syntax"},
		{"unknown top-level table", minimal("", "", "", "[pools.extra] #<\nstrategy = \"x\"\n"), "pools", `unknown key; did you mean "pool"?`},
		{"unknown listener key, suggested", listenerCfg(`mdoe = "http" #<`), "listener[0].mdoe", `did you mean "mode"?`},
		{"unknown key, listed", listenerCfg(`colour = "blue" #<`), "listener[0].colour", "remove it or use one of: accept_proxy, bind,"},
		{"unknown key in inline backend", minimal("", "", "", "") + "[pool.b]\nbackends = [\n  { address = \"127.0.0.1:1\" },\n  { address = \"127.0.0.1:2\", wieght = 2 }, #<\n]\n",
			"pool.b.backends[1].wieght", `did you mean "weight"?`},
		{"unknown key in route", minimal("", "  prefix = \"/\" #<\n", "", ""), "listener[0].route[0].prefix", "unknown key"},
		{"unknown key in health", poolCfg("[pool.api.health]\nchek = \"tcp\" #<\n"), "pool.api.health.chek", `did you mean "check"?`},
		{"string for integer", listenerCfg(`max_connections = "lots" #<`), "listener[0].max_connections", `expected an integer, got the string "lots"; write it without quotes`},
		{"integer for string", minimal("", "", "", "[admin]\nbind = 9901 #<\n"), "admin.bind", "expected a string, got the integer 9901; put the value in double quotes"},
		{"integer for duration", listenerCfg(`read_timeout = 30 #<`), "listener[0].read_timeout", `expected a duration string such as "2s"`},
		{"bad duration", poolCfg(`connect_timeout = "2 seconds" #<`), "pool.api.connect_timeout", `bad duration "2 seconds": use a Go duration such as 2s or 1m30s`},
		{"string for bool", minimal("", "", "", "[[listener]]\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\naccept_proxy = \"yes\" #<\n"), "listener[1].accept_proxy", "expected true or false"},
		{"table for array", poolCfg("[pool.api.backends] #<\naddress = \"x\"\n"), "", "TOML syntax"},
		{"string for float", poolCfg(`retry_budget = "20%" #<`), "pool.api.retry_budget", "expected a number"},
		{"bad hash key", poolCfg("strategy = \"consistent_hash\"\nhash_on = \"header:\" #<\n"), "pool.api.hash_on", "the header name after the colon is empty"},
		{"unknown hash source", poolCfg("strategy = \"consistent_hash\"\nhash_on = \"ip\" #<\n"), "pool.api.hash_on", `bad key source "ip"`},
		{"bad status range", poolCfg("[pool.api.health]\nexpect_status = \"200-700\" #<\n"), "pool.api.health.expect_status", "within 100-599"},
		{"integer too large", listenerCfg(`max_body_bytes = 9999999999999999999 #<`), "", "TOML syntax"},
	})
}

func TestValidateListeners(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"no listeners", "[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n", "listener", "no listeners; add a [[listener]] table"},
		{"drain_timeout zero", minimal("", "", "", "[global]\ndrain_timeout = \"0s\" #<\n"), "global.drain_timeout", "drain_timeout must be greater than 0"},
		{"admin bind", minimal("", "", "", "[admin]\nbind = \"localhost\" #<\n"), "admin.bind", `bad address "localhost": not host:port; use host:port such as 127.0.0.1:9901, or "off"`},
		{"admin token file missing", minimal("", "", "", "[admin]\ntoken_file = \"keys/no.token\" #<\n"), "admin.token_file", "does not exist"},
		{"admin token too short", minimal("", "", "", "[admin]\ntoken_file = \"keys/short.secret\" #<\n"), "admin.token_file", "shorter than 16 bytes"},
		{"admin token without admin", minimal("", "", "", "[admin]\nbind = \"off\"\ntoken_file = \"keys/admin.token\" #<\n"), "admin.token_file", "needs the admin listener"},
		{"log level", minimal("", "", "", "[log]\nlevel = \"warning\" #<\n"), "log.level", `unknown log level "warning"; did you mean "warn"?`},
		{"access log dir missing", minimal("", "", "", "[log]\naccess = \"no/such/dir/access.log\" #<\n"), "log.access", `directory "testdata/no/such/dir" of the access log does not exist`},
		{"access log is a dir", minimal("", "", "", "[log]\naccess = \"keys\" #<\n"), "log.access", "is a directory"},
		{"listener without name", "[[listener]] #<\nbind = \"127.0.0.1:0\"\n  [[listener.route]]\n  pool = \"api\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].name", "listener has no name"},
		{"bad listener name", strings.Replace(listenerCfg(""), `name = "web"`, `name = "web site" #<`, 1), "listener[0].name", `bad listener name "web site"`},
		{"duplicate listener name", minimal("", "", "", "[[listener]]\nname = \"web\" #<\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\n"),
			"listener[1].name", `duplicate listener name "web" (also listener[0] at line 1)`},
		{"missing bind", strings.Replace(strings.Replace(listenerCfg(""), `bind = "127.0.0.1:0"`, "", 1), "[[listener]]", "[[listener]] #<", 1), "listener[0].bind", "listener has no bind address"},
		{"bind without port", strings.Replace(listenerCfg(""), `bind = "127.0.0.1:0"`, `bind = "127.0.0.1" #<`, 1), "listener[0].bind", `bad address "127.0.0.1": not host:port`},
		{"bind port out of range", strings.Replace(listenerCfg(""), `bind = "127.0.0.1:0"`, `bind = "127.0.0.1:70000" #<`, 1), "listener[0].bind", "port must be a number from 0 to 65535"},
		{"bind bad host", strings.Replace(listenerCfg(""), `bind = "127.0.0.1:0"`, `bind = "exa mple:80" #<`, 1), "listener[0].bind", "neither an IP address nor a host name"},
		{"duplicate bind", minimal("", "", "", "[[listener]]\nname = \"two\"\nbind = \"127.0.0.1:8443\"\nmode = \"tcp\"\npool = \"api\"\n[[listener]]\nname = \"three\"\nbind = \"0.0.0.0:8443\" #<\nmode = \"tcp\"\npool = \"api\"\n"),
			"listener[2].bind", `bind "0.0.0.0:8443" overlaps listener[1].bind at line 15`},
		{"bind collides with admin", minimal("", "", "", "[[listener]]\nname = \"two\"\nbind = \":9901\" #<\nmode = \"tcp\"\npool = \"api\"\n"),
			"listener[1].bind", `overlaps admin.bind (bind "127.0.0.1:9901")`},
		{"bad mode", listenerCfg(`mode = "tpc" #<`), "listener[0].mode", `unknown listener mode "tpc"; did you mean "tcp"?`},
		{"http listener with pool", listenerCfg(`pool = "api" #<`), "listener[0].pool", "pool is only for tcp listeners"},
		{"bad trusted_proxies CIDR", listenerCfg(`trusted_proxies = ["10.0.0.0/8", "10.0.0/33"] #<`), "listener[0].trusted_proxies[1]", "is not a CIDR or an IP address"},
		{"http listener without routes", "[[listener]] #<\nname = \"web\"\nbind = \"127.0.0.1:0\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0]", `http listener "web" has no routes; add a [[listener.route]]`},
		{"tcp listener without pool", minimal("", "", "", "[[listener]] #<\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\n"), "listener[1].pool", "tcp listener has no pool"},
		{"tcp listener to missing pool", minimal("", "", "", "[[listener]]\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"postgres\" #<\n"),
			"listener[1].pool", `no pool named "postgres"; define [pool.postgres] or fix the name`},
		{"tcp listener with routes", minimal("", "", "", "[[listener]]\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\n  [[listener.route]] #<\n  pool = \"api\"\n"),
			"listener[1].route[0]", "tcp listener cannot have routes"},
		{"bad send_proxy", minimal("", "", "", "[[listener]]\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\nsend_proxy = \"v3\" #<\n"), "listener[1].send_proxy", "unknown send_proxy version"},
		{"negative timeout", listenerCfg(`write_timeout = "-1s" #<`), "listener[0].write_timeout", "write_timeout must be greater than 0"},
		{"zero idle timeout", listenerCfg(`idle_timeout = "0s" #<`), "listener[0].idle_timeout", "idle_timeout must be greater than 0"},
		{"zero max_connections", listenerCfg(`max_connections = 0 #<`), "listener[0].max_connections", "max_connections 0 must be greater than 0"},
		{"zero max_header_bytes", listenerCfg(`max_header_bytes = 0 #<`), "listener[0].max_header_bytes", "must be greater than 0"},
		{"negative max_body_bytes", listenerCfg(`max_body_bytes = -1 #<`), "listener[0].max_body_bytes", "must be greater than 0"},
	})
}

func TestValidateRoutes(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"route to missing pool", strings.Replace(listenerCfg(""), `pool = "api"`, `pool = "apii" #<`, 1), "listener[0].route[0].pool",
			`no pool named "apii"; define [pool.apii] or fix the name (did you mean "api"?)`},
		{"route without pool", "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n  [[listener.route]] #<\n  path_prefix = \"/\"\n[pool.api]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
			"listener[0].route[0].pool", "route has no pool"},
		{"route to missing jwt policy", minimal("", `  jwt = "users" #<`, "", ""), "listener[0].route[0].jwt", `no jwt policy named "users"; define [jwt.users] or fix the name`},
		{"duplicate route", minimal("", "  host = \"API.example.com\"\n  [[listener.route]] #<\n  host = \"api.example.com\"\n  pool = \"api\"\n", "", ""),
			"listener[0].route[1]", `duplicate route for host "api.example.com" and path_prefix "/" (also listener[0].route[0] at line 5)`},
		{"wildcard inside host", minimal("", `  host = "api.*.com" #<`, "", ""), "listener[0].route[0].host", `bad host pattern "api.*.com"`},
		{"wildcard without dot", minimal("", `  host = "*example.com" #<`, "", ""), "listener[0].route[0].host", `bad host pattern "*example.com"`},
		{"host with port", minimal("", `  host = "example.com:8080" #<`, "", ""), "listener[0].route[0].host", "leave out the port"},
		{"path_prefix without slash", minimal("", `  path_prefix = "v1/" #<`, "", ""), "listener[0].route[0].path_prefix", `path_prefix "v1/" must start with "/"`},
	})
}

func TestValidatePools(t *testing.T) {
	t.Parallel()
	tcpUser := "[[listener]]\nname = \"pg\"\nbind = \"127.0.0.1:0\"\nmode = \"tcp\"\npool = \"api\"\n"
	runErrCases(t, []errCase{
		{"bad pool name", minimal("", "", "", "[pool.\"my pool\"] #<\nbackends = [{ address = \"127.0.0.1:1\" }]\n"), `pool."my pool"`, `bad pool name "my pool"`},
		{"no backends", minimal("", "", "", "[pool.empty]\nbackends = [] #<\n"), "pool.empty.backends", "pool has no backends"},
		{"no backends key", minimal("", "", "", "[pool.empty] #<\nstrategy = \"least_conn\"\n"), "pool.empty.backends", "pool has no backends"},
		{"backend without port", minimal("", "", "", "[pool.b]\nbackends = [\n  { address = \"10.0.0.1\" }, #<\n]\n"), "pool.b.backends[0].address", `bad address "10.0.0.1": not host:port`},
		{"backend port 0", minimal("", "", "", "[pool.b]\nbackends = [\n  { address = \"10.0.0.1:0\" }, #<\n]\n"), "pool.b.backends[0].address", "port must be a number from 1 to 65535"},
		{"backend without host", minimal("", "", "", "[pool.b]\nbackends = [{ address = \":80\" }] #<\n"), "pool.b.backends[0].address", "the host is missing"},
		{"duplicate backend", minimal("", "", "", "[pool.b]\nbackends = [\n  { address = \"10.0.0.1:80\" },\n  { address = \"10.0.0.1:80\" }, #<\n]\n"),
			"pool.b.backends[1].address", `duplicate backend "10.0.0.1:80" (also pool.b.backends[0] at line 15)`},
		{"weight zero", minimal("", "", "", "[pool.b]\nbackends = [\n  { address = \"10.0.0.1:80\", weight = 0 }, #<\n]\n"), "pool.b.backends[0].weight", "weight 0 must be at least 1"},
		{"affinity secret without affinity", minimal("", "", "", "[pool.b]\naffinity_secret_file = \"keys/hmac.secret\" #<\nbackends = [{ address = \"10.0.0.1:80\" }]\n"), "pool.b.affinity_secret_file", "only used with affinity"},
		{"affinity secret too short", minimal("", "", "", "[pool.b]\naffinity = \"cookie:fd\"\naffinity_secret_file = \"keys/short.secret\" #<\nbackends = [{ address = \"10.0.0.1:80\" }]\n"), "pool.b.affinity_secret_file", "shorter than 16 bytes"},
		{"weight above 1000", minimal("", "", "", "[pool.b]\nbackends = [\n  { address = \"10.0.0.1:80\", weight = 1001 }, #<\n]\n"), "pool.b.backends[0].weight", "weight 1001 is above 1000"},
		{"table_size below weight sum", minimal("", "", "", "[pool.b]\nstrategy = \"consistent_hash\"\ntable_size = 101 #<\nbackends = [\n  { address = \"10.0.0.1:80\", weight = 1000 },\n  { address = \"10.0.0.2:80\", weight = 1 },\n]\n"), "pool.b.table_size", "use a prime such as 1009"},
		{"misspelt strategy", poolCfg(`strategy = "round_robbin" #<`), "pool.api.strategy", `unknown strategy "round_robbin"; did you mean "round_robin"?`},
		{"unknown strategy", poolCfg(`strategy = "random" #<`), "pool.api.strategy", "use one of: round_robin, least_conn, consistent_hash"},
		{"hash_on without consistent_hash", poolCfg(`hash_on = "path" #<`), "pool.api.hash_on", `hash_on is only used with strategy = "consistent_hash"`},
		{"bounded_load without consistent_hash", poolCfg(`bounded_load = 1.25 #<`), "pool.api.bounded_load", "only used with"},
		{"bounded_load 1", poolCfg("strategy = \"consistent_hash\"\nbounded_load = 1.0 #<\n"), "pool.api.bounded_load", "must be 0 (off) or greater than 1"},
		{"bounded_load inf", poolCfg("strategy = \"consistent_hash\"\nbounded_load = inf #<\n"), "pool.api.bounded_load", "must be 0 (off) or greater than 1"},
		{"table_size not prime", poolCfg("strategy = \"consistent_hash\"\ntable_size = 1000 #<\n"), "pool.api.table_size", "table_size 1000 must be a prime; use 1009"},
		{"table_size too small", poolCfg("strategy = \"consistent_hash\"\ntable_size = 97 #<\n"), "pool.api.table_size", "must be at least 100 (100 x 1 backends, and the sum of weights over their gcd); use a prime such as 101"},
		{"table_size too large", poolCfg("strategy = \"consistent_hash\"\ntable_size = 99999999999 #<\n"), "pool.api.table_size", "is too large"},
		{"table_size without consistent_hash", poolCfg(`table_size = 65537 #<`), "pool.api.table_size", "only used with"},
		{"tcp pool hashing on a header", minimal("", "", "strategy = \"consistent_hash\"\nhash_on = \"header:X-User\" #<\n", tcpUser), "pool.api.hash_on",
			`pool "api" is used by tcp listener "pg", which can only hash on "source_ip"`},
		{"tcp pool with h2c", minimal("", "", "protocol = \"h2c\" #<\n", tcpUser), "pool.api.protocol", `remove protocol = "h2c"`},
		{"tcp pool with affinity", minimal("", "", "affinity = \"cookie:s\" #<\n", tcpUser), "pool.api.affinity", "has no HTTP to carry affinity"},
		{"affinity from query", poolCfg(`affinity = "query:id" #<`), "pool.api.affinity", `affinity "query:id" must be "cookie:NAME" or "header:NAME"`},
		{"affinity source_ip", poolCfg(`affinity = "source_ip" #<`), "pool.api.affinity", "must be"},
		{"bad protocol", poolCfg(`protocol = "http2" #<`), "pool.api.protocol", `unknown protocol "http2"`},
		{"negative slow start", poolCfg(`slow_start = "-1s" #<`), "pool.api.slow_start", "slow_start must be 0 (off) or positive"},
		{"zero connect timeout", poolCfg(`connect_timeout = "0s" #<`), "pool.api.connect_timeout", "connect_timeout must be greater than 0"},
		{"zero response timeout", poolCfg(`response_timeout = "0ms" #<`), "pool.api.response_timeout", "must be greater than 0"},
		{"zero pool idle timeout", poolCfg(`idle_timeout = "-5s" #<`), "pool.api.idle_timeout", "must be greater than 0"},
		{"zero max connections per backend", poolCfg(`max_connections_per_backend = 0 #<`), "pool.api.max_connections_per_backend", "must be greater than 0"},
		{"negative retries", poolCfg(`retries = -1 #<`), "pool.api.retries", "retries -1 must be between 0 (no retries) and 10"},
		{"too many retries", poolCfg(`retries = 11 #<`), "pool.api.retries", "must be between 0"},
		{"zero retry budget", poolCfg(`retry_budget = 0 #<`), "pool.api.retry_budget", "retry_budget 0 must be a fraction above 0 and at most 1"},
		{"retry budget above 1", poolCfg(`retry_budget = 1.5 #<`), "pool.api.retry_budget", "at most 1"},
		{"retry budget nan", poolCfg(`retry_budget = nan #<`), "pool.api.retry_budget", "at most 1"},
		{"queue size zero", poolCfg(`queue = { size = 0, timeout = "1s" } #<`), "pool.api.queue.size", "queue size 0 must be at least 1"},
		{"queue without size", poolCfg(`queue = { timeout = "1s" } #<`), "pool.api.queue.size", "must be at least 1"},
		{"queue timeout zero", poolCfg(`queue = { size = 10, timeout = "0s" } #<`), "pool.api.queue.timeout", "timeout must be greater than 0"},
		{"queue without timeout", poolCfg(`queue = { size = 10 } #<`), "pool.api.queue.timeout", "timeout must be greater than 0"},
		{"queue unknown key", poolCfg(`queue = { size = 10, timeout = "1s", max = 3 } #<`), "pool.api.queue.max", "unknown"},
	})
}

func TestValidateHealth(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"bad check", poolCfg("[pool.api.health]\ncheck = \"https\" #<\n"), "pool.api.health.check", `unknown health check "https"; did you mean "http"?`},
		{"timeout not below interval", poolCfg("[pool.api.health]\ninterval = \"1s\"\ntimeout = \"1s\" #<\n"), "pool.api.health.timeout", "timeout 1s must be less than interval 1s"},
		{"timeout above interval", poolCfg("[pool.api.health]\ninterval = \"2s\"\ntimeout = \"3s\" #<\n"), "pool.api.health.timeout", "must be less than interval"},
		{"zero interval", poolCfg("[pool.api.health]\ninterval = \"0s\" #<\n"), "pool.api.health.interval", "interval must be greater than 0"},
		{"zero timeout", poolCfg("[pool.api.health]\ntimeout = \"0s\" #<\n"), "pool.api.health.timeout", "timeout must be greater than 0"},
		{"rise zero", poolCfg("[pool.api.health]\nrise = 0 #<\n"), "pool.api.health.rise", "rise 0 must be at least 1"},
		{"fall zero", poolCfg("[pool.api.health]\nfall = 0 #<\n"), "pool.api.health.fall", "fall 0 must be at least 1"},
		{"path without slash", poolCfg("[pool.api.health]\npath = \"healthz\" #<\n"), "pool.api.health.path", `must start with "/"`},
		{"bad method", poolCfg("[pool.api.health]\nmethod = \"GET /\" #<\n"), "pool.api.health.method", "bad method"},
		{"status range reversed", poolCfg("[pool.api.health]\nexpect_status = \"399-200\" #<\n"), "pool.api.health.expect_status", "bad status range"},
		{"status code too low", poolCfg("[pool.api.health]\nexpect_status = 99 #<\n"), "pool.api.health.expect_status", "bad status range \"99\""},
		{"max ejection percent", poolCfg("[pool.api.passive]\nmax_ejection_percent = 101 #<\n"), "pool.api.passive.max_ejection_percent", "between 0 and 100"},
		{"negative consecutive failures", poolCfg("[pool.api.passive]\nconsecutive_failures = -1 #<\n"), "pool.api.passive.consecutive_failures", "must be 0 (off) or more"},
		{"zero base ejection", poolCfg("[pool.api.passive]\nbase_ejection = \"0s\" #<\n"), "pool.api.passive.base_ejection", "must be greater than 0"},
		{"max ejection time below base", poolCfg("[pool.api.passive]\nbase_ejection = \"60s\"\nmax_ejection_time = \"30s\" #<\n"),
			"pool.api.passive.max_ejection_time", "max_ejection_time 30s must be at least base_ejection 1m0s"},
		{"max ejection time below default base", poolCfg("[pool.api.passive]\nmax_ejection_time = \"10s\" #<\n"),
			"pool.api.passive.max_ejection_time", "must be at least base_ejection 30s"},
		{"failure status not 5xx", poolCfg("[pool.api.passive]\nfailure_statuses = \"500,404\" #<\n"),
			"pool.api.passive.failure_statuses", `"404" is outside 500-599`},
		{"failure status range leaves 5xx", poolCfg("[pool.api.passive]\nfailure_statuses = \"500-600\" #<\n"),
			"pool.api.passive.failure_statuses", `"500-600" is outside 500-599`},
		{"failure status reversed", poolCfg("[pool.api.passive]\nfailure_statuses = \"504-502\" #<\n"),
			"pool.api.passive.failure_statuses", `range "504-502" is reversed`},
		{"failure status garbage", poolCfg("[pool.api.passive]\nfailure_statuses = \"500,,502\" #<\n"),
			"pool.api.passive.failure_statuses", `item "" is not a code or range`},
		{"failure statuses not a string", poolCfg("[pool.api.passive]\nfailure_statuses = true #<\n"),
			"pool.api.passive.failure_statuses", `a list of statuses such as "500,502-504"`},
		{"count timeouts not a bool", poolCfg("[pool.api.passive]\ncount_timeouts = \"yes\" #<\n"),
			"pool.api.passive.count_timeouts", "true or false"},
	})
}

func TestValidateJWT(t *testing.T) {
	t.Parallel()
	runErrCases(t, []errCase{
		{"no key source", jwtCfg("issuer = \"x\"\n"), "jwt.users", "policy has no key source"},
		{"two key sources", jwtCfg("jwks_file = \"keys/jwks.json\"\npublic_key_file = \"keys/public.pem\" #<\n"), "jwt.users.public_key_file", "several key sources (jwks_file, public_key_file); keep exactly one"},
		{"missing key file", jwtCfg("jwks_file = \"keys/nope.json\" #<\n"), "jwt.users.jwks_file", `file "testdata/keys/nope.json" does not exist`},
		{"key file is a directory", jwtCfg("public_key_file = \"keys\" #<\n"), "jwt.users.public_key_file", "is not a regular file"},
		{"jwks_url over http", jwtCfg("jwks_url = \"http://auth.example.com/jwks\" #<\n"), "jwt.users.jwks_url", "uses plain http to a non-loopback host"},
		{"jwks_url not a url", jwtCfg("jwks_url = \"auth.example.com/jwks\" #<\n"), "jwt.users.jwks_url", "use an https:// URL"},
		{"jwks_refresh zero", jwtCfg("jwks_url = \"https://auth.example.com/jwks\"\njwks_refresh = \"0s\" #<\n"), "jwt.users.jwks_refresh", "must be greater than 0"},
		{"algorithm none", jwtCfg("jwks_file = \"keys/jwks.json\"\nalgorithms = [\"RS256\", \"none\"] #<\n"),
			"jwt.users.algorithms[1]", `algorithm "none" is never allowed`},
		{"unknown algorithm", jwtCfg("jwks_file = \"keys/jwks.json\"\nalgorithms = [\"RS257\"] #<\n"), "jwt.users.algorithms[0]", `unknown algorithm "RS257"; did you mean "RS256"?`},
		{"no algorithms", jwtCfg("jwks_file = \"keys/jwks.json\"\nalgorithms = [] #<\n"), "jwt.users.algorithms", "no algorithms"},
		{"hmac with jwks", jwtCfg("jwks_file = \"keys/jwks.json\"\nalgorithms = [\"HS256\"] #<\n"), "jwt.users.algorithms", "HS256 needs hmac_secret_file"},
		{"hmac mixed with rsa", jwtCfg("hmac_secret_file = \"keys/hmac.secret\"\nalgorithms = [\"HS256\", \"RS256\"] #<\n"), "jwt.users.algorithms", "mix HMAC (HS256) and public-key (RS256)"},
		{"hmac secret too short", jwtCfg("hmac_secret_file = \"keys/short.secret\" #<\nalgorithms = [\"HS256\"]\n"), "jwt.users.hmac_secret_file", "is 5 bytes; HS256 needs at least 32"},
		{"forward claim to a framing header", jwtCfg("jwks_file = \"keys/jwks.json\"\nforward_claims = { sub = \"Host\" } #<\n"), "jwt.users.forward_claims.sub", `header "Host" cannot carry a claim`},
		{"hmac secret with rsa", jwtCfg("hmac_secret_file = \"keys/hmac.secret\"\nalgorithms = [\"RS256\"] #<\n"), "jwt.users.algorithms", "hmac_secret_file needs HMAC algorithms"},
		{"token from query", jwtCfg("jwks_file = \"keys/jwks.json\"\ntoken_from = \"query:token\" #<\n"), "jwt.users.token_from", `token_from "query:token" must be "header:NAME" or "cookie:NAME"`},
		{"negative leeway", jwtCfg("jwks_file = \"keys/jwks.json\"\nleeway = \"-1s\" #<\n"), "jwt.users.leeway", "must not be negative"},
		{"zero max token bytes", jwtCfg("jwks_file = \"keys/jwks.json\"\nmax_token_bytes = 0 #<\n"), "jwt.users.max_token_bytes", "must be greater than 0"},
		{"cache size", jwtCfg("jwks_file = \"keys/jwks.json\"\ncache_size = -2 #<\n"), "jwt.users.cache_size", "must be -1 (no cache)"},
		{"cache ttl", jwtCfg("jwks_file = \"keys/jwks.json\"\ncache_ttl = \"0s\" #<\n"), "jwt.users.cache_ttl", "must be greater than 0"},
		{"empty audience", jwtCfg("jwks_file = \"keys/jwks.json\"\naudiences = [\"api\", \"\"] #<\n"), "jwt.users.audiences[1]", "empty audience"},
		{"bad forward header", jwtCfg("jwks_file = \"keys/jwks.json\"\nforward_claims = { sub = \"X User\" } #<\n"), "jwt.users.forward_claims.sub", `bad header name "X User"`},
		{"forward header twice", jwtCfg("jwks_file = \"keys/jwks.json\"\nforward_claims = { sub = \"X-User\", uid = \"x-user\" } #<\n"), "jwt.users.forward_claims.uid", `header "x-user" is already set from claim "sub"`},
		{"bad policy name", minimal("", "", "", "[jwt.\"a/b\"] #<\njwks_file = \"keys/jwks.json\"\n"), `jwt."a/b"`, "bad jwt policy name"},
	})
}

// TestValidJWTPolicies loads the key sources and algorithms that must pass.
func TestValidJWTPolicies(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{
		"jwks_file = \"keys/jwks.json\"",
		"jwks_url = \"https://auth.example.com/.well-known/jwks.json\"",
		"jwks_url = \"http://127.0.0.1:8081/jwks\"",
		"jwks_url = \"http://[::1]:8081/jwks\"",
		"jwks_url = \"http://localhost/jwks\"",
		"public_key_file = \"keys/public.pem\"\nalgorithms = [\"PS512\", \"ES384\"]",
		"hmac_secret_file = \"keys/hmac.secret\"\nalgorithms = [\"HS384\", \"HS512\"]\ntoken_from = \"cookie:session\"",
		"jwks_file = \"keys/jwks.json\"\ncache_size = -1\nleeway = \"0s\"",
	} {
		text := minimal("", "  jwt = \"users\"\n", "", "[jwt.users]\n"+policy+"\n")
		if _, err := Parse([]byte(text), "testdata/valid.toml"); err != nil {
			t.Errorf("policy %q: %v", policy, err)
		}
	}
}

// TestManyErrorsAtOnce checks that problems in every part of a file are
// reported together, in line order.
func TestManyErrorsAtOnce(t *testing.T) {
	t.Parallel()
	text := `[[listener]]
name = "web"
bind = "nonsense"
mode = "htp"
[pool.api]
strategy = "least_con"
backends = [{ address = "127.0.0.1:1", weight = -3 }]
retries = "two"
[jwt.users]
algorithms = ["none"]
`
	_, err := Parse([]byte(text), "")
	var got []string
	for _, e := range Errors(err) {
		got = append(got, e.Error())
	}
	want := []string{
		`line 3: listener[0].bind: bad address "nonsense": not host:port; use host:port such as 127.0.0.1:8080 or :8080`,
		`line 4: listener[0].mode: unknown listener mode "htp"; did you mean "http"?`,
		`line 6: pool.api.strategy: unknown strategy "least_con"; did you mean "least_conn"?`,
		`line 7: pool.api.backends[0].weight: weight -3 must be at least 1; remove the backend to take it out of the pool`,
		`line 8: pool.api.retries: expected an integer, got the string "two"; write it without quotes`,
		`line 9: jwt.users: policy has no key source; set one of jwks_file, jwks_url, public_key_file or hmac_secret_file`,
		`line 10: jwt.users.algorithms[0]: algorithm "none" is never allowed: it accepts unsigned tokens; remove it`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPoolQueue(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(poolCfg(`queue = { size = 8, timeout = "250ms" }`)), "testdata/case.toml")
	if err != nil {
		t.Fatal(err)
	}
	q := cfg.Pools["api"].Queue
	if q == nil || q.Size != 8 || q.Timeout.Duration != 250*time.Millisecond {
		t.Fatalf("queue = %+v, want size 8, timeout 250ms", q)
	}
	cfg, err = Parse([]byte(poolCfg("")), "testdata/case.toml")
	if err != nil {
		t.Fatal(err)
	}
	if q := cfg.Pools["api"].Queue; q != nil {
		t.Fatalf("queue = %+v without the key, want nil (no queue)", q)
	}
}
