package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCommandTable checks the shape of the command table: every entry has a
// name, a one-line summary and exactly one of run and sub; names are unique
// and sorted at each level (help prints them in table order), and the
// table has two levels at most, which is all dispatch and help know.
func TestCommandTable(t *testing.T) {
	var check func(path string, table []*command, depth int)
	check = func(path string, table []*command, depth int) {
		names := make([]string, 0, len(table))
		for _, c := range table {
			where := strings.TrimSpace(path + " " + c.name)
			switch {
			case c.name == "" || strings.ContainsAny(c.name, " \t\n"):
				t.Errorf("command %q under %q: bad name", c.name, path)
			case c.summary == "" || strings.Contains(c.summary, "\n"):
				t.Errorf("command %q: summary %q is not one line", where, c.summary)
			case (c.run == nil) == (c.sub == nil):
				t.Errorf("command %q: has run %v and sub %v, want exactly one", where, c.run != nil, c.sub != nil)
			case c.sub != nil && depth > 0:
				t.Errorf("command %q: a third level, which dispatch does not offer", where)
			}
			names = append(names, c.name)
			if c.sub != nil {
				check(where, c.sub, depth+1)
				// `fedguard -h` shows only the group's summary: it
				// lists the subcommands, all of them (audit's left
				// out check and model, ca's init-audit).
				_, list, _ := strings.Cut(c.summary, ": ")
				listed := strings.Split(list, ", ")
				for _, s := range c.sub {
					if !slices.Contains(listed, s.name) {
						t.Errorf("command %q: summary %q does not list its subcommand %q", where, c.summary, s.name)
					}
				}
			}
		}
		if !slices.IsSorted(names) {
			t.Errorf("commands under %q are %v, want them sorted (help lists them in table order)", path, names)
		}
		if len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Errorf("commands under %q are %v: a name is listed twice", path, names)
		}
	}
	check("", commands, 0)
}

// TestCoordinatorHelpNamesSubcommands: `coordinator -h` printed only the
// flags, so the commands an operator runs first (coordinator init) and
// later (rotate-keys) were not in the help of the command they belong to.
func TestCoordinatorHelpNamesSubcommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"coordinator", "-h"}, &out, &errOut); code != 0 {
		t.Fatalf("coordinator -h: exit %d\n%s", code, errOut.String())
	}
	help := out.String() + errOut.String()
	for _, want := range []string{"-check-config", "fedguard coordinator init --config", "fedguard coordinator rotate-keys --config"} {
		if !strings.Contains(help, want) {
			t.Errorf("coordinator -h does not mention %q:\n%s", want, help)
		}
	}
}

// TestHelp compares `fedguard help` and each group's help, and the answer
// to an unknown command, with testdata/help/NAME.golden: the command table
// must print what the init()-registered commands printed (the golden files
// were written from that code, before the table).
func TestHelp(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"help", []string{"help"}},
		{"dash-h", []string{"-h"}},
		{"unknown", []string{"nosuch"}},
		{"audit-unknown", []string{"audit", "nosuch"}},
		{"participant-h", []string{"participant", "-h"}},
	}
	for _, c := range commands {
		if c.sub != nil {
			tests = append(tests, struct {
				name string
				args []string
			}{c.name, []string{c.name, "help"}})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGolden(t, filepath.Join("testdata", "help", tt.name+".golden"), tt.args)
		})
	}
}

// TestFlagPlaceholders runs every command with -h and checks each flag's
// line: Go's flag package takes a back-quoted word of the usage text as
// the value's name, so "as `fedguard model export` writes it" printed
// "-model fedguard model export", which reads as three more flags. A
// placeholder must be one word.
func TestFlagPlaceholders(t *testing.T) {
	flagLine := regexp.MustCompile(`^  -[a-z0-9-]+( [A-Za-z0-9._/-]+)?(\t.*)?$`)
	var walk func(args []string, table []*command)
	walk = func(args []string, table []*command) {
		for _, c := range table {
			path := append(slices.Clone(args), c.name)
			if c.sub != nil {
				walk(path, c.sub)
				continue
			}
			var out, errOut bytes.Buffer
			Main(context.Background(), append(path, "-h"), &out, &errOut)
			for _, line := range strings.Split(out.String()+errOut.String(), "\n") {
				if strings.HasPrefix(line, "  -") && !flagLine.MatchString(line) {
					t.Errorf("fedguard %s -h: flag line %q: its value's name is not one word", strings.Join(path, " "), line)
				}
			}
		}
	}
	walk(nil, commands)
}
