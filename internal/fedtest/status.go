package fedtest

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/fedguard/fedguard/coordinator"
)

// Status fetches /status.json from a coordinator's metrics listener at
// addr (host:port), failing the test when it cannot be fetched or decoded.
func Status(t testing.TB, addr string) coordinator.Status {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/status.json")
	if err != nil {
		t.Fatalf("GET /status.json: %v", err)
	}
	defer resp.Body.Close()
	var s coordinator.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("GET /status.json: %v", err)
	}
	return s
}
