// Command bccstop stops Baidu Cloud (BCC) instances on command from NATS:
// the worker daemon, an all-in-one dev mode, the BCC API simulator, and a
// bulk `stop` client. Run `bccstop --help`.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes shared by every subcommand (stop adds its own, see stop.go).
const (
	exitOK      = 0
	exitFailure = 1 // could not do the job (connection lost, …)
	exitUsage   = 2 // bad flags, arguments or configuration
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

const usage = `bccstop stops Baidu Cloud (BCC) instances on command from NATS JetStream.

Usage:
  bccstop worker            run the worker daemon (configured by environment variables)
  bccstop dev               everything in one process: embedded NATS with JetStream,
                            the BCC simulator and a worker; prints how to send a command
  bccstop stop ID…          publish stop commands and wait for their results
  bccstop pause             pause every worker at once (commands wait, nothing is lost)
  bccstop resume            resume the workers
  bccstop status            paused or not, commands waiting and in flight, recent outcomes
  bccstop schedules         list or cancel the stops scheduled with stop --at
  bccstop fakebcc           run the BCC API simulator alone
  bccstop probe URL         exit 0 if URL answers 200 (container health checks)
  bccstop version           print version and build information

Run "bccstop <command> --help" for the flags and variables of a command.
`

// run is the whole program; main only passes the process's streams and
// exits with its status. SIGINT and SIGTERM cancel the context.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "worker":
		return runWorker(ctx, rest, stdout, stderr)
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "fakebcc":
		return runFakeBCC(ctx, rest, stdout, stderr)
	case "stop":
		return runStop(ctx, rest, stdin, stdout, stderr)
	case "pause":
		return runPause(ctx, rest, stdout, stderr)
	case "resume":
		return runResume(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "schedules":
		return runSchedules(ctx, rest, stdout, stderr)
	case "probe":
		return runProbe(ctx, rest, stdout, stderr)
	case "version", "--version":
		return runVersion(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "bccstop: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}
