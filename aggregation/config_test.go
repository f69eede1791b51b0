package aggregation

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want Rule
	}{
		{Config{}, FedAvg{}},
		{Config{Rule: "fedavg", MaxSamples: 10}, FedAvg{MaxSamples: 10}},
		{Config{Rule: "median", F: 1}, Median{F: 1}},
		{Config{Rule: "trimmed-mean", Beta: 0.1, F: 1}, TrimmedMean{Beta: 0.1, F: 1}},
		{Config{Rule: "krum", F: 2}, Krum{F: 2}},
		{Config{Rule: "multi-krum", F: 2, M: 3}, MultiKrum{F: 2, M: 3}},
		{Config{Rule: "bulyan", F: 1}, Bulyan{F: 1}},
		{Config{Rule: "centered-clipping", Tau: 0.5}, CenteredClipping{Tau: 0.5}},
		{Config{Rule: "centered-clipping", Tau: 0.5, Iterations: 7, F: 1}, CenteredClipping{Tau: 0.5, Iterations: 7, F: 1}},
		{Config{Rule: "median", Bucket: 1}, Median{}},
		{Config{Rule: "krum", F: 1, NormClip: 2, Bucket: 3}, NormClip{Bound: 2, Rule: Bucketing{Size: 3, Rule: Krum{F: 1}}}},
	} {
		got, err := New(tc.c)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("New(%+v) = %#v, %v, want %#v", tc.c, got, err, tc.want)
		}
		if err := tc.c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", tc.c, err)
		}
		if got != nil && got.Name() == "" {
			t.Errorf("New(%+v).Name() is empty", tc.c)
		}
	}
	r, _ := New(Config{Rule: "krum", F: 1, NormClip: 2, Bucket: 3})
	if r.Name() != "norm-clip+bucket+krum" {
		t.Errorf("Name() = %q, want %q", r.Name(), "norm-clip+bucket+krum")
	}
}

func TestCheckCohort(t *testing.T) {
	for _, tc := range []struct {
		c      Config
		ok, no []int
	}{
		{Config{}, []int{1, 2, 100}, []int{0, -1}},
		{Config{Rule: "krum", F: 1}, []int{5, 6, 50}, []int{0, 1, 4}},
		{Config{Rule: "krum", F: 1, Bucket: 2}, []int{9, 10, 11}, []int{8, 5}},
		{Config{Rule: "multi-krum", F: 1, M: 4}, []int{5, 6}, []int{4}},
		{Config{Rule: "multi-krum", F: 2, M: 6}, []int{8}, []int{7}},
		{Config{Rule: "bulyan", F: 2}, []int{11, 12}, []int{10, 7}},
		{Config{Rule: "bulyan", F: 1, Bucket: 3}, []int{19, 21}, []int{18}},
		{Config{Rule: "median", F: 2}, []int{5, 6}, []int{4, 3}},
		{Config{Rule: "median"}, []int{1, 2}, []int{0}},
		{Config{Rule: "trimmed-mean", Beta: 0.2, F: 1}, []int{3, 4, 5, 6, 7, 10}, []int{1, 2}},
		{Config{Rule: "trimmed-mean", Beta: 0.4}, []int{5, 7}, []int{1, 2, 3, 6}}, // not monotone in n
		{Config{Rule: "trimmed-mean", Beta: 0.1, F: 2}, []int{11, 20}, []int{10, 5}},
		{Config{Rule: "centered-clipping", Tau: 1, F: 1}, []int{3, 4}, []int{2, 1}},
		{Config{Rule: "centered-clipping", Tau: 1}, []int{1}, []int{0}},
	} {
		for _, n := range tc.ok {
			if err := tc.c.CheckCohort(n); err != nil {
				t.Errorf("%s: CheckCohort(%d) = %v, want nil", configString(tc.c), n, err)
			}
		}
		for _, n := range tc.no {
			if err := tc.c.CheckCohort(n); !errors.Is(err, ErrCohort) {
				t.Errorf("%s: CheckCohort(%d) = %v, want %v", configString(tc.c), n, err, ErrCohort)
			}
		}
	}
}

func TestConfigJSON(t *testing.T) {
	var c Config
	in := `{"rule":"centered-clipping","f":1,"tau":0.25,"iterations":5,"norm_clip":10,"bucket":2}`
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := Config{Rule: "centered-clipping", F: 1, Tau: 0.25, Iterations: 5, NormClip: 10, Bucket: 2}
	if c != want {
		t.Fatalf("Unmarshal(%s) = %+v, want %+v", in, c, want)
	}
	out, err := json.Marshal(c)
	if err != nil || string(out) != in {
		t.Errorf("Marshal = %s, %v, want %s", out, err, in)
	}
	if out, _ := json.Marshal(Config{}); string(out) != `{"rule":""}` {
		t.Errorf("Marshal(Config{}) = %s", out)
	}
}

// FuzzConfig: any JSON that decodes into a Config round-trips through
// Marshal, and Validate, New and CheckCohort agree and never panic.
func FuzzConfig(f *testing.F) {
	for _, v := range readVectors(f) {
		b, _ := json.Marshal(v.Config)
		f.Add(string(b))
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		var c Config
		if json.Unmarshal([]byte(in), &c) != nil {
			return
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal(%+v) = %v", c, err)
		}
		var c2 Config
		if err := json.Unmarshal(b, &c2); err != nil || c2 != c {
			t.Fatalf("round trip %s -> %+v -> %s -> %+v, %v", in, c, b, c2, err)
		}
		verr := c.Validate()
		r, nerr := New(c)
		if (verr == nil) != (nerr == nil) || (nerr == nil) != (r != nil) {
			t.Fatalf("Validate = %v but New = %v, %v", verr, r, nerr)
		}
		if verr != nil && !errors.Is(verr, ErrConfig) && !errors.Is(verr, ErrUnknownRule) {
			t.Fatalf("Validate = %v, want ErrConfig or ErrUnknownRule", verr)
		}
		for n := range 12 {
			err := c.CheckCohort(n)
			if verr != nil && err == nil {
				t.Fatalf("CheckCohort(%d) = nil after Validate = %v", n, verr)
			}
			if verr == nil && err != nil && !errors.Is(err, ErrCohort) {
				t.Fatalf("CheckCohort(%d) = %v, want nil or ErrCohort", n, err)
			}
		}
	})
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		rule string
		n, f int
		want Config
	}{
		{"", 25, 5, Config{Rule: "fedavg"}},
		{"fedavg", 25, -1, Config{Rule: "fedavg"}},
		{"median", 50, -1, Config{Rule: "median", F: 24}},
		{"trimmed-mean", 25, 5, Config{Rule: "trimmed-mean", F: 5, Beta: 0.2}},
		{"trimmed-mean", 10, -1, Config{Rule: "trimmed-mean", F: 4, Beta: 0.4}},
		{"krum", 50, -1, Config{Rule: "krum", F: 23}},
		{"multi-krum", 25, 5, Config{Rule: "multi-krum", F: 5, M: 20}},
		{"multi-krum", 10, -1, Config{Rule: "multi-krum", F: 3, M: 7}},
		{"bulyan", 50, -1, Config{Rule: "bulyan", F: 11}},
		{"bulyan", 3, -1, Config{Rule: "bulyan"}},
		{"centered-clipping", 10, -1, Config{Rule: "centered-clipping", F: 4, Tau: DefaultTau}},
		{"no-such-rule", 10, 2, Config{Rule: "no-such-rule"}},
	} {
		got := Defaults(tc.rule, tc.n, tc.f)
		if got != tc.want {
			t.Errorf("Defaults(%q, %d, %d) = %+v, want %+v", tc.rule, tc.n, tc.f, got, tc.want)
		}
		if tc.rule == "no-such-rule" {
			continue
		}
		if err := got.CheckCohort(tc.n); err != nil {
			t.Errorf("Defaults(%q, %d, %d) = %+v: CheckCohort(%d): %v", tc.rule, tc.n, tc.f, got, tc.n, err)
		}
	}
}
