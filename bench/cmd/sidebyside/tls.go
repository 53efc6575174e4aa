package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLS workloads: the HTTP workloads over TLS 1.3 with an ECDSA P-256
// certificate and X25519, side by side with HAProxy and nginx (OpenSSL from
// Debian). Keep-alive runs use wrk over https; a new connection per request
// uses tlsload (below, this binary run as `sidebyside tlsload`), in two
// flavours: full handshakes (no session cache) and resumed ones (session
// tickets). HTTP/2 over TLS waits for frontdoor's HTTP/2 engine.

// tlsTargetNames are the targets that run the TLS workloads, in the order
// of httpTargets (the baseline first). minproxy has no TLS.
var tlsTargetNames = []string{"haproxy", "frontdoor", "frontdoor2", "nginx"}

// tlsSetups are the TLS variants of the HTTP targets' setups.
var tlsSetups = map[string]func(e *env, port int) (launch, error){
	"haproxy":    haproxyTLS,
	"frontdoor":  func(e *env, port int) (launch, error) { return frontdoorTLS(e, e.FrontdoorBin, "frontdoor", port) },
	"frontdoor2": func(e *env, port int) (launch, error) { return frontdoorTLS(e, e.Frontdoor2Bin, "frontdoor2", port) },
	"nginx":      nginxTLS,
}

// tlsTargetsFor returns the TLS targets among the selected HTTP targets,
// in their order, with their TLS setups.
func tlsTargetsFor(httpTs []target) []target {
	var out []target
	for _, t := range httpTs {
		if setup, ok := tlsSetups[t.Name]; ok && slices.Contains(tlsTargetNames, t.Name) {
			out = append(out, target{Name: t.Name, Setup: setup})
		}
	}
	return out
}

// benchCert writes, once per run, a self-signed ECDSA P-256 certificate
// for "bench.test" into dir: cert.pem, key.pem and both in one file for
// HAProxy (tls.pem). It returns their paths.
var certMu sync.Mutex

func benchCert(dir string) (cert, key, both string, err error) {
	certMu.Lock()
	defer certMu.Unlock()
	cert, key, both = filepath.Join(dir, "tls-cert.pem"), filepath.Join(dir, "tls-key.pem"), filepath.Join(dir, "tls.pem")
	if _, err := os.Stat(both); err == nil {
		return cert, key, both, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench.test"},
		DNSNames:     []string{"bench.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", "", err
	}
	c := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kp := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	for name, data := range map[string][]byte{cert: c, key: kp, both: append(append([]byte(nil), c...), kp...)} {
		// nginx's workers may run unprivileged: they read the key.
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return "", "", "", err
		}
	}
	return cert, key, both, nil
}

// frontdoorTLS starts frontdoor with a TLS 1.3 listener (ALPN http/1.1)
// in front of the nginx backend; otherwise as frontdoorLaunch's http mode.
func frontdoorTLS(e *env, bin, name string, port int) (launch, error) {
	bin, err := frontdoorBin(bin)
	if err != nil {
		return launch{}, err
	}
	cert, key, _, err := benchCert(e.Dir)
	if err != nil {
		return launch{}, err
	}
	admin, err := e.Ports.get()
	if err != nil {
		return launch{}, err
	}
	cfg := frontdoorConfig(port, admin, e.BackendPort, "http")
	cfg = strings.Replace(cfg, "  [[listener.route]]\n", fmt.Sprintf(`  [listener.tls]
  certificates = [{ cert_file = %q, key_file = %q }]
  min_version = "1.3"
  alpn = ["http/1.1"]
  [[listener.route]]
`, cert, key), 1)
	p, err := writeFile(e.Dir, name+"-tls.toml", cfg)
	return launch{Argv: []string{bin, "-config", p}, Env: goEnv}, err
}

// haproxyTLS is HAProxy's http config with a TLS 1.3 bind, X25519 only.
func haproxyTLS(e *env, port int) (launch, error) {
	_, _, both, err := benchCert(e.Dir)
	if err != nil {
		return launch{}, err
	}
	cfg := haproxyConfig(port, e.BackendPort, "http", false)
	bind := "    bind " + addr(port) + "\n"
	cfg = strings.Replace(cfg, bind, "    bind "+addr(port)+" ssl crt "+both+" ssl-min-ver TLSv1.3 curves X25519 alpn http/1.1\n", 1)
	// HAProxy's default keeps 20,000 sessions in its cache; tickets are on.
	p, err := writeFile(e.Dir, "haproxy-tls.cfg", cfg)
	return launch{Argv: []string{"haproxy", "-db", "-f", p}}, err
}

// nginxTLS is nginx's proxy config with a TLS 1.3 listener, X25519 only,
// session tickets and a session cache.
func nginxTLS(e *env, port int) (launch, error) {
	cert, key, _, err := benchCert(e.Dir)
	if err != nil {
		return launch{}, err
	}
	cfg := nginxProxyConfig(e.Dir, port, e.BackendPort)
	listen := "        listen " + addr(port) + " backlog=4096;\n"
	cfg = strings.Replace(cfg, listen, fmt.Sprintf(`        listen %s ssl backlog=4096;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_session_cache shared:SSL:20m;
        ssl_session_tickets on;
`, addr(port), cert, key), 1)
	p, err := writeFile(e.Dir, "nginx-tls.conf", cfg)
	if err != nil {
		return launch{}, err
	}
	argv, err := nginxCmd(e.Dir, p, "proxy")
	return launch{Argv: argv}, err
}

// runHTTPLoad runs one HTTP workload's load: wrk, or tlsload for new TLS
// connections per request.
func runHTTPLoad(ctx context.Context, cpus, script, url string, w workload, d time.Duration) (loadResult, []byte, error) {
	if w.Handshake == "" {
		return runWrk(ctx, cpus, script, url, w.Conns, w.Close, d)
	}
	return runTLSLoad(ctx, cpus, url, w.Conns, w.Handshake == "resume", d)
}

// workloadURL is the URL a workload's load goes to on port.
func workloadURL(w workload, port int) string {
	if w.TLS {
		return "https://" + addr(port) + w.Path
	}
	return "http://" + addr(port) + w.Path
}

// runTLSLoad runs this program as `sidebyside tlsload` on cpus.
func runTLSLoad(ctx context.Context, cpus, url string, conns int, resume bool, d time.Duration) (loadResult, []byte, error) {
	self, err := os.Executable()
	if err != nil {
		return loadResult{}, nil, err
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-c", cpus, self, "tlsload", "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs) + "s", "-resume=" + strconv.FormatBool(resume), url}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, out, fmt.Errorf("tlsload: %w", err)
	}
	r, err := parseFDBench(out)
	r.CPU = childCPU(cmd)
	return r, out, err
}

// tlsLoadMain is `sidebyside tlsload [-c N] [-d D] [-resume] URL`: N
// connections in parallel, each a loop of: connect, TLS 1.3 handshake
// (X25519; with -resume, offering the last session ticket it got), one GET
// with Connection: close, read the answer, close. It prints wrk's FDBENCH
// line (see wrkScript), so the harness reads both the same way.
func tlsLoadMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tlsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conns := fs.Int("c", 64, "connections in parallel")
	d := fs.Duration("d", 10*time.Second, "duration")
	resume := fs.Bool("resume", false, "resume sessions with tickets (else: a full handshake every time)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: sidebyside tlsload [-c N] [-d D] [-resume] https://HOST:PORT/PATH")
		return 2
	}
	r, err := tlsLoad(context.Background(), fs.Arg(0), *conns, *resume, *d)
	if err != nil {
		fmt.Fprintln(stderr, "tlsload:", err)
		return 1
	}
	line, _ := json.Marshal(r)
	fmt.Fprintf(stdout, "FDBENCH %s\n", line)
	return 0
}

// tlsLoad runs the load of tlsLoadMain and sums it up as wrk would.
func tlsLoad(ctx context.Context, url string, conns int, resume bool, d time.Duration) (loadResult, error) {
	hostport, path, ok := strings.Cut(strings.TrimPrefix(url, "https://"), "/")
	if !strings.HasPrefix(url, "https://") || !ok {
		return loadResult{}, fmt.Errorf("URL %q is not https://HOST:PORT/PATH", url)
	}
	req := []byte("GET /" + path + " HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n")
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		requests atomic.Int64
		bytesIn  atomic.Int64
		connErrs atomic.Int64
		readErrs atomic.Int64
		status   atomic.Int64
	)
	start := time.Now()
	end := start.Add(d)
	// over: the run is over (its context's timer may fire late).
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			cfg := &tls.Config{
				InsecureSkipVerify: true, // a self-signed bench certificate
				ServerName:         "bench.test",
				MinVersion:         tls.VersionTLS13,
				CurvePreferences:   []tls.CurveID{tls.X25519},
				NextProtos:         []string{"http/1.1"},
			}
			if resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			}
			mine := make([]time.Duration, 0, 4096)
			dialer := &net.Dialer{Timeout: 5 * time.Second}
			buf := make([]byte, 16<<10)
			for !over() {
				t0 := time.Now()
				raw, err := dialer.DialContext(ctx, "tcp", hostport)
				if err != nil {
					if !over() {
						connErrs.Add(1)
					}
					continue
				}
				c := tls.Client(raw, cfg)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				n, ok, err := exchange(c, req, buf)
				_ = c.Close()
				switch {
				case err != nil && over():
					continue // cut short by the end of the run
				case err != nil:
					readErrs.Add(1)
					continue
				case !ok:
					status.Add(1)
				}
				requests.Add(1)
				bytesIn.Add(int64(n))
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds())
	}
	return loadResult{
		Requests: requests.Load(), DurationUS: elapsed.Microseconds(), Bytes: bytesIn.Load(),
		Connect: connErrs.Load(), Read: readErrs.Load(), Status: status.Load(),
		P50US: pct(0.50), P99US: pct(0.99),
	}, nil
}

// exchange sends req on c and reads the answer until the server closes:
// the bytes read, and whether the status was 2xx or 3xx.
func exchange(c *tls.Conn, req, buf []byte) (int, bool, error) {
	if _, err := c.Write(req); err != nil {
		return 0, false, err
	}
	br := bufio.NewReaderSize(c, 4096)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	n := len(line)
	ok := len(line) > 12 && (line[9] == '2' || line[9] == '3')
	length := -1
	for {
		// The head: Content-Length says where the body ends, so the
		// client closes as wrk does, without waiting for the server's.
		h, err := br.ReadSlice('\n')
		n += len(h)
		if err != nil {
			return n, false, err
		}
		if len(h) <= 2 {
			break
		}
		if k, v, found := strings.Cut(string(h), ":"); found && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length >= 0 {
		m, err := io.ReadFull(br, buf[:min(length, len(buf))])
		return n + m, ok, err
	}
	for { // no length: until the server closes
		m, err := br.Read(buf)
		n += m
		if errors.Is(err, io.EOF) {
			return n, ok, nil
		}
		if err != nil {
			return n, ok, err
		}
	}
}
