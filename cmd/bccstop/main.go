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
	"strings"
	"syscall"
)

// Exit codes, one table for every subcommand (exitCodesHelp prints it).
const (
	exitOK        = 0
	exitFailure   = 1 // could not do the job: a command failed, was rejected or not sent; an operation failed
	exitUsage     = 2 // bad flags, arguments or configuration
	exitForbidden = 3 // stop: none failed or was rejected, but at least one instance was not Running
	exitTimedOut  = 4 // stop: some commands had no result in time, or the wait was interrupted
	exitNATS      = 5 // NATS could not be reached, or what was asked could not be stored or read there
	exitNothing   = 6 // nothing to do: no target matched (a dry run would stop none), nothing to resume, cancel or release
	exitRefused   = 7 // refused: it would replace what someone else set (a pause, a hold); --force does
)

// exitCodesHelp is the table of exit codes, in every command's help.
const exitCodesHelp = `Exit status (the same for every command):
  0  done as asked
  1  failed: a command failed, was rejected or was not sent; an operation failed
  2  usage error: bad flag, argument, id or configuration
  3  stop: none failed or was rejected, but at least one was forbidden (not Running)
  4  stop: some commands had no result before --timeout, or the wait was interrupted
  5  NATS could not be reached, or what was asked could not be stored or read
     there (stop: or the BCC API could not list or describe the instances)
  6  nothing to do: no target matched (or, in a dry run, none would be
     stopped), nothing to resume, cancel or release
  7  refused: it would replace someone else's pause or hold (--force does)
`

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// command is one subcommand: what the top-level help says of it, and how
// it runs. Every command parses its flags before doing anything, so
// running it with --help only prints its help (help and completion rely
// on that).
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands in the order the help lists them.
func commands() []command {
	return []command{
		{"worker", "", "run the worker daemon (configured by environment variables)", noStdin(runWorker)},
		{"dev", "", "everything in one process: embedded NATS with JetStream,\nthe BCC simulator and a worker; prints how to send a command", noStdin(runDev)},
		{"stop", "ID…", "publish stop commands and wait for their results", runStop},
		{"pause", "", "pause every worker at once (commands wait, nothing is lost)", noStdin(runPause)},
		{"resume", "", "resume the workers", noStdin(runResume)},
		{"status", "", "paused or not, commands waiting and in flight, recent outcomes", noStdin(runStatus)},
		{"schedules", "", "list or cancel the stops scheduled with stop --at", noStdin(runSchedules)},
		{"hold", "ID…", "hold instances for a while: commands for them are rejected until it ends", noStdin(runHold)},
		{"holds", "", "list the holds in force", noStdin(runHolds)},
		{"release", "ID…", "end holds early", noStdin(runRelease)},
		{"fakebcc", "", "run the BCC API simulator alone", noStdin(runFakeBCC)},
		{"probe", "URL", "exit 0 if URL answers 200 (container health checks)", noStdin(runProbe)},
		{"version", "", "print version and build information", func(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
			return runVersion(args, stdout, stderr)
		}},
		{"help", "COMMAND", "show the help of a command", runHelp},
		{"completion", "SHELL", "print a completion script for bash, zsh or fish", noStdin(runCompletion)},
	}
}

func noStdin(run func(context.Context, []string, io.Writer, io.Writer) int) func(context.Context, []string, io.Reader, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
		return run(ctx, args, stdout, stderr)
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// printUsage writes the top-level help.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "bccstop stops Baidu Cloud (BCC) instances on command from NATS JetStream.\n\nUsage:\n")
	for _, c := range commands() {
		left := strings.TrimSpace("bccstop " + c.name + " " + c.args)
		fmt.Fprintf(w, "  %-24s  %s\n", left, strings.ReplaceAll(c.summary, "\n", "\n"+strings.Repeat(" ", 28)))
	}
	fmt.Fprint(w, `
Flags:
  -h, --help                show this help
      --version             print version and build information

Run "bccstop help COMMAND" (or "bccstop COMMAND --help") for the flags and
variables of a command.
`)
}

// run is the whole program; main only passes the process's streams and
// exits with its status. SIGINT and SIGTERM cancel the context.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name, rest := args[0], args[1:]
	switch name {
	case "--version":
		name = "version"
	case "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	}
	c, ok := lookup(name)
	if !ok {
		return unknownWord(stderr, "bccstop", "command", name, commandNames(), "bccstop help")
	}
	return c.run(ctx, rest, stdin, stdout, stderr)
}

// commandNames are the names of the commands, in the help's order.
func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// runHelp is "bccstop help [COMMAND]": a command's help is its --help.
func runHelp(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		printUsage(stdout)
		return exitOK
	case len(args) > 1 && args[0] != "schedules":
		fmt.Fprintf(stderr, "bccstop help: name one command, not %q\n", strings.Join(args, " "))
		return exitUsage
	}
	c, ok := lookup(args[0])
	if !ok {
		return unknownWord(stderr, "bccstop help", "command", args[0], commandNames(), "bccstop help")
	}
	if c.name == "help" {
		printUsage(stdout)
		return exitOK
	}
	return c.run(ctx, append(args[1:], "--help"), stdin, stdout, stderr)
}
