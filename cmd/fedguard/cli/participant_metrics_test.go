package cli

import (
	"strings"
	"testing"
)

func TestParticipantRunMetricsListen(t *testing.T) {
	dir := t.TempDir()
	file := map[string]any{
		"coordinator": "coord.example:7443", "federation": "clinic-net", "ca": "ca.crt", "cert": "h.crt",
		"key": "h.key", "coordinator_key": "signing.pub", "data": "data.csv", "metrics_listen": "127.0.0.1:9465",
	}
	cfgPath := writeJSON(t, dir, "participant.json", file)
	tests := []struct {
		name      string
		args      []string
		want      string
		wantErr   string
		wantUsage bool
	}{
		{name: "from the file", args: []string{"--config", cfgPath}, want: "127.0.0.1:9465"},
		{name: "flag overrides the file", args: []string{"--config", cfgPath, "--metrics-listen", ":9500"}, want: ":9500"},
		{name: "empty flag turns it off", args: []string{"--config", cfgPath, "--metrics-listen="}, want: ""},
		{name: "off by default", args: []string{"--coordinator", "c:1", "--federation", "f", "--ca", "ca.crt", "--cert", "h.crt",
			"--key", "h.key", "--coordinator-key", "s.pub", "--data", "d.csv"}, want: ""},
		{name: "bad flag", args: []string{"--config", cfgPath, "--metrics-listen", "9465"},
			wantErr: "participant run: -metrics-listen", wantUsage: true},
		{name: "bad file value", args: []string{"--config", writeJSON(t, dir, "bad.json",
			strings.Replace(mustJSON(t, file), "127.0.0.1:9465", "127.0.0.1:http-nope", 1))},
			wantErr: "bad.json: metrics_listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := parseRunCase(t, tt.args, tt.wantErr, tt.wantUsage)
			if !ok {
				return
			}
			if r.cfg.MetricsListen != tt.want {
				t.Errorf("parseParticipantRun(%q): MetricsListen = %q, want %q", tt.args, r.cfg.MetricsListen, tt.want)
			}
		})
	}
}
