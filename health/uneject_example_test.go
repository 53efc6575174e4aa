package health_test

import (
	"fmt"
	"time"

	"frontdoor/config"
	"frontdoor/health"
)

// An operator clears an ejection without waiting for its time or for the
// active check (frontdoor ctl uneject).
func ExampleEjector_Uneject() {
	e := health.NewEjector(health.EjectorOptions{
		Pool: "api",
		Config: config.Passive{
			ConsecutiveFailures: 1, MaxEjectionPercent: 100,
			BaseEjection: config.Duration{Duration: time.Minute},
		},
		Targets:   []health.Ejectable{&backend{name: "10.0.0.1:80"}},
		Addresses: []string{"10.0.0.1:80"},
	})
	e.Failure(0)
	fmt.Println(e.Uneject(0))
	fmt.Println(e.Uneject(0))
	// Output:
	// 10.0.0.1:80 ejected: true
	// 10.0.0.1:80 ejected: false
	// true
	// false
}
