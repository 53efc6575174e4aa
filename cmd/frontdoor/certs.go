package main

import (
	"fmt"
	"log/slog"
	"time"

	"frontdoor/config"
)

// certExpiry lists the certificates of cfg that expired (expired) or
// expire within config.CertExpiryWarning (soon), one line each:
// "FILE: KEY: certificate CERT (SUBJECT) expired at TIME".
func certExpiry(cfg *config.Config, now time.Time) (expired, soon []string) {
	for _, n := range config.Certificates(cfg) {
		left := n.NotAfter.Sub(now)
		switch {
		case left <= 0:
			expired = append(expired, fmt.Sprintf("%s: %s: certificate %s (%s) expired at %s; renew it",
				cfg.Path, n.Key, n.File, n.Subject, n.NotAfter.UTC().Format(time.RFC3339)))
		case left < config.CertExpiryWarning:
			in := fmt.Sprintf("%d days", int(left.Hours()/24))
			if left < 48*time.Hour {
				in = fmt.Sprintf("%d hours", int(left.Hours()))
			}
			soon = append(soon, fmt.Sprintf("%s: %s: certificate %s (%s) expires at %s, in %s",
				cfg.Path, n.Key, n.File, n.Subject, n.NotAfter.UTC().Format(time.RFC3339), in))
		}
	}
	return expired, soon
}

// logCertExpiry warns about certificates that expired or expire soon. The
// daemon serves them anyway (a reload of anything else must not fail on
// them); -check refuses expired ones.
func logCertExpiry(logger *slog.Logger, cfg *config.Config) {
	expired, soon := certExpiry(cfg, time.Now())
	for _, msg := range expired {
		logger.Warn("certificate expired", "detail", msg)
	}
	for _, msg := range soon {
		logger.Warn("certificate expires soon", "detail", msg)
	}
}
