// Package metricnames checks the fedguard_ metric names that the files in
// deploy/ (Grafana dashboards, Prometheus rules) use against a real
// registry, so that a renamed metric cannot leave a panel or an alert
// silently empty. The coordinator's and the participant's deploy tests
// share it.
package metricnames

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Ref matches a fedguard metric name in a dashboard, a rule file or a query.
var Ref = regexp.MustCompile(`\bfedguard_[a-z0-9_]*[a-z0-9]`)

// Exported maps each fedguard_ metric family of a registry to its type
// (COUNTER, GAUGE, HISTOGRAM, …).
type Exported map[string]string

// Gather lists the fedguard_ families that g exports.
func Gather(g prometheus.Gatherer) (Exported, error) {
	families, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("metricnames: gather: %w", err)
	}
	e := Exported{}
	for _, mf := range families {
		if strings.HasPrefix(mf.GetName(), "fedguard_") {
			e[mf.GetName()] = mf.GetType().String()
		}
	}
	return e, nil
}

// Resolve maps a series name a query uses to the family that exports it:
// the name itself, or a histogram's or summary's _bucket, _sum or _count
// series.
func (e Exported) Resolve(ref string) (string, bool) {
	if _, ok := e[ref]; ok {
		return ref, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(ref, suffix)
		if !ok {
			continue
		}
		if typ, ok := e[base]; ok && (typ == "HISTOGRAM" || typ == "SUMMARY") {
			return base, true
		}
	}
	return "", false
}
