package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"frontdoor/metrics"
	"frontdoor/proxy"
)

const ctlUsage = `usage: frontdoor ctl [-admin ADDR] [-token-file FILE] COMMAND

commands (HAProxy's runtime API in brackets):
  drain POOL ADDR     no new requests; those in flight finish  [set server POOL/ADDR state drain]
  maint POOL ADDR     out of rotation; health checks go on      [set server POOL/ADDR state maint]
  ready POOL ADDR     back in rotation                          [set server POOL/ADDR state ready]
  weight POOL ADDR N  runtime weight 0..1000 (0: no new requests) [set server POOL/ADDR weight N]
  uneject POOL ADDR   end a passive ejection now
  status              pools and backends, as /status has them

Write commands need the admin token (-token-file, the file admin.token_file
names). Exit status 0 on success, 1 on any error.
`

// runCtl is "frontdoor ctl": a client of the admin listener's write
// endpoints and /status.
func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("frontdoor ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage, "\nflags:\n"); fs.PrintDefaults() }
	admin := fs.String("admin", "127.0.0.1:9901", "admin listener address (admin.bind)")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token (admin.token_file); needed by write commands")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	c := &ctlClient{base: "http://" + *admin, out: stdout, http: &http.Client{Timeout: 10 * time.Second}}
	args = fs.Args()
	if len(args) == 0 {
		fs.Usage()
		return 1
	}
	if args[0] == "status" && len(args) == 1 {
		return c.report(stderr, c.status())
	}
	var op, body string
	switch cmd := args[0]; {
	case (cmd == "drain" || cmd == "maint" || cmd == "ready") && len(args) == 3:
		op, body = metrics.OpState, cmd
	case cmd == "weight" && len(args) == 4:
		if n, err := strconv.Atoi(args[3]); err != nil || n < 0 {
			fmt.Fprintf(stderr, "frontdoor ctl: weight %q: want an integer of 0 or more\n", args[3])
			return 1
		}
		op, body = metrics.OpWeight, args[3]
	case cmd == "uneject" && len(args) == 3:
		op = metrics.OpUneject
	default:
		fmt.Fprintf(stderr, "frontdoor ctl: bad command %q\n\n", strings.Join(args, " "))
		fs.Usage()
		return 1
	}
	if *tokenFile == "" {
		fmt.Fprintln(stderr, "frontdoor ctl: write commands need -token-file (the file admin.token_file names)")
		return 1
	}
	tok, err := metrics.ReadTokenFile(*tokenFile)
	if err != nil {
		fmt.Fprintln(stderr, "frontdoor ctl:", err)
		return 1
	}
	c.token = string(tok)
	return c.report(stderr, c.write(args[1], args[2], op, body))
}

type ctlClient struct {
	base  string
	token string
	out   io.Writer
	http  *http.Client
}

func (c *ctlClient) report(stderr io.Writer, err error) int {
	if err != nil {
		fmt.Fprintln(stderr, "frontdoor ctl:", err)
		return 1
	}
	return 0
}

// do sends a request and returns the body of a 200 answer, or an error
// carrying the server's status and message.
func (c *ctlClient) do(req *http.Request) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer of %s: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// write sends one write command and prints what changed.
func (c *ctlClient) write(pool, addr, op, body string) error {
	path := "/backends/" + url.PathEscape(pool) + "/" + url.PathEscape(addr) + "/" + op
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "text/plain")
	data, err := c.do(req)
	if err != nil {
		return err
	}
	var ch proxy.BackendChange
	if err := json.Unmarshal(data, &ch); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	b, a := ch.Before, ch.After
	if !ch.Changed {
		fmt.Fprintf(c.out, "%s %s: %s: unchanged (admin_state %s, weight %d, health %s, serving %v, in flight %d)\n",
			ch.Pool, ch.Address, ch.Command, a.AdminState, a.Weight, a.State, a.Serving, a.InFlight)
		return nil
	}
	var diffs []string
	if b.AdminState != a.AdminState {
		diffs = append(diffs, "admin_state "+b.AdminState+" -> "+a.AdminState)
	}
	if b.Weight != a.Weight {
		diffs = append(diffs, fmt.Sprintf("weight %d -> %d", b.Weight, a.Weight))
	}
	if b.Ejected != a.Ejected {
		diffs = append(diffs, fmt.Sprintf("ejected %v -> %v", b.Ejected, a.Ejected))
	}
	if b.Serving != a.Serving {
		diffs = append(diffs, fmt.Sprintf("serving %v -> %v", b.Serving, a.Serving))
	}
	fmt.Fprintf(c.out, "%s %s: %s: %s (health %s, in flight %d)\n",
		ch.Pool, ch.Address, ch.Command, strings.Join(diffs, ", "), a.State, a.InFlight)
	return nil
}

// status prints /status as a table, one backend a line.
func (c *ctlClient) status() error {
	req, err := http.NewRequest(http.MethodGet, c.base+"/status", nil)
	if err != nil {
		return err
	}
	data, err := c.do(req)
	if err != nil {
		return err
	}
	var st proxy.Status
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("decode /status: %w", err)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POOL\tBACKEND\tHEALTH\tADMIN\tWEIGHT\tSERVING\tIN FLIGHT")
	for _, p := range st.Pools {
		for _, b := range p.Backends {
			weight := strconv.Itoa(b.Weight)
			if b.Weight != b.ConfiguredWeight {
				weight += " (file " + strconv.Itoa(b.ConfiguredWeight) + ")"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%d\n", p.Name, b.Address, b.State, b.AdminState, weight, b.Serving, b.InFlight)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, p := range st.Pools {
		n := p.Counts
		fmt.Fprintf(c.out, "pool %s: %d backends, %d serving; health %d up, %d down, %d ejected; admin %d ready, %d drain, %d maint\n",
			p.Name, n.Backends, n.Serving, n.Up, n.Down, n.Ejected, n.Ready, n.Drain, n.Maint)
	}
	return nil
}
