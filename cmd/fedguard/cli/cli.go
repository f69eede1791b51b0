// Package cli maps fedguard's command line onto package calls. The command
// table (commands.go) lists every command; each command's code lives in its
// own file and holds no domain logic, so everything a command does can also
// be done from a test through the packages it calls.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Env is what a subcommand gets besides its arguments.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	// Log is the structured logger, set up from the global flags.
	Log *slog.Logger
}

// command is one entry of the command table: a command with its run
// function, or (run nil, sub set) a group of subcommands.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
	sub     []*command
}

// lookup finds the command called name in table.
func lookup(table []*command, name string) *command {
	for _, c := range table {
		if c.name == name {
			return c
		}
	}
	return nil
}

// errUsage marks an error caused by the command line itself (exit code 2).
var errUsage = errors.New("usage")

// usageError reports a bad command line.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Main runs the fedguard command line and returns the process exit code:
// 0 on success, 1 on failure, 2 on a bad command line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("fedguard", flag.ContinueOnError)
	global.SetOutput(stderr)
	logFormat := global.String("log-format", "text", "log format: text or json")
	logLevel := global.String("log-level", "info", "log level: debug, info, warn or error")
	global.Usage = func() { printHelp(stderr, nil, commands) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "fedguard: %v\n", err)
		return 2
	}
	env := &Env{Stdout: stdout, Stderr: stderr, Log: log}
	err = dispatch(ctx, env, nil, commands, global.Args())
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "fedguard: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "fedguard: %v\n", err)
		return 1
	}
}

func dispatch(ctx context.Context, env *Env, path []string, table []*command, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(env.Stdout, path, table)
		if len(args) == 0 {
			return usageError("missing subcommand")
		}
		return nil
	}
	c := lookup(table, args[0])
	if c == nil {
		return usageError("unknown command %q (see 'fedguard %shelp')", strings.Join(append(path, args[0]), " "), prefix(path))
	}
	path = append(path, args[0])
	if c.sub != nil {
		return dispatch(ctx, env, path, c.sub, args[1:])
	}
	return c.run(ctx, env, args[1:])
}

func prefix(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return strings.Join(path, " ") + " "
}

func printHelp(w io.Writer, path []string, table []*command) {
	fmt.Fprintf(w, "usage: fedguard [-log-format text|json] [-log-level LEVEL] %sCOMMAND [flags]\n\ncommands:\n", prefix(path))
	for _, c := range table {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
}

// newFlagSet returns a flag set for a subcommand that reports errors instead
// of exiting.
func newFlagSet(env *Env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("fedguard "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parseFlags parses args, refuses stray positional arguments and, like
// required, fails when one of the mandatory string flags is empty.
func parseFlags(fs *flag.FlagSet, args []string, mandatory ...string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return required(fs, mandatory...)
}

// parseArgs parses args of a command that takes positional arguments
// (fs.Args()): a bad flag is a usage error, -h is flag.ErrHelp.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError("%v", err)
	}
	return nil
}

// required fails when a mandatory string flag is empty.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if f := fs.Lookup(n); f == nil || f.Value.String() == "" {
			return usageError("%s: flag -%s is required", fs.Name(), n)
		}
	}
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("bad -log-format %q: want text or json", format)
	}
}
