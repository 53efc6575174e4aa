package health

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStateRiseFall drives the rise/fall rule with scripted results: "+" is
// a passing check, "-" a failing one; the expected string marks after each
// result whether the verdict changed ("U" up, "D" down, "." none).
func TestStateRiseFall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		start      bool // Target.Healthy
		everUp     bool
		rise, fall int
		results    string
		want       string
	}{
		{name: "fresh target up on first success", rise: 3, fall: 2, results: "+", want: "U"},
		{name: "fresh target stays down while failing", rise: 2, fall: 2, results: "---", want: "..."},
		{name: "fresh target up on first success after failures", rise: 3, fall: 2, results: "--+", want: "..U"},
		{name: "down after fall failures", rise: 2, fall: 3, results: "+---", want: "U..D"},
		{name: "failure run broken by success", rise: 2, fall: 3, results: "+--+---", want: "U.....D"},
		{name: "back up after rise successes", rise: 2, fall: 3, results: "+---++", want: "U..D.U"},
		{name: "success run broken by failure", rise: 3, fall: 1, results: "+-++-+++", want: "UD.....U"},
		{name: "rise 1 fall 1", rise: 1, fall: 1, results: "+-+-", want: "UDUD"},
		{name: "started healthy goes down after fall", start: true, rise: 2, fall: 2, results: "+--", want: "..D"},
		{name: "started healthy then rise applies", start: true, rise: 2, fall: 1, results: "-+-++", want: "D...U"},
		{name: "kept down across reload needs rise", everUp: true, rise: 3, fall: 1, results: "+++", want: "..U"},
	}
	fail := errors.New("probe failed")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := state{healthy: tc.start, everUp: tc.start || tc.everUp}
			now := time.Unix(1000, 0)
			var got strings.Builder
			for i, r := range tc.results {
				var err error
				if r == '-' {
					err = fail
				}
				now = now.Add(time.Second)
				changed := s.record(err, now, tc.rise, tc.fall)
				switch {
				case !changed:
					got.WriteByte('.')
				case s.healthy:
					got.WriteByte('U')
				default:
					got.WriteByte('D')
				}
				if changed && !s.lastChange.Equal(now) {
					t.Errorf("result %d: lastChange %v, want %v", i, s.lastChange, now)
				}
				if !s.lastCheck.Equal(now) || s.lastOK != (err == nil) || !errors.Is(s.lastErr, err) {
					t.Errorf("result %d: last check not recorded: %+v", i, s)
				}
			}
			if got.String() != tc.want {
				t.Errorf("results %s: transitions %s, want %s", tc.results, got.String(), tc.want)
			}
		})
	}
}

func TestStateInherit(t *testing.T) {
	t.Parallel()
	at := time.Unix(2000, 0)
	prev := state{healthy: true, everUp: true, fails: 2, checked: true, lastCheck: at, lastChange: at}
	tests := []struct {
		name      string
		healthy   bool
		wantFails int
	}{
		{name: "agreeing verdict keeps counters", healthy: true, wantFails: 2},
		{name: "disagreeing verdict drops counters", healthy: false, wantFails: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s state
			s.inherit(prev, tc.healthy)
			if s.healthy != tc.healthy || s.fails != tc.wantFails || !s.everUp || !s.lastCheck.Equal(at) {
				t.Errorf("inherit: got %+v", s)
			}
		})
	}
}
