package partition_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedguard/fedguard/partition"
)

func mustParse(t testing.TB, s string) partition.Scheme {
	t.Helper()
	sc, err := partition.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q) = %v", s, err)
	}
	return sc
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   partition.Scheme
		str    string
		errSub string // non-empty: Parse must fail saying this
	}{
		{in: "iid", want: partition.Scheme{Kind: "iid"}, str: "iid"},
		{in: "sorted", want: partition.Scheme{Kind: "sorted"}, str: "sorted"},
		{in: "dirichlet:0.5", want: partition.Scheme{Kind: "dirichlet", Alpha: 0.5}, str: "dirichlet:0.5"},
		{in: "dirichlet:0.50", want: partition.Scheme{Kind: "dirichlet", Alpha: 0.5}, str: "dirichlet:0.5"},
		{in: "dirichlet:1e-3", want: partition.Scheme{Kind: "dirichlet", Alpha: 0.001}, str: "dirichlet:0.001"},
		{in: "dirichlet:100", want: partition.Scheme{Kind: "dirichlet", Alpha: 100}, str: "dirichlet:100"},
		{in: "", errSub: "want iid, sorted or dirichlet:ALPHA"},
		{in: "IID", errSub: "want iid, sorted or dirichlet:ALPHA"},
		{in: "random", errSub: "want iid, sorted or dirichlet:ALPHA"},
		{in: " iid", errSub: "want iid"},
		{in: "iid:1", errSub: "iid takes no parameter"},
		{in: "sorted:", errSub: "sorted takes no parameter"},
		{in: "dirichlet", errSub: "needs a concentration"},
		{in: "dirichlet:", errSub: "needs a concentration"},
		{in: "dirichlet:abc", errSub: `concentration "abc" is not a number`},
		{in: "dirichlet:0.5:1", errSub: "is not a number"},
		{in: "dirichlet:0", errSub: "not a positive finite number"},
		{in: "dirichlet:-1", errSub: "not a positive finite number"},
		{in: "dirichlet:NaN", errSub: "not a positive finite number"},
		{in: "dirichlet:+Inf", errSub: "not a positive finite number"},
		{in: "dirichlet:1e400", errSub: "is not a number"},
	} {
		got, err := partition.Parse(tc.in)
		if tc.errSub != "" {
			if err == nil || !errors.Is(err, partition.ErrScheme) || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("Parse(%q) = %v, %v, want an ErrScheme saying %q", tc.in, got, err, tc.errSub)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v, want %v, nil", tc.in, got, err, tc.want)
			continue
		}
		if s := got.String(); s != tc.str {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, s, tc.str)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"iid", "sorted", "dirichlet:0.5", "dirichlet:1e-300", "dirichlet:0x1p-3", "dirichlet:-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := partition.Parse(s)
		if err != nil {
			if !errors.Is(err, partition.ErrScheme) {
				t.Fatalf("Parse(%q) = %v, want an ErrScheme", s, err)
			}
			return
		}
		again, err := partition.Parse(sc.String())
		if err != nil || again != sc {
			t.Fatalf("Parse(%q) = %v, but Parse(%q) = %v, %v", s, sc, sc.String(), again, err)
		}
	})
}

// balanced returns perClass rows of each of classes labels, interleaved as
// in a shuffled data set.
func balanced(classes, perClass int) []int {
	labels := make([]int, classes*perClass)
	for i := range labels {
		labels[i] = (i * 7) % classes
	}
	return labels
}

// check verifies the guarantees common to all schemes.
func check(t *testing.T, parts [][]int, rows, clients int) {
	t.Helper()
	if len(parts) != clients {
		t.Fatalf("%d clients, want %d", len(parts), clients)
	}
	seen := make([]int, rows)
	for c, p := range parts {
		if len(p) == 0 {
			t.Errorf("client %d is empty", c)
		}
		if !slices.IsSorted(p) {
			t.Errorf("client %d's rows are not in increasing order", c)
		}
		for _, r := range p {
			if r < 0 || r >= rows {
				t.Fatalf("client %d has row %d of %d", c, r, rows)
			}
			seen[r]++
		}
	}
	for r, n := range seen {
		if n != 1 {
			t.Errorf("row %d is in %d clients, want 1", r, n)
		}
	}
}

func sizes(parts [][]int) (lo, hi int) {
	lo = math.MaxInt
	for _, p := range parts {
		lo, hi = min(lo, len(p)), max(hi, len(p))
	}
	return lo, hi
}

// labelSet returns the distinct labels of a client, in increasing order.
func labelSet(labels, rows []int) []int {
	var s []int
	for _, r := range rows {
		s = append(s, labels[r])
	}
	slices.Sort(s)
	return slices.Compact(s)
}

func TestSplit(t *testing.T) {
	skewed := append(balanced(3, 50), 3, 3) // class 3 has two rows; class 4 none
	for _, tc := range []struct {
		name    string
		labels  []int
		classes int
		clients int
	}{
		{"balanced", balanced(10, 100), 10, 20},
		{"one client", balanced(10, 100), 10, 1},
		{"a row each", balanced(4, 5), 4, 20},
		{"uneven sizes", balanced(3, 33), 3, 7},
		{"skewed classes", skewed, 5, 10},
		{"one class", balanced(1, 30), 1, 4},
	} {
		for _, scheme := range []string{"iid", "sorted", "dirichlet:0.01", "dirichlet:0.5", "dirichlet:1000"} {
			t.Run(tc.name+"/"+scheme, func(t *testing.T) {
				parts, err := partition.Split(tc.labels, tc.classes, tc.clients, mustParse(t, scheme), rand.New(rand.NewPCG(1, 2)))
				if err != nil {
					t.Fatalf("Split = %v", err)
				}
				check(t, parts, len(tc.labels), tc.clients)
				if scheme == "dirichlet:0.01" || scheme == "dirichlet:0.5" || scheme == "dirichlet:1000" {
					return
				}
				if lo, hi := sizes(parts); hi-lo > 1 {
					t.Errorf("%s client sizes from %d to %d, want within 1", scheme, lo, hi)
				}
				if scheme == "sorted" {
					for c := 1; c < len(parts); c++ {
						prev, cur := labelSet(tc.labels, parts[c-1]), labelSet(tc.labels, parts[c])
						if prev[len(prev)-1] > cur[0] {
							t.Errorf("sorted: client %d has labels %v after client %d's %v", c, cur, c-1, prev)
						}
					}
				}
			})
		}
	}
}

func TestSortedLabelSets(t *testing.T) {
	labels := balanced(10, 100)
	for _, tc := range []struct {
		clients   int
		maxLabels int
	}{
		{10, 1}, // a shard is exactly a class
		{20, 1},
		{30, 2},
		{7, 3}, // fewer clients than classes: shards span classes
	} {
		parts, err := partition.Split(labels, 10, tc.clients, partition.Scheme{Kind: partition.KindSorted}, nil)
		if err != nil {
			t.Fatalf("Split(sorted, %d clients) = %v", tc.clients, err)
		}
		check(t, parts, len(labels), tc.clients)
		most := 0
		for _, p := range parts {
			most = max(most, len(labelSet(labels, p)))
		}
		if most != tc.maxLabels {
			t.Errorf("sorted, %d clients: a client has up to %d labels, want %d", tc.clients, most, tc.maxLabels)
		}
	}
}

// classesPerClient is the mean number of distinct labels of a client.
func classesPerClient(labels []int, parts [][]int) float64 {
	total := 0
	for _, p := range parts {
		total += len(labelSet(labels, p))
	}
	return float64(total) / float64(len(parts))
}

func TestDirichletSkew(t *testing.T) {
	labels := balanced(10, 600)
	const clients = 30
	mean := func(scheme string) float64 {
		var sum float64
		const seeds = 5
		for seed := range uint64(seeds) {
			parts, err := partition.Split(labels, 10, clients, mustParse(t, scheme), rand.New(rand.NewPCG(seed, 7)))
			if err != nil {
				t.Fatalf("Split(%s) = %v", scheme, err)
			}
			check(t, parts, len(labels), clients)
			sum += classesPerClient(labels, parts)
		}
		return sum / seeds
	}
	iid := mean("iid")
	got := map[string]float64{}
	for _, s := range []string{"dirichlet:0.05", "dirichlet:0.5", "dirichlet:5", "dirichlet:1000"} {
		got[s] = mean(s)
	}
	t.Logf("classes per client: iid %.2f, %v", iid, got)
	if iid < 9.9 || got["dirichlet:1000"] < 9.9 {
		t.Errorf("classes per client: iid %.2f, dirichlet:1000 %.2f, want both near 10", iid, got["dirichlet:1000"])
	}
	if got["dirichlet:0.05"] > 4 {
		t.Errorf("classes per client with dirichlet:0.05 = %.2f, want at most 4", got["dirichlet:0.05"])
	}
	if !(got["dirichlet:0.05"] < got["dirichlet:0.5"] && got["dirichlet:0.5"] < got["dirichlet:5"]) {
		t.Errorf("classes per client do not grow with alpha: %v", got)
	}

	// With a large alpha, client sizes are close to even too.
	parts, err := partition.Split(labels, 10, clients, mustParse(t, "dirichlet:1000"), rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := sizes(parts); lo < 180 || hi > 220 {
		t.Errorf("dirichlet:1000 client sizes from %d to %d, want about 200", lo, hi)
	}
}

func TestDeterminism(t *testing.T) {
	labels := balanced(10, 50)
	for _, s := range []string{"iid", "sorted", "dirichlet:0.3"} {
		split := func(seed uint64) [][]int {
			parts, err := partition.Split(labels, 10, 12, mustParse(t, s), rand.New(rand.NewPCG(seed, 0)))
			if err != nil {
				t.Fatalf("Split(%s) = %v", s, err)
			}
			return parts
		}
		if diff := cmp.Diff(split(1), split(1)); diff != "" {
			t.Errorf("%s: same seed, different splits (-first +second):\n%s", s, diff)
		}
		if s != "sorted" && cmp.Equal(split(1), split(2)) {
			t.Errorf("%s: seeds 1 and 2 give the same split", s)
		}
	}
}

func TestSplitErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	iid := partition.Scheme{Kind: partition.KindIID}
	for _, tc := range []struct {
		name    string
		labels  []int
		classes int
		clients int
		scheme  partition.Scheme
		rng     *rand.Rand
		want    error
		sub     string
	}{
		{"no clients", []int{0, 1}, 2, 0, iid, rng, partition.ErrInput, "0 clients"},
		{"negative clients", []int{0, 1}, 2, -1, iid, rng, partition.ErrInput, "-1 clients"},
		{"more clients than rows", []int{0, 1}, 2, 3, iid, rng, partition.ErrInput, "2 rows cannot give 3 clients"},
		{"no rows", nil, 2, 1, iid, rng, partition.ErrInput, "0 rows"},
		{"no classes", []int{0}, 0, 1, iid, rng, partition.ErrInput, "0 classes"},
		{"label too large", []int{0, 2, 1}, 2, 1, iid, rng, partition.ErrInput, "row 1 has label 2, want 0 to 1"},
		{"negative label", []int{0, -1}, 2, 1, iid, rng, partition.ErrInput, "row 1 has label -1"},
		{"nil rng", []int{0, 1}, 2, 1, iid, nil, partition.ErrInput, "nil rng"},
		{"zero scheme", []int{0, 1}, 2, 1, partition.Scheme{}, rng, partition.ErrScheme, `unknown kind ""`},
		{"zero alpha", []int{0, 1}, 2, 1, partition.Scheme{Kind: partition.KindDirichlet}, rng, partition.ErrScheme, "concentration 0"},
		{"infinite alpha", []int{0, 1}, 2, 1, partition.Scheme{Kind: partition.KindDirichlet, Alpha: math.Inf(1)}, rng, partition.ErrScheme, "concentration +Inf"},
		{"iid with alpha", []int{0, 1}, 2, 1, partition.Scheme{Kind: partition.KindIID, Alpha: 1}, rng, partition.ErrScheme, "iid with concentration 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := partition.Split(tc.labels, tc.classes, tc.clients, tc.scheme, tc.rng)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.sub) {
				t.Errorf("Split = %v, %v, want %v saying %q", parts, err, tc.want, tc.sub)
			}
		})
	}
}
