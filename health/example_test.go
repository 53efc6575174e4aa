package health_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"frontdoor/config"
	"frontdoor/health"
)

// backend stands in for balancer.Backend.
type backend struct {
	name    string
	healthy chan bool
}

func (b *backend) SetEjected(ejected bool) { fmt.Printf("%s ejected: %v\n", b.name, ejected) }
func (b *backend) SetHealthy(healthy bool) { b.healthy <- healthy }

// Three failures in a row eject a backend, but never more than half of the
// pool: the third failing backend stays in. The active check's report of a
// recovery ends an ejection at once.
func ExampleEjector() {
	var targets []health.Ejectable
	var addrs []string
	for _, name := range []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"} {
		targets = append(targets, &backend{name: name})
		addrs = append(addrs, name)
	}
	e := health.NewEjector(health.EjectorOptions{
		Pool: "api",
		Config: config.Passive{
			ConsecutiveFailures: 3,
			BaseEjection:        config.Duration{Duration: 30 * time.Second},
			MaxEjectionTime:     config.Duration{Duration: 300 * time.Second},
			MaxEjectionPercent:  50,
			UnejectOnActivePass: true,
		},
		Targets:   targets,
		Addresses: addrs,
		OnEject:   func(i int) { fmt.Println("passive_ejections_total +1 for", addrs[i]) },
	})

	e.Failure(0)
	e.Failure(0)
	e.Success(0) // a good response resets the count
	e.Failure(0)
	e.Failure(0)
	fmt.Println("after 2+2 failures:", e.Ejected(0))
	for _, i := range []int{0, 1, 2} {
		for range 3 {
			e.Failure(i)
		}
	}
	fmt.Println("10.0.0.3:80 ejected:", e.Ejected(2))
	_, ejected := e.EjectedUntil(1)
	fmt.Println("10.0.0.2:80 ejected until some time:", ejected)
	ended, _ := e.Recovered(1) // its active check went down, then up
	fmt.Println("recovery ended the ejection:", ended)
	// Output:
	// after 2+2 failures: false
	// 10.0.0.1:80 ejected: true
	// passive_ejections_total +1 for 10.0.0.1:80
	// 10.0.0.2:80 ejected: true
	// passive_ejections_total +1 for 10.0.0.2:80
	// 10.0.0.3:80 ejected: false
	// 10.0.0.2:80 ejected until some time: true
	// 10.0.0.2:80 ejected: false
	// recovery ended the ejection: true
}

// An HTTP check brings a new backend up on its first passing probe.
func ExampleChecker() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	b := &backend{name: "api-1", healthy: make(chan bool, 1)}
	c, err := health.NewChecker(health.CheckerOptions{
		Pool: "api",
		Check: config.HealthCheck{
			Check:        "http",
			Path:         "/healthz",
			ExpectStatus: config.StatusRange{Low: 200, High: 399},
			Interval:     config.Duration{Duration: time.Second},
			Timeout:      config.Duration{Duration: 500 * time.Millisecond},
			Rise:         2,
			Fall:         3,
		},
		Targets: []health.Target{{Address: ln.Addr().String(), Backend: b}},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)

	fmt.Println("healthy:", <-b.healthy)
	st := c.Status()[0]
	fmt.Println("first round done:", c.FirstRoundDone(), "last result:", st.LastResult)
	// Output:
	// healthy: true
	// first round done: true last result: success
}
