// Command frontdoor is the frontdoor load balancer daemon.
//
//	frontdoor -config FILE           run
//	frontdoor -check -config FILE    validate FILE, print every error with its line, exit 0 or 1
//	frontdoor -version               print the version
//	frontdoor ctl ...                drive the admin write endpoints (ctl.go)
//	frontdoor tail [filters]         follow the access log live (tail.go)
//
// Signals:
//
//   - SIGHUP reloads the config file. A file that fails to load or apply
//     changes nothing: the previous config keeps serving, and the failure
//     shows in the log, in /status and in the config_* metrics. SIGHUPs that
//     arrive while a reload runs are merged into one more reload, which reads
//     the file as it is then: a reload is never lost, a burst costs two.
//   - SIGTERM and SIGINT stop accepting, let requests in flight finish for up
//     to global.drain_timeout, and exit 0. A second SIGTERM or SIGINT during
//     the drain closes what is still open at once.
//   - SIGUSR1 reopens the access log file (after logrotate moved it).
//   - SIGUSR2 upgrades the binary: the daemon starts the binary at its own
//     path with its arguments and every listening socket inherited by name
//     (upgrade.go, inherit.go), waits up to 30 s for it to report ready, then
//     drains and exits 0. A new process that fails, exits or is late is
//     killed, and the old one serves on and logs why.
//
// Under systemd (Type=notify) the daemon sends READY=1 once its listeners are
// bound, RELOADING=1 and READY=1 around each reload, STATUS= lines for
// systemctl status, STOPPING=1 when it starts to drain, and WATCHDOG=1 at
// half the unit's WatchdogSec while its controller (the goroutine that
// handles signals and runs reloads) is healthy (see watchdog.go).
// It also keeps every listening socket in systemd's file descriptor store
// (FDSTORE=1, FDNAME=) and takes them back by name from LISTEN_FDS on start,
// so that a restart or a crash refuses no connection (fdstore.go).
// deploy/frontdoor.service is the unit.
package main
