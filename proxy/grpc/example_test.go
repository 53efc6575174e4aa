package grpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	grpclib "google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"frontdoor/balancer"
	"frontdoor/proxy/grpc"
)

// prefixRouter is a Router over a fixed table: the route whose prefix is
// the longest match of the method path wins. The proxy runtime does the
// same over its live snapshot (host first, then path prefix).
type prefixRouter struct {
	prefixes []string // longest first
	routes   []*grpc.Route
}

func (r *prefixRouter) RouteGRPC(_, path string) (*grpc.Route, bool) {
	for i, p := range r.prefixes {
		if strings.HasPrefix(path, p) {
			return r.routes[i], true
		}
	}
	return nil, false
}

func ExampleRouter() {
	pool := func(addrs ...string) *balancer.Pool {
		var members []balancer.Member
		for _, a := range addrs {
			members = append(members, balancer.Member{Backend: balancer.NewBackend(a), Weight: 1})
		}
		p, err := balancer.NewPool(members, balancer.Options{})
		if err != nil {
			panic(err)
		}
		return p
	}
	router := &prefixRouter{
		prefixes: []string{"/shop.Cart/", "/shop."},
		routes: []*grpc.Route{
			{Listener: "public", PoolName: "cart", Pool: pool("127.0.0.1:9101"), Retries: 1},
			{Listener: "public", PoolName: "shop", Pool: pool("127.0.0.1:9201", "127.0.0.1:9202"), ResponseTimeout: 5 * time.Second},
		},
	}
	for _, path := range []string{"/shop.Cart/Add", "/shop.Catalog/List", "/billing.Invoice/Get"} {
		if rt, ok := router.RouteGRPC("api.example.com", path); ok {
			fmt.Printf("%s -> pool %s (%d backends)\n", path, rt.PoolName, len(rt.Pool.Members()))
		} else {
			fmt.Printf("%s -> no route (UNIMPLEMENTED)\n", path)
		}
	}
	// Output:
	// /shop.Cart/Add -> pool cart (1 backends)
	// /shop.Catalog/List -> pool shop (2 backends)
	// /billing.Invoice/Get -> no route (UNIMPLEMENTED)
}

// ExampleNewServer puts a Server in front of a grpc-go backend and calls it
// through frontdoor with a grpc-go client, all on 127.0.0.1.
func ExampleNewServer() {
	// A backend: grpc.health.v1 on a grpc-go server.
	bln, _ := net.Listen("tcp", "127.0.0.1:0")
	backendSrv := grpclib.NewServer()
	healthpb.RegisterHealthServer(backendSrv, health.NewServer())
	go func() { _ = backendSrv.Serve(bln) }()
	defer backendSrv.Stop()

	backend := balancer.NewBackend(bln.Addr().String())
	backend.SetHealthy(true) // health checks do this in frontdoor
	pool, _ := balancer.NewPool([]balancer.Member{{Backend: backend, Weight: 1}}, balancer.Options{})

	// frontdoor: every connection the listener accepts goes to ServeConn
	// (the proxy's http listener does this for connections that start
	// with the HTTP/2 preface).
	srv := grpc.NewServer(grpc.Options{Router: &prefixRouter{
		prefixes: []string{"/grpc.health.v1."},
		routes:   []*grpc.Route{{Listener: "public", PoolName: "health", Pool: pool}},
	}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c)
		}
	}()
	defer func() {
		_ = ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	cc, _ := grpclib.NewClient(ln.Addr().String(), grpclib.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println("check:", resp.GetStatus(), err)

	err = cc.Invoke(ctx, "/other.Service/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	st := status.Convert(err)
	fmt.Println("unrouted:", st.Code(), st.Message())

	backend.SetHealthy(false)
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	st = status.Convert(err)
	fmt.Println("backend down:", st.Code(), st.Message())
	// Output:
	// check: SERVING <nil>
	// unrouted: Unimplemented frontdoor: no route
	// backend down: Unavailable frontdoor: no healthy backend
}
