package simulation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/fedguard/fedguard/aggregation"
	"github.com/fedguard/fedguard/attack"
	"github.com/fedguard/fedguard/internal/workers"
)

// Grid runs base with every (attack, rule) pair and returns the results
// attack-major: results[a·len(rules)+r] is attacks[a] against rules[r].
// Every pair is validated before anything runs (the errors of all bad
// pairs are joined, each wrapping ErrOptions), the data set is loaded once,
// and the pairs run in parallel on GOMAXPROCS goroutines, each with
// base.Workers = GOMAXPROCS / (pairs running at once), which does not
// change the results. progress (if not nil) is called after each finished
// run, never concurrently, with the number of runs done.
func Grid(ctx context.Context, base Options, attacks []attack.Config, rules []aggregation.Config, progress func(done, total int, last Result)) ([]Result, error) {
	return GridShard(ctx, base, attacks, rules, Shard{K: 1, N: 1}, progress)
}

// GridShard is Grid for the cells of one shard (see Shard.Cells): every
// pair is still validated, and the results are those of the shard's cells
// in cell order; a cell's result is the same as in the whole grid.
func GridShard(ctx context.Context, base Options, attacks []attack.Config, rules []aggregation.Config, shard Shard, progress func(done, total int, last Result)) ([]Result, error) {
	if err := shard.validate(); err != nil {
		return nil, err
	}
	if len(attacks)*len(rules) == 0 {
		return nil, fmt.Errorf("%w: the grid needs at least one attack and one rule", ErrOptions)
	}
	cells := shard.Cells(len(attacks) * len(rules))
	total := len(cells)
	if total == 0 {
		return []Result{}, nil
	}
	pairs := min(runtime.GOMAXPROCS(0), total)
	base.Workers = max(1, runtime.GOMAXPROCS(0)/pairs)
	runs := make([]*checked, len(attacks)*len(rules))
	var errs []error
	for a, ac := range attacks {
		for r, rc := range rules {
			o := base
			o.Attack, o.Aggregation = ac, rc
			c, err := check(o)
			if err != nil {
				err = fmt.Errorf("attack %s × rule %s: %w", AttackLabel(ac), RuleLabel(rc), err)
			}
			runs[a*len(rules)+r], errs = c, append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	d, err := load(runs[cells[0]].o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]Result, total)
	var (
		mu       sync.Mutex
		done     int
		firstErr error // the first run that failed, not those it cancelled
	)
	err = workers.Each(ctx, pairs, total, func(k int) error {
		i := cells[k]
		res, err := run(ctx, runs[i], d, time.Now(), nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("attack %s × rule %s: %w", AttackLabel(runs[i].o.Attack), RuleLabel(runs[i].o.Aggregation), err)
			}
			cancel()
			return err
		}
		results[k] = res
		done++
		if progress != nil {
			progress(done, total, res)
		}
		return nil
	})
	if firstErr != nil {
		return nil, firstErr
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// AttackLabel names an attack configuration in tables and plots: its name,
// with "/own" when the attackers see only their own updates.
func AttackLabel(c attack.Config) string {
	name := cmp.Or(c.Name, attack.NameNone)
	if c.OwnOnly {
		name += "/own"
	}
	return name
}

// RuleLabel names a rule configuration in tables and plots: the rule's
// name, after its pre-steps ("clip2+bucket2+krum").
func RuleLabel(c aggregation.Config) string {
	name := cmp.Or(c.Rule, aggregation.NameFedAvg)
	if c.Bucket > 1 {
		name = fmt.Sprintf("bucket%d+%s", c.Bucket, name)
	}
	if c.NormClip > 0 {
		name = fmt.Sprintf("clip%g+%s", c.NormClip, name)
	}
	return name
}
