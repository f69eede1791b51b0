// Command fedguard is the single binary of a fedguard federation: the
// coordinator, the hospital agent (participant), the federation CA, the
// audit tools, the simulator, the demo and the benchmarks.
//
// Run `fedguard help` for the list of subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fedguard/fedguard/cmd/fedguard/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
