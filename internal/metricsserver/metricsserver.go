// Package metricsserver serves a Prometheus registry over plain HTTP, on a
// listener of its own: GET /metrics (the text exposition format) and
// GET /healthz (liveness, "ok"). It fixes the timeouts and limits that
// fedguard's metrics listeners share, so that a slow or hostile scraper
// cannot hold connections or memory.
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ShutdownGrace bounds a server's graceful stop once its context ends;
// connections still open after it are closed.
const ShutdownGrace = 2 * time.Second

// Mux returns a mux serving reg at GET /metrics and a liveness check at
// GET /healthz. errorLog receives promhttp's errors (gathering or
// encoding failures); nil discards them. Callers may add their own pages.
func Mux(reg *prometheus.Registry, errorLog promhttp.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog,
		Registry:            reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Server is an HTTP server bound to its address. Create it with [Listen];
// Serve it once.
type Server struct {
	srv *http.Server
	lis net.Listener
}

// Listen binds addr (host:port; port 0 picks a free one) and returns a
// server of h with fedguard's timeouts, ready to Serve.
func Listen(addr string, h http.Handler) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	return &Server{lis: lis, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}}, nil
}

// Addr returns the address the server is bound to.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until ctx ends, then shuts the server down gracefully
// (within [ShutdownGrace]) and returns nil; it returns the error of a
// server that failed on its own. The listener is closed when Serve
// returns.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.lis) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
		if serr := s.srv.Shutdown(sctx); serr != nil {
			_ = s.srv.Close()
		}
		cancel()
		err = <-errc
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("metrics: serve: %w", err)
}

// ValidateAddr checks a host:port for a metrics listener without a DNS
// lookup: the port must be a TCP port number or service name, the
// host empty (all interfaces), an IP address or a host name.
func ValidateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("%q: port %q is not a TCP port", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("%q: host %q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

// validHostname accepts letters, digits, '-' and '.' (no lookup).
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
