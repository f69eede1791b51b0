package metricsserver_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedguard/fedguard/internal/metricsserver"
)

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	srv, err := metricsserver.Listen("127.0.0.1:0", metricsserver.Mux(reg, nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	base := "http://" + srv.Addr()
	tests := []struct {
		method, path string
		code         int
		body         string // substring
	}{
		{"GET", "/metrics", 200, "test_things_total 3\n"},
		{"GET", "/healthz", 200, "ok\n"},
		{"POST", "/metrics", 405, ""},
		{"GET", "/nope", 404, ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.body) {
			t.Errorf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, resp.StatusCode, b, tt.code, tt.body)
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the server still answers after Serve returned")
	}
}

func TestValidateAddr(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:0", true},
		{":9464", true},
		{"metrics.example.org:9464", true},
		{"[::1]:9464", true},
		{"127.0.0.1", false},
		{"127.0.0.1:", false},
		{"127.0.0.1:70000", false},
		{"under_score:9464", false},
		{"[::1:9464", false},
	}
	for _, tt := range tests {
		if err := metricsserver.ValidateAddr(tt.addr); (err == nil) != tt.ok {
			t.Errorf("ValidateAddr(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}
}
