// Command frontdoor is the frontdoor load balancer daemon.
//
//	frontdoor -config FILE           run
//	frontdoor -check -config FILE    validate FILE, print every error with its line, exit 0 or 1
//	frontdoor -version               print the version
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
//
// Under systemd (Type=notify) the daemon sends READY=1 once its listeners are
// bound, RELOADING=1 and READY=1 around each reload, STATUS= lines for
// systemctl status, STOPPING=1 when it starts to drain, and WATCHDOG=1 at
// half the unit's WatchdogSec while its controller (the goroutine that
// handles signals and runs reloads) is healthy (see watchdog.go).
// deploy/frontdoor.service is the unit.
package main
