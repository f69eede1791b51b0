package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	base := Info{Version: "unknown", GoVersion: "go1.26", Platform: "linux/amd64"}
	for _, tt := range []struct {
		name      string
		bi        debug.BuildInfo
		short     string
		longHas   []string
		longLacks []string
	}{
		{"checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0fc3308a1b2c3d4e5f60718293a4b5c6d7e8f901"}, {Key: "vcs.time", Value: "2026-12-05T18:00:00Z"}, {Key: "vcs.modified", Value: "false"}}},
			"(devel) 0fc3308a1b2c", []string{"fedguard (devel)", "commit   0fc3308a1b2c3d4e5f60718293a4b5c6d7e8f901\n", "date     2026-12-05T18:00:00Z", "go       go1.26 linux/amd64"}, []string{"modified"}},
		{"dirty", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			"(devel) abc+dirty", []string{"commit   abc (modified tree)"}, []string{"date"}},
		{"tagged", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3", []string{"fedguard v1.2.3", "not recorded"}, nil},
		{"empty", debug.BuildInfo{}, "unknown", []string{"fedguard unknown"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fromBuildInfo(&tt.bi, base)
			if s := got.Short(); s != tt.short {
				t.Errorf("Short() = %q, want %q", s, tt.short)
			}
			long := got.String()
			for _, w := range tt.longHas {
				if !strings.Contains(long, w) {
					t.Errorf("String() = %q, want it to hold %q", long, w)
				}
			}
			for _, w := range tt.longLacks {
				if strings.Contains(long, w) {
					t.Errorf("String() = %q, want it without %q", long, w)
				}
			}
		})
	}
}

func TestRead(t *testing.T) {
	// A test binary has build info with the module's version "(devel)"
	// and no VCS stamp: Read must say so, not invent one.
	i := Read()
	if i.Version == "" || i.GoVersion == "" || i.Platform == "" {
		t.Errorf("Read() = %+v, want version, Go version and platform", i)
	}
}
