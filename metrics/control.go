package metrics

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Sentinel errors a BackendController wraps, so that the admin server can
// answer with the right status. Their text and the context the controller
// adds are shown to the (authenticated) operator.
var (
	// ErrUnknownBackend: no such pool, or no such backend in it (404).
	ErrUnknownBackend = errors.New("metrics: unknown backend")
	// ErrBadCommand: the command's value is out of range (400).
	ErrBadCommand = errors.New("metrics: bad command")
)

// MinTokenBytes is the shortest admin token ReadTokenFile accepts.
const MinTokenBytes = 16

// Backend commands, the Op of a BackendCommand and the last element of the
// write endpoints' paths.
const (
	OpState   = "state"
	OpWeight  = "weight"
	OpUneject = "uneject"
)

// BackendCommand is one admin write to a backend.
type BackendCommand struct {
	// Op is OpState, OpWeight or OpUneject.
	Op string
	// State is "drain", "maint" or "ready" (OpState only).
	State string
	// Weight is the new weight, at least 0 (OpWeight only); the
	// controller rejects values above its maximum with ErrBadCommand.
	Weight int
}

// BackendController carries out the admin write endpoints; proxy.Proxy
// implements it. ControlBackend applies c to the backend address of pool
// and returns what the endpoint encodes as JSON (the change made), or an
// error wrapping ErrUnknownBackend or ErrBadCommand; any other error is
// answered 500 and logged. It must be safe for concurrent use.
type BackendController interface {
	ControlBackend(pool, address string, c BackendCommand) (any, error)
}

// ReadTokenFile reads an admin bearer token from path: the file's bytes
// with one trailing newline removed. It fails when the file cannot be read
// or the token is shorter than MinTokenBytes.
func ReadTokenFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin token: %w", err)
	}
	tok := bytes.TrimSuffix(data, []byte("\n"))
	if len(tok) < MinTokenBytes {
		return nil, fmt.Errorf("admin token in %s is shorter than %d bytes", path, MinTokenBytes)
	}
	return tok, nil
}

// maxCommandBody bounds the body of a write request ("drain", a weight).
const maxCommandBody = 64

// control serves POST /backends/{pool}/{address}/{op}.
type control struct {
	ctl   BackendController
	token func() []byte
	log   *slog.Logger
}

func (c *control) handle(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var tok []byte
		if c.token != nil {
			tok = c.token()
		}
		if c.ctl == nil || len(tok) == 0 {
			http.Error(w, "admin write endpoints are off: set [admin] token_file to a file holding a bearer token, then reload", http.StatusForbidden)
			return
		}
		if !authorized(r, tok) {
			c.log.Warn("admin write refused: missing or wrong bearer token", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="frontdoor admin"`)
			http.Error(w, "missing or wrong bearer token (Authorization: Bearer TOKEN, the content of admin.token_file)", http.StatusUnauthorized)
			return
		}
		body, err := readCommand(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cmd := BackendCommand{Op: op}
		switch op {
		case OpState:
			switch body {
			case "drain", "maint", "ready":
				cmd.State = body
			default:
				http.Error(w, fmt.Sprintf("state %q: want drain, maint or ready", body), http.StatusBadRequest)
				return
			}
		case OpWeight:
			n, err := strconv.Atoi(body)
			if err != nil || n < 0 {
				http.Error(w, fmt.Sprintf("weight %q: want an integer of 0 or more", body), http.StatusBadRequest)
				return
			}
			cmd.Weight = n
		}
		pool, addr := r.PathValue("pool"), r.PathValue("address")
		res, err := c.ctl.ControlBackend(pool, addr, cmd)
		switch {
		case errors.Is(err, ErrUnknownBackend):
			// The controller's text names the pool and address; it is
			// written for the operator, who is authenticated.
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case errors.Is(err, ErrBadCommand):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			c.log.Error("admin write failed", "pool", pool, "backend", addr, "op", op, "err", err)
			http.Error(w, "the change failed; the process log says why", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
}

// authorized compares the request's bearer token with tok in constant time
// (over SHA-256 digests, so that not even the length leaks).
func authorized(r *http.Request, tok []byte) bool {
	h := r.Header.Get("Authorization")
	given, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		given = ""
	}
	a, b := sha256.Sum256([]byte(given)), sha256.Sum256(tok)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && ok
}

// readCommand reads a write request's body, at most maxCommandBody bytes,
// without surrounding white space.
func readCommand(w http.ResponseWriter, r *http.Request) (string, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxCommandBody)); err != nil {
		return "", fmt.Errorf("read request body (at most %d bytes): %w", maxCommandBody, err)
	}
	return strings.TrimSpace(buf.String()), nil
}
