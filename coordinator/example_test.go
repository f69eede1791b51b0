package coordinator_test

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/fedguard/fedguard/coordinator"
)

func ExampleLoadConfig() {
	cfg, err := coordinator.LoadConfig(filepath.Join("testdata", "config", "valid.json"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Federation, cfg.Model.Kind, cfg.Model.Hidden, cfg.Enrolled)
	fmt.Println("round timeout:", time.Duration(cfg.RoundTimeout))
	fmt.Println("valid:", cfg.Validate() == nil)

	// A misspelt setting is an error, not a silently ignored field.
	_, err = coordinator.LoadConfig(filepath.Join("testdata", "config", "unknown_field.json"))
	fmt.Println(err)
	// Output:
	// wdbc-study mlp [16 8] [hospital-a hospital-b hospital-c]
	// round timeout: 2m30s
	// valid: true
	// parse coordinator config testdata/config/unknown_field.json: json: unknown field "min_participant"
}

func ExampleMemoryBudget() {
	cfg := coordinator.Config{
		Enrolled: []string{"hospital-a", "hospital-b", "hospital-c", "hospital-d"},
		Model: coordinator.ModelConfig{
			Kind:     "mlp",
			Features: make([]string, 1000),
			Classes:  []string{"B", "M"},
			Hidden:   []int{100_000},
		},
	}
	// 100000·1001 + 2·100001 = 100300002 parameters of 4 bytes. With the
	// updates in memory: one buffer per enrolled participant and two more
	// (6: the aggregate and the collector's headroom), less the 32 MiB the
	// process holds outside the Go heap.
	cfg.Spill.Mode = coordinator.SpillNever
	b, err := coordinator.MemoryBudget(cfg)
	fmt.Println(b, err)
	// By default updates this large spill to disk: three buffers (the
	// aggregate, one update read back whole, headroom), the 16 MiB column
	// block and the anomaly checks' blocks, whatever the number enrolled.
	cfg.Spill.Mode = ""
	b, err = coordinator.MemoryBudget(cfg)
	fmt.Println(b, err)
	// Output:
	// 2373645616 <nil>
	// 1187084952 <nil>
}
