package jwt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"time"
)

// Run keeps a jwks_url key set fresh: it fetches every jwks_refresh, sooner
// (at most once per 10s) when a token names an unknown kid, and retries a
// failed fetch with backoff from 1s up to jwks_refresh. A failed fetch keeps
// the last good key set. Run returns when ctx ends, or at once for policies
// without jwks_url. Call it at most once per Policy, in its own goroutine;
// cancel ctx when the policy is replaced.
func (p *Policy) Run(ctx context.Context) {
	if p.url == "" {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("jwt: jwks refresh loop panicked", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	const minBackoff = time.Second
	backoff := minBackoff
	wait := p.refresh
	if len(p.keys.Load().keys) == 0 {
		wait = min(backoff, p.refresh)
	}
	due := p.now().Add(wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			// An unknown kid: fetch now if the last fetch is old enough,
			// else make sure a fetch happens when it will be.
			now := p.now()
			if early := p.lastFetch.Add(p.kidRefreshEvery); now.Before(early) {
				if early.Before(due) {
					due = early
					t.Reset(early.Sub(now))
				}
				continue
			}
		case <-t.C:
		}
		if err := p.fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("jwt: jwks_url fetch failed; keeping the last good key set",
				"url", p.url, "keys", len(p.keys.Load().keys), "retry_in", min(backoff, p.refresh), "err", err)
			wait = min(backoff, p.refresh)
			backoff = min(backoff*2, p.refresh)
		} else {
			backoff = minBackoff
			wait = p.refresh
		}
		due = p.now().Add(wait)
		t.Reset(wait)
	}
}

// fetch downloads and parses the JWK Set at p.url and publishes it. Broken or
// unusable keys are skipped (and logged when the set changes); a document
// with no usable key is an error. On error the current set is kept.
func (p *Policy) fetch(ctx context.Context) error {
	p.lastFetch = p.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("fetch jwks %s: %w", p.url, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("fetch jwks %s: status %d", p.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("read jwks %s: %w", p.url, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("read jwks %s: larger than %d bytes", p.url, maxJWKSBytes)
	}
	keys, issues, err := parseJWKS(body, p.algs)
	if err != nil {
		return fmt.Errorf("jwks %s: %w", p.url, err)
	}
	if len(keys) == 0 {
		return errors.Join(fmt.Errorf("jwks %s: no usable key", p.url), issuesErr(issues))
	}
	ks, err := newKeySet(keys)
	if err != nil {
		return fmt.Errorf("jwks %s: %w", p.url, err)
	}
	if old := p.keys.Load(); old != nil && old.fp == ks.fp {
		return nil // unchanged: keep the old set, and with it the cache
	}
	p.keys.Store(ks)
	p.logIssues(issues)
	p.log.Info("jwt: jwks key set loaded", "url", p.url, "keys", len(keys))
	return nil
}

func issuesErr(issues []keyIssue) error {
	var errs []error
	for _, is := range issues {
		errs = append(errs, fmt.Errorf("key %s: %w", is.kid, is.err))
	}
	return errors.Join(errs...)
}
