package simulation

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fedguard/fedguard/internal/strictjson"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  Shard
		cells []int // of 7
	}{
		{"1/1", Shard{1, 1}, []int{0, 1, 2, 3, 4, 5, 6}},
		{"1/4", Shard{1, 4}, []int{0, 4}},
		{"4/4", Shard{4, 4}, []int{3}},
		{" 2 / 3 ", Shard{2, 3}, []int{1, 4}},
		{"8/8", Shard{8, 8}, nil},
	} {
		got, err := ParseShard(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseShard(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
		if c := got.Cells(7); !slices.Equal(c, tc.cells) {
			t.Errorf("%v.Cells(7) = %v, want %v", got, c, tc.cells)
		}
	}
	for _, bad := range []string{"", "1", "0/4", "5/4", "1/0", "-1/2", "a/b", "1/2/3"} {
		if _, err := ParseShard(bad); !errors.Is(err, ErrOptions) {
			t.Errorf("ParseShard(%q) = %v, want ErrOptions", bad, err)
		}
	}
}

// TestReadGridFileRefusesTrailingData: a grid.json with a second object
// after the first (two shards' files concatenated, say) is refused, not
// read as its first half. Before the shared strict decoder it was accepted.
func TestReadGridFileRefusesTrailingData(t *testing.T) {
	one := `{"version":1,"base":{"dataset":"wdbc"},"attacks":[{"name":"none"}],"rules":[{"rule":"fedavg"}],"shard":{"k":1,"n":1},"cells":[0]}`
	if _, err := ReadGridFile(strings.NewReader(one + "\n")); err != nil {
		t.Fatalf("ReadGridFile(one object) = %v", err)
	}
	if _, err := ReadGridFile(strings.NewReader(one + one)); !errors.Is(err, strictjson.ErrTrailing) {
		t.Fatalf("ReadGridFile(two objects) = %v, want strictjson.ErrTrailing", err)
	}
}

func FuzzReadGridFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"base":{"dataset":"wdbc"},"attacks":[{"name":"none"}],"rules":[{"rule":"fedavg"}],"shard":{"k":1,"n":1},"cells":[0],"results":[{"options":{"attack":{"name":"none"},"aggregation":{"rule":"fedavg"}},"final_accuracy":0.5}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ReadGridFile(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Whatever decodes, merging it alone either fails cleanly or
		// gives one result per cell.
		res, err := MergeGrid([]GridFile{g})
		if err == nil && len(res) != len(g.Attacks)*len(g.Rules) {
			t.Fatalf("MergeGrid gave %d results for %d cells", len(res), len(g.Attacks)*len(g.Rules))
		}
	})
}
