// Package buildinfo says which fedguard a binary is: the module version and
// the commit it was built from, as the Go toolchain records them. An
// auditor reading a coordinator_started event, an operator reading a
// hospital's Join, and a hospital checking a release against its signed
// checksums all need the same answer, so it is read in one place.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what the toolchain recorded about a build.
type Info struct {
	// Version is the main module's version: a tag for `go install
	// module@version`, "(devel)" for a build in a checkout.
	Version string `json:"version"`
	// Revision, Time and Modified are the VCS stamp of a build in a
	// checkout (go build -buildvcs, the default): the commit, its time,
	// and whether the tree had uncommitted changes. Empty without one
	// (go test, or -buildvcs=false).
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// GoVersion and Platform are the toolchain and GOOS/GOARCH.
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Read returns the running binary's Info.
func Read() Info {
	info := Info{Version: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	return fromBuildInfo(bi, info)
}

// fromBuildInfo fills info from bi.
func fromBuildInfo(bi *debug.BuildInfo, info Info) Info {
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// Short is the version and, when known, the first 12 hex digits of the
// revision, with "+dirty" for a modified tree: "(devel) 0fc3308a1b2c+dirty".
// It is what the coordinator records and the agent reports.
func (i Info) Short() string {
	s := i.Version
	if i.Revision != "" {
		s += " " + i.Revision[:min(12, len(i.Revision))]
		if i.Modified {
			s += "+dirty"
		}
	}
	return s
}

// String is the long form `fedguard version` prints.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fedguard %s\n", i.Version)
	if i.Revision != "" {
		fmt.Fprintf(&b, "commit   %s", i.Revision)
		if i.Modified {
			b.WriteString(" (modified tree)")
		}
		b.WriteString("\n")
		if i.Time != "" {
			fmt.Fprintf(&b, "date     %s\n", i.Time)
		}
	} else {
		b.WriteString("commit   not recorded (built without VCS stamping, e.g. by go test)\n")
	}
	fmt.Fprintf(&b, "go       %s %s\n", i.GoVersion, i.Platform)
	return b.String()
}
