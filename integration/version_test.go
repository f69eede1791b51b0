package integration

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestVersion: the binary says which commit it was built from, so an
// operator can match it with a release and with the coordinator_started
// events of an audit log. TestMain builds it with go build in this
// checkout, which stamps the revision.
func TestVersion(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout (git rev-parse HEAD: %v): no revision to compare with", err)
	}
	var got struct {
		Version   string `json:"version"`
		Revision  string `json:"revision"`
		GoVersion string `json:"go_version"`
		Platform  string `json:"platform"`
	}
	out := mustFedguard(t, "version", "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("version --json printed %q: %v", out, err)
	}
	if want := strings.TrimSpace(string(head)); got.Revision != want {
		t.Errorf("version --json revision %q, want the checkout's HEAD %s", got.Revision, want)
	}
	if got.Version == "" || got.GoVersion == "" || got.Platform == "" {
		t.Errorf("version --json = %+v, want version, go_version and platform", got)
	}
	if text := mustFedguard(t, "version"); !strings.Contains(text, "commit   "+got.Revision) {
		t.Errorf("version printed %q, want the commit %s", text, got.Revision)
	}
}
