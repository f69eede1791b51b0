package simulation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/internal/strictjson"
)

// Shard is share K (from 1) of N of a grid's cells: `fedguard simulate
// grid --shard K/N`. Cell i (attack-major, i = a·len(rules) + r) belongs to
// shard i mod N + 1, so the shares differ by at most one cell and mix
// cheap and costly rules.
type Shard struct {
	K int `json:"k"`
	N int `json:"n"`
}

// ParseShard reads "K/N" with 1 ≤ K ≤ N. Errors wrap ErrOptions.
func ParseShard(s string) (Shard, error) {
	k, n, ok := strings.Cut(s, "/")
	var sh Shard
	var err1, err2 error
	sh.K, err1 = strconv.Atoi(strings.TrimSpace(k))
	sh.N, err2 = strconv.Atoi(strings.TrimSpace(n))
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("%w: shard %q, want K/N such as 2/4", ErrOptions, s)
	}
	return sh, sh.validate()
}

func (s Shard) validate() error {
	if s.N < 1 || s.K < 1 || s.K > s.N {
		return fmt.Errorf("%w: shard %d/%d, want 1 ≤ K ≤ N", ErrOptions, s.K, s.N)
	}
	return nil
}

// String is "K/N".
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.K, s.N) }

// Cells returns the indices, ascending, of the cells of a grid of total
// cells that belong to s.
func (s Shard) Cells(total int) []int {
	var cells []int
	for i := s.K - 1; i < total; i += s.N {
		cells = append(cells, i)
	}
	return cells
}

// GridFileVersion is the version of the grid.json format.
const GridFileVersion = 1

// GridFile is what a grid run, whole or one shard, writes to grid.json,
// and what MergeGrid joins: the grid's definition, the shard, and the
// results of the shard's cells with their indices.
type GridFile struct {
	Version int `json:"version"`
	// Base, Attacks and Rules define the grid; shards of one grid have
	// them equal.
	Base    Options              `json:"base"`
	Attacks []attack.Config      `json:"attacks"`
	Rules   []aggregation.Config `json:"rules"`
	Shard   Shard                `json:"shard"`
	// Cells are the indices of Results in the whole grid.
	Cells   []int    `json:"cells"`
	Results []Result `json:"results"`
}

// NewGridFile records the results of shard's cells of a grid.
func NewGridFile(base Options, attacks []attack.Config, rules []aggregation.Config, shard Shard, results []Result) GridFile {
	return GridFile{Version: GridFileVersion, Base: base, Attacks: attacks, Rules: rules, Shard: shard,
		Cells: shard.Cells(len(attacks) * len(rules)), Results: results}
}

// ReadGridFile decodes a grid.json, refusing unknown fields and another
// version. The file is at most maxGridFile bytes.
func ReadGridFile(r io.Reader) (GridFile, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxGridFile+1))
	if err != nil {
		return GridFile{}, fmt.Errorf("simulation: read grid file: %w", err)
	}
	if len(b) > maxGridFile {
		return GridFile{}, fmt.Errorf("simulation: grid file larger than %d bytes", maxGridFile)
	}
	var g GridFile
	if err := strictjson.Unmarshal(b, &g); err != nil {
		return GridFile{}, fmt.Errorf("simulation: grid file: %w", err)
	}
	if g.Version != GridFileVersion {
		return GridFile{}, fmt.Errorf("simulation: grid file version %d, want %d", g.Version, GridFileVersion)
	}
	return g, nil
}

// maxGridFile bounds a grid.json: a 100 × 100 grid of 1,000 evaluated
// rounds is about 1 GiB short of it.
const maxGridFile = 1 << 30

// ErrMerge marks shards MergeGrid refuses to join.
var ErrMerge = errors.New("simulation: cannot merge the shards")

// MergeGrid joins the files of the N shards of one grid, in any order,
// into the results of the whole grid in cell order: what Grid returns for
// it. Every shard must be present once, of the same grid and N, holding
// exactly its cells.
func MergeGrid(files []GridFile) ([]Result, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no shard", ErrMerge)
	}
	first := files[0]
	def, err := json.Marshal([]any{first.Base, first.Attacks, first.Rules})
	if err != nil {
		return nil, err
	}
	total := len(first.Attacks) * len(first.Rules)
	n := first.Shard.N
	if len(files) != n {
		return nil, fmt.Errorf("%w: %d files for %d shards", ErrMerge, len(files), n)
	}
	results := make([]Result, total)
	seen := make([]bool, n+1)
	for _, f := range files {
		d, err := json.Marshal([]any{f.Base, f.Attacks, f.Rules})
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(d, def) {
			return nil, fmt.Errorf("%w: shard %s is of another grid than shard %s", ErrMerge, f.Shard, first.Shard)
		}
		if f.Shard.N != n || f.Shard.validate() != nil {
			return nil, fmt.Errorf("%w: shard %s among shards of %d", ErrMerge, f.Shard, n)
		}
		if seen[f.Shard.K] {
			return nil, fmt.Errorf("%w: shard %s given twice", ErrMerge, f.Shard)
		}
		seen[f.Shard.K] = true
		want := f.Shard.Cells(total)
		if len(f.Cells) != len(want) || len(f.Results) != len(want) {
			return nil, fmt.Errorf("%w: shard %s holds %d cells and %d results, want %d", ErrMerge, f.Shard, len(f.Cells), len(f.Results), len(want))
		}
		for k, i := range want {
			if f.Cells[k] != i {
				return nil, fmt.Errorf("%w: shard %s holds cell %d where cell %d belongs", ErrMerge, f.Shard, f.Cells[k], i)
			}
			a, r := first.Attacks[i/len(first.Rules)], first.Rules[i%len(first.Rules)]
			res := f.Results[k]
			if AttackLabel(res.Options.Attack) != AttackLabel(a) || RuleLabel(res.Options.Aggregation) != RuleLabel(r) {
				return nil, fmt.Errorf("%w: shard %s: cell %d is %s × %s, want %s × %s", ErrMerge, f.Shard, i,
					AttackLabel(res.Options.Attack), RuleLabel(res.Options.Aggregation), AttackLabel(a), RuleLabel(r))
			}
			results[i] = res
		}
	}
	return results, nil
}
