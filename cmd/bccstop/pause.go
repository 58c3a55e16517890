package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/natsconn"
	"github.com/bccstop/bccstop/messages"
)

const pauseUsage = `Usage: bccstop pause [--for DURATION] [--reason TEXT] [--force] [flags]

Pauses every worker at once: the durable consumer they share is paused
(JetStream consumer pause, NATS server 2.11 or later), so no worker takes a
command; commands wait in the stream and nothing is lost. Commands already
being handled finish. With --for the fleet resumes by itself when the time
is up; without it, only "bccstop resume" resumes it. The reason, who paused
and when are recorded (see "bccstop status"), and the workers announce the
pause with a CloudEvent on bcc.instance.stop.control.paused.

A pause never silently replaces another: while the fleet is paused, pause
says whose pause holds, why and until when, and changes nothing (exit 7);
--force changes the terms of the pause in force (announced as a paused
event with the new terms; the pause goes on, so no resumed event).

` + exitCodesHelp + "\n" + natsConnectionHelp

const resumeUsage = `Usage: bccstop resume [--reason TEXT] [flags]

Resumes the workers paused with "bccstop pause" (or by the blast-radius
budget). The workers announce it with a CloudEvent on
bcc.instance.stop.control.resumed: exactly one per pause, whether it is
resumed by hand or runs out. While the fleet runs, resume changes nothing
and publishes nothing (exit 6).

` + exitCodesHelp + "\n" + natsConnectionHelp

const statusUsage = `Usage: bccstop status [--since DURATION] [--output json] [flags]

Shows where the fleet stands: paused or not (until when, why, by whom),
commands waiting in the stream, in flight (delivered, not yet acknowledged:
being handled, waiting for a retry, or waiting for an instance to be
Stopped), how many of those were delivered more than once, the pull requests
the workers have open, and the outcomes stored over the last --since.
--output json prints one JSON object for scripts.

` + exitCodesHelp + "\n" + natsConnectionHelp

func runPause(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop pause", pauseUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	forD := duration(fs.FlagSet, "for", 0, "resume by itself after `DURATION` (for example 90s, 30m, 1h); default: until bccstop resume")
	reason := fs.String("reason", "", "why the fleet is paused (`TEXT`, recorded and in the event)")
	by := fs.String("requested-by", whoami(), "who pauses (`NAME`)")
	force := fs.Bool("force", false, "change the terms of a pause already in force (otherwise pause refuses, saying whose it is)")
	output := fs.String("output", "text", "`FORMAT`: text, or json: the state after the pause")
	shorthand(fs.FlagSet, "o", "output")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	if *forD < 0 {
		return usagef(stderr, "bccstop pause", "--for must be positive")
	}
	if err := checkOutput(*output); err != nil {
		return usagef(stderr, "bccstop pause", "%v", err)
	}
	var until time.Time
	if *forD > 0 {
		until = time.Now().Add(*forD)
	}
	nc, err := nf.connect(ctx, "bccstop pause")
	if err != nil {
		return nf.fail(stderr, "bccstop pause", err)
	}
	defer nc.Close()
	ctx, cancel := nf.failFast(ctx)
	defer cancel()
	st, err := control.Pause(ctx, nc, nf.target(), control.PauseRequest{Until: until, Reason: *reason, By: *by, Force: *force})
	var already *control.AlreadyPausedError
	if errors.As(err, &already) {
		fmt.Fprintf(stderr, "bccstop pause: %v\n", err)
		return exitRefused
	}
	if err != nil {
		return nf.fail(stderr, "bccstop pause", err)
	}
	return printState(stdout, stderr, st, *output)
}

func runResume(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop resume", resumeUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	reason := fs.String("reason", "", "why the fleet is resumed (`TEXT`, in the event)")
	by := fs.String("requested-by", whoami(), "who resumes (`NAME`)")
	output := fs.String("output", "text", "`FORMAT`: text, or json: the state after resuming")
	shorthand(fs.FlagSet, "o", "output")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	if err := checkOutput(*output); err != nil {
		return usagef(stderr, "bccstop resume", "%v", err)
	}
	nc, err := nf.connect(ctx, "bccstop resume")
	if err != nil {
		return nf.fail(stderr, "bccstop resume", err)
	}
	defer nc.Close()
	ctx, cancel := nf.failFast(ctx)
	defer cancel()
	st, err := control.Resume(ctx, nc, nf.target(), *reason, *by)
	if errors.Is(err, control.ErrNotPaused) {
		fmt.Fprintf(stderr, "bccstop resume: %v\n", err)
		return exitNothing
	}
	if err != nil {
		return nf.fail(stderr, "bccstop resume", err)
	}
	return printState(stdout, stderr, st, *output)
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop status", statusUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	since := duration(fs.FlagSet, "since", time.Hour, "count the outcomes stored over the last `DURATION` (0 to skip)")
	output := fs.String("output", "text", "`FORMAT`: text, or json: one JSON object")
	shorthand(fs.FlagSet, "o", "output")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	if *since < 0 {
		return usagef(stderr, "bccstop status", "--since must not be negative")
	}
	if err := checkOutput(*output); err != nil {
		return usagef(stderr, "bccstop status", "%v", err)
	}
	nc, err := nf.connect(ctx, "bccstop status")
	if err != nil {
		return nf.fail(stderr, "bccstop status", err)
	}
	defer nc.Close()
	st, err := control.Status(ctx, nc, nf.target(), *since)
	if err != nil {
		return nf.fail(stderr, "bccstop status", err)
	}
	return printState(stdout, stderr, st, *output)
}

// stateJSON is `bccstop status --output json`.
type stateJSON struct {
	Stream       string         `json:"stream"`
	Consumer     string         `json:"consumer"`
	Paused       bool           `json:"paused"`
	PausedUntil  string         `json:"pausedUntil,omitempty"`
	PauseReason  string         `json:"pauseReason,omitempty"`
	PausedBy     string         `json:"pausedBy,omitempty"`
	PausedSince  string         `json:"pausedSince,omitempty"`
	Waiting      int            `json:"waiting"`
	InFlight     int            `json:"inFlight"`
	Redelivered  int            `json:"redelivered"`
	PullRequests int            `json:"pullRequests"`
	Window       string         `json:"window,omitempty"`
	Outcomes     map[string]int `json:"outcomes,omitempty"`
	// Budget is BCCSTOP_MAX_STOPS as the workers run it ("" for none);
	// BudgetUsed the stops counted in its window; BudgetLeft what is left.
	Budget     string           `json:"budget"`
	BudgetUsed int              `json:"budgetUsed"`
	BudgetLeft int              `json:"budgetLeft"`
	PauseID    string           `json:"pauseId,omitempty"`
	Automatic  bool             `json:"pauseAutomatic,omitempty"`
	Holds      []map[string]any `json:"holds"`
	// LegacyLeft counts the commands left in the retired stream of an
	// earlier release (-1: none).
	LegacyLeft int `json:"legacyLeft"`
}

func printState(stdout, stderr io.Writer, st *control.State, output string) int {
	if output == "json" {
		j := stateJSON{Stream: st.Stream, Consumer: st.Consumer, Paused: st.Paused, PauseReason: st.Reason, PausedBy: st.By,
			Waiting: st.Waiting, InFlight: st.InFlight, Redelivered: st.Redelivered, PullRequests: st.PullRequests,
			Budget: st.Budget, BudgetUsed: st.BudgetUsed, Holds: []map[string]any{}, LegacyLeft: st.LegacyLeft}
		if n, ok := budgetLimit(st.Budget); ok {
			j.BudgetLeft = max(0, n-st.BudgetUsed)
		}
		if st.Span != nil {
			j.PauseID, j.Automatic = st.Span.ID, st.Span.Automatic
		}
		for _, h := range st.Holds {
			j.Holds = append(j.Holds, holdJSON(h))
		}
		if !st.PausedUntil.IsZero() {
			j.PausedUntil = st.PausedUntil.UTC().Format(time.RFC3339)
		}
		if !st.Since.IsZero() {
			j.PausedSince = st.Since.UTC().Format(time.RFC3339)
		}
		if st.Window > 0 {
			j.Window = shortDuration(st.Window)
			j.Outcomes = map[string]int{}
			for _, o := range messages.Outcomes {
				j.Outcomes[string(o)] = st.Outcomes[o]
			}
		}
		if err := json.NewEncoder(stdout).Encode(j); err != nil {
			fmt.Fprintf(stderr, "bccstop: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	switch {
	case !st.Paused:
		fmt.Fprintf(stdout, "consumer %s on %s: running\n", st.Consumer, st.Stream)
	case st.PausedUntil.IsZero():
		fmt.Fprintf(stdout, "consumer %s on %s: PAUSED until resumed (bccstop resume)\n", st.Consumer, st.Stream)
	default:
		fmt.Fprintf(stdout, "consumer %s on %s: PAUSED until %s (in %s)\n", st.Consumer, st.Stream,
			st.PausedUntil.Local().Format(time.RFC3339), time.Until(st.PausedUntil).Round(time.Second))
	}
	if st.Paused {
		var why []string
		if st.Reason != "" {
			why = append(why, "reason: "+st.Reason)
		}
		if st.By != "" {
			why = append(why, "by "+st.By)
		}
		if !st.Since.IsZero() {
			why = append(why, "since "+st.Since.Local().Format(time.RFC3339))
		}
		if len(why) > 0 {
			fmt.Fprintf(stdout, "  %s\n", strings.Join(why, ", "))
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "commands waiting\t%d\tin the stream, not yet taken by a worker\n", st.Waiting)
	fmt.Fprintf(tw, "in flight\t%d\tbeing handled, waiting for a retry, or waiting for Stopped\n", st.InFlight)
	fmt.Fprintf(tw, "  delivered again\t%d\tof those, delivered more than once (retries, waits)\n", st.Redelivered)
	fmt.Fprintf(tw, "pull requests open\t%d\tfrom the workers (0: no worker is running; while paused they get nothing)\n", st.PullRequests)
	tw.Flush()
	if st.Window > 0 {
		fmt.Fprintf(stdout, "outcomes in the last %s: %d succeeded · %d forbidden · %d failed · %d rejected\n", shortDuration(st.Window),
			st.Outcomes[messages.Succeeded], st.Outcomes[messages.Forbidden], st.Outcomes[messages.Failed], st.Outcomes[messages.Rejected])
	}
	if n, ok := budgetLimit(st.Budget); ok {
		left := max(0, n-st.BudgetUsed)
		_, window, _ := strings.Cut(st.Budget, "/")
		fmt.Fprintf(stdout, "blast-radius budget %s: %d used, %d left in the last %s", st.Budget, st.BudgetUsed, left, window)
		if left == 0 {
			fmt.Fprint(stdout, " (the next stop call pauses the fleet again)")
		}
		fmt.Fprintln(stdout)
	} else {
		fmt.Fprintln(stdout, "blast-radius budget: none (BCCSTOP_MAX_STOPS is not set)")
	}
	if len(st.Holds) > 0 {
		fmt.Fprintf(stdout, "holds:\n")
		writeHolds(stdout, st.Holds)
	}
	if st.LegacyLeft > 0 {
		fmt.Fprintf(stdout, "the retired commands stream of an earlier release still holds %s; the workers drain it\n", plural(st.LegacyLeft, "command", "commands"))
	} else if st.LegacyLeft == 0 {
		fmt.Fprintln(stdout, "the retired commands stream of an earlier release is drained: remove it once no old worker runs (docs/operations.md, Upgrading)")
	}
	return exitOK
}

// budgetLimit reads N of a budget "N/DURATION".
func budgetLimit(spec string) (int, bool) {
	n, _, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(n)
	return v, err == nil
}

// shortDuration writes 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func usagef(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, cmd+": "+format+"\n", a...)
	return exitUsage
}

// failf reports err: a usage error exits 2, NATS unreachable 5, anything
// else 1.
func failf(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
	var unreachable *natsconn.UnreachableError
	switch {
	case errors.As(err, &usageError{}):
		return exitUsage
	case errors.As(err, &unreachable):
		return exitNATS
	}
	return exitFailure
}
