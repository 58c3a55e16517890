package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/natsconn"
	"github.com/bccstop/bccstop/messages"
)

const stopUsage = `Usage: bccstop stop [flags] ID…
       bccstop stop [flags] --file FILE      (or --file - for stdin)

Publishes one stop command per instance on bcc.instance.stop and, unless
--wait=false, follows the result events until every command has one. On a
terminal a progress bar shows how far it got; otherwise a line is printed
every few seconds. At the end it prints a summary by outcome and a table of
every command that did not succeed.

Ids come from the arguments and/or a file (one per line; blank lines and
# comments are ignored; duplicates are stopped once).

Each command's identity is "<batch id>.<instance id>". Without --batch-id a
new batch id is made up and printed. Running the same job again with the same
--batch-id stops nothing twice: JetStream drops repeated publishes and the
workers answer commands they already decided with the earlier outcome.

NATS connection: NATS_URL (default nats://127.0.0.1:4222) and the other
NATS_* variables, as for the worker, or --server.

Exit status:
  0  every command succeeded
  1  at least one command failed or was rejected
  2  usage error (bad flag, bad instance id, bad configuration)
  3  none failed or was rejected, but at least one was forbidden (instance not Running)
  4  some commands had no result before --timeout (or the wait was interrupted)
  5  NATS could not be reached, or the commands could not be published

Flags:
`

func runStop(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bccstop stop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "read instance ids from `FILE`, one per line (- for stdin)")
	force := fs.Bool("force", false, "force stop (like pulling the power)")
	noCharge := fs.Bool("no-charge", false, "stop with no charge (stopWithNoCharge)")
	region := fs.String("region", "", "`REGION` of BCC_ENDPOINTS the workers should use (default: their default endpoint)")
	batchID := fs.String("batch-id", "", "`ID` of this job; re-running with the same id stops nothing twice")
	wait := fs.Bool("wait", true, "wait for and report the results")
	output := fs.String("output", "text", "text, or json: exactly one result event per line on stdout")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait for results")
	server := fs.String("server", "", "NATS server `URL`s (default $NATS_URL)")
	commands := fs.String("commands-stream", envOr("BCCSTOP_COMMANDS_STREAM", "BCCSTOP_COMMANDS"), "the workers' commands stream")
	results := fs.String("results-stream", envOr("BCCSTOP_RESULTS_STREAM", "BCCSTOP_RESULTS"), "the workers' results stream")
	fs.Usage = func() {
		fmt.Fprint(stdout, stopUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "bccstop stop: "+format+"\n", a...)
		return bulkstop.ExitUsage
	}
	if *output != "text" && *output != "json" {
		return usageErr("--output must be text or json, not %q", *output)
	}
	if *timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	if *region != "" && (&messages.StopCommand{InstanceID: "i-x", Region: *region}).Validate() != nil {
		return usageErr("--region %q is not a region name (lower-case letters, digits and '-')", *region)
	}
	if *batchID == "" {
		*batchID = bulkstop.NewBatchID(time.Now())
	} else if !bulkstop.ValidBatchID(*batchID) {
		return usageErr("--batch-id %q: use up to %d of A-Z a-z 0-9 _ = - . (not starting with '.')", *batchID, bulkstop.MaxBatchID)
	}

	var idSource io.Reader
	source := ""
	switch *file {
	case "":
	case "-":
		idSource, source = stdin, "stdin"
	default:
		f, err := os.Open(*file)
		if err != nil {
			return usageErr("--file: %v", err)
		}
		defer f.Close()
		idSource, source = f, *file
	}
	ids, err := bulkstop.ParseIDs(positional, idSource, source)
	if err != nil {
		return usageErr("%v", err)
	}

	natsCfg, err := config.LoadNATS()
	if err != nil {
		return usageErr("%v", err)
	}
	if *server != "" {
		natsCfg.URL = *server
	}
	nc, err := natsconn.Connect(natsCfg, natsconn.Options{Name: "bccstop stop " + *batchID})
	if err != nil {
		fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
		return bulkstop.ExitNATS
	}
	defer nc.Close()

	info := stdout
	if *output == "json" {
		info = stderr // stdout carries the events only
	}
	dup := ""
	if ids.Duplicates > 0 {
		dup = fmt.Sprintf(" (%d duplicate ids ignored)", ids.Duplicates)
	}
	fmt.Fprintf(info, "stopping %d instances%s, batch %s\n", len(ids.IDs), dup, *batchID)

	cmds := make([]messages.StopCommand, len(ids.IDs))
	for i, id := range ids.IDs {
		cmds[i] = messages.StopCommand{InstanceID: id, ForceStop: *force, StopWithNoCharge: *noCharge, Region: *region,
			CommandID: bulkstop.CommandID(*batchID, id)}
	}
	report, err := bulkstop.Run(ctx, nc, bulkstop.Options{
		Commands: cmds, BatchID: *batchID, Wait: *wait, Timeout: *timeout, MaxErrors: -1,
		CommandsStream: *commands, ResultsStream: *results,
		Progress: bulkstop.NewProgress(stderr, isTerminal(stderr), 2*time.Second),
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "bccstop stop: interrupted while publishing; run again with --batch-id %s to finish the job\n", *batchID)
			return bulkstop.ExitTimedOut
		}
		fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
		return bulkstop.ExitNATS
	}
	if !*wait {
		fmt.Fprintf(info, "published %d commands (%d already published before); not waiting for results\n", report.Total, report.Duplicates)
		return bulkstop.ExitOK
	}
	if *output == "json" {
		if err := report.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
			return exitFailure
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(info, "interrupted")
	} else if report.TimedOut {
		fmt.Fprintf(info, "timed out after %s\n", *timeout)
	}
	report.WriteSummary(info)
	return report.ExitCode()
}

// parseInterspersed parses flags wherever they appear among the ids, so
// "bccstop stop i-a i-b --force" works as a user expects.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
