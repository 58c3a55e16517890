package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/messages"
)

const stopUsage = `Usage: bccstop stop [flags] ID…
       bccstop stop [flags] --file FILE      (or --file - for stdin)
       bccstop stop [flags] --tag KEY[=VALUE]…

Publishes one stop command per instance on bcc.instance.stop and, unless
--wait=false, follows the result events until every command has one. On a
terminal a progress bar shows how far it got; otherwise a line is printed
every few seconds. At the end it prints a summary by outcome and a table of
every command that did not succeed.

Targets: ids from the arguments and/or a file (one per line; blank lines and
# comments are ignored), and/or every instance the BCC list API returns for
--tag filters (repeatable, ANDed: --tag env=staging --tag team; credentials
and endpoint as the worker's: BCE_*, BCC_ENDPOINT, BCC_ENDPOINTS with
--region). Duplicates are stopped once. Instances in
BCCSTOP_PROTECTED_INSTANCES are never targeted: they are shown as skipped.

--dry-run publishes nothing: it shows each target with what its command
would get now (stop; rejected: held; forbidden: not Running, as the tag
listing or, for ids named explicitly, the BCC batch describe says; failed:
no such instance; skipped: protected) and the command, and counts each. It
exits 0 when some command would stop an instance, 6 when none would.

Each command's identity is "<batch id>.<instance id>". Without --batch-id a
new batch id is made up and printed. Running the same job again with the
same --batch-id stops nothing twice and reports the earlier outcomes; a
re-run with other flags (--force added, say) is refused by the workers
(CommandIdConflict): use a new --batch-id for a new job.

Waves: --max-in-flight N keeps at most N commands without a result;
--max-errors N (or P%) stops publishing once more than that many commands
of this run ended failed or rejected; the rest are reported not-sent and
a re-run with the same --batch-id goes on where it stopped.

--output json (-o json) prints exactly one line per command on stdout and
nothing else there: its result event, or for a command without a result a
CloudEvent of the same shape whose data.outcome is no-result (published, no
result while it waited) or not-sent (not published), data.code and
data.message saying why. These two outcomes are the command line's own:
they never appear on the bus.

Nothing to stop (tags matching no instance, every target skipped) exits 6.
While the fleet is paused, stop says so at once, and publishes all the
same: the commands wait in the stream until it is resumed. A pause that
begins while stop waits (an operator's, or the blast-radius budget's) is
said when it happens, and so is a resume.

Scheduling: --at TIME (RFC 3339, or HH:MM for its next occurrence in local
time) stores the commands now for JetStream to deliver at TIME (NATS server
2.12 or later), each with a notAfter (default TIME + 1h, --not-after), and
exits; "bccstop schedules" lists and cancels them.

` + exitCodesHelp + "\n" + natsConnectionHelp

// tagFlags collects repeated --tag values.
type tagFlags []string

func (t *tagFlags) String() string     { return strings.Join(*t, " ") }
func (t *tagFlags) Set(v string) error { *t = append(*t, v); return nil }

func runStop(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop stop", stopUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	var tags tagFlags
	fs.Var(&tags, "tag", "target every instance with tag `KEY=VALUE` (or KEY, any value); repeatable, ANDed")
	file := fs.String("file", "", "read instance ids from `FILE`, one per line (- for stdin)")
	force := fs.Bool("force", false, "force stop (like pulling the power)")
	noCharge := fs.Bool("no-charge", false, "stop with no charge (stopWithNoCharge)")
	region := fs.String("region", "", "`REGION` of BCC_ENDPOINTS the workers (and the tag listing) should use (default: the default endpoint)")
	batchID := fs.String("batch-id", "", "`ID` of this job; re-running with the same id stops nothing twice")
	wait := fs.Bool("wait", true, "wait for and report the results")
	output := fs.String("output", "text", "`FORMAT`: text, or json: exactly one CloudEvent line per command on stdout (its result, or a no-result or not-sent line)")
	shorthand(fs.FlagSet, "o", "output")
	timeout := duration(fs.FlagSet, "timeout", 10*time.Minute, "wait at most `DURATION` for the results (90s, 30m, 1h)")
	dryRun := fs.Bool("dry-run", false, "resolve and show the targets and the commands; publish nothing")
	maxInFlight := fs.Int("max-in-flight", 0, "publish in waves: at most `N` commands without a result (0: all at once)")
	maxErrors := fs.String("max-errors", "", "error budget: stop publishing once more than `N` (or P%) commands failed or were rejected")
	at := fs.String("at", "", "schedule the stops for `TIME` (RFC 3339, or HH:MM local) instead of now")
	notAfter := fs.String("not-after", "", "do not act on the commands after `D|TIME` (a duration from now, or RFC 3339; with --at: from TIME, default 1h)")
	waitStopped := fs.Bool("wait-stopped", false, "each result only once its instance is Stopped (waitUntilStopped)")
	reason := fs.String("reason", "", "why the instances are stopped (`TEXT`, at most 512 characters; in every result and log line)")
	requestedBy := fs.String("requested-by", whoami(), "who asks (`NAME`, at most 128 characters)")
	maxTargets, maxTargetsSet := new(int), false
	fs.Func("max-targets", "refuse, publishing nothing, when more than `N` targets resolve (ids and tags together; 0: no cap); default $BCCSTOP_MAX_TARGETS, else no cap", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a count (0 for no cap)", v)
		}
		*maxTargets, maxTargetsSet = n, true
		return nil
	})
	positional, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "bccstop stop: "+format+"\n", a...)
		return bulkstop.ExitUsage
	}
	if err := checkOutput(*output); err != nil {
		return usageErr("%v", err)
	}
	switch {
	case *timeout <= 0:
		return usageErr("--timeout must be positive")
	case *maxInFlight < 0:
		return usageErr("--max-in-flight must not be negative")
	case *maxInFlight > 0 && !*wait:
		return usageErr("--max-in-flight needs --wait: a wave is sent once the results of the one before have come")
	case *at != "" && (*maxInFlight > 0 || *maxErrors != ""):
		return usageErr("--at schedules every command at once: it does not go with --max-in-flight or --max-errors")
	}
	if _, err := parseBudget(*maxErrors, 0); err != nil {
		return usageErr("--max-errors: %v", err)
	}
	if *region != "" && (&messages.StopCommand{InstanceID: "i-x", Region: *region}).Validate() != nil {
		return usageErr("--region %q is not a region name (lower-case letters, digits and '-')", *region)
	}
	if *batchID == "" {
		*batchID = bulkstop.NewBatchID(time.Now())
	} else if !bulkstop.ValidBatchID(*batchID) {
		return usageErr("--batch-id %q: use up to %d of A-Z a-z 0-9 _ = - . (not starting with '.')", *batchID, bulkstop.MaxBatchID)
	}
	now := time.Now()
	var atTime time.Time
	if *at != "" {
		if atTime, err = parseAt(*at, now); err != nil {
			return usageErr("--at: %v", err)
		}
	}
	deadline, err := parseNotAfter(*notAfter, now, atTime)
	if err != nil {
		return usageErr("--not-after: %v", err)
	}
	filters, err := bulkstop.ParseTagFilters(tags)
	if err != nil {
		return usageErr("%v", err)
	}
	command := func(id string) messages.StopCommand {
		return messages.StopCommand{InstanceID: id, ForceStop: *force, StopWithNoCharge: *noCharge, Region: *region,
			CommandID: bulkstop.CommandID(*batchID, id), NotAfter: deadline, WaitUntilStopped: *waitStopped,
			Reason: *reason, RequestedBy: *requestedBy}
	}
	// Every flag a command carries is checked before anything is listed
	// or said, with an instance id as long as any.
	if probe := command("i-" + strings.Repeat("x", 62)); probe.Validate() != nil {
		return usageErr("%v", probe.Validate())
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
	if len(ids.IDs) == 0 && len(filters) == 0 {
		return usageErr("no targets: give instance ids (as arguments, or one per line with --file), or --tag filters")
	}
	protected, err := config.LoadProtected()
	if err != nil {
		return usageErr("%v", err)
	}
	if !maxTargetsSet {
		if *maxTargets, err = config.LoadMaxTargets(); err != nil {
			return usageErr("%v", err)
		}
	}
	var (
		lister bulkstop.Lister
		api    *bcc.Client // for listing by tag, and describing in a dry run
	)
	if len(filters) > 0 {
		if api, err = newListClient(); err != nil {
			return usageErr("%v", err)
		}
		lister = api
	}
	// Connected before anything is listed or said, so that a bad NATS
	// context or an unreachable server is all a user sees of such a run.
	nc, err := nf.connect(ctx, "bccstop stop "+*batchID)
	if err != nil {
		if errors.As(err, &usageError{}) {
			return usageErr("%v", err)
		}
		fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
		return bulkstop.ExitNATS
	}
	defer nc.Close()
	res, err := bulkstop.ResolveTargets(ctx, lister, bulkstop.TargetQuery{IDs: ids.IDs, Tags: filters, Region: *region, Protected: protected})
	if err != nil {
		fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
		return bulkstop.ExitNATS
	}

	if len(res.Targets) == 0 {
		return nothingToStop(stderr, res, filters)
	}
	info := stdout
	if *output == "json" {
		info = stderr // stdout carries one line per command only
	}
	cmds := make([]messages.StopCommand, len(res.Targets))
	for i, t := range res.Targets {
		cmds[i] = command(t.ID)
		if err := cmds[i].Validate(); err != nil {
			return usageErr("%v", err)
		}
	}
	if *maxTargets > 0 && len(res.Targets) > *maxTargets {
		fmt.Fprintf(stderr, "bccstop stop: refusing: %s resolve (%s), more than the cap of %d (--max-targets, BCCSTOP_MAX_TARGETS); nothing was published\n",
			plural(len(res.Targets), "target", "targets"), foundText(res, ids.Duplicates, filters), *maxTargets)
		if len(filters) > 0 {
			fmt.Fprintf(stderr, "  the tags matched %s: %s\n", plural(res.FoundByTag, "instance", "instances"), tagFilterText(filters))
		}
		return bulkstop.ExitUsage
	}
	describeTargets(info, res, ids.Duplicates, filters, *batchID, *dryRun)
	if *maxTargets > 0 {
		fmt.Fprintf(info, "  %d of at most %s (--max-targets)\n", len(res.Targets), plural(*maxTargets, "target", "targets"))
	}
	budget, _ := parseBudget(*maxErrors, len(cmds)) // checked above

	var pausedAtStart *control.State
	if atTime.IsZero() {
		pausedAtStart = warnIfPaused(ctx, stderr, nc, &nf, len(cmds), *batchID, *wait && !*dryRun, *dryRun, *timeout)
	}
	if *dryRun {
		var d bulkstop.Describer
		if api != nil {
			d = api
		}
		return dryRunPlan(ctx, stdout, stderr, info, nc, &nf, d, *region, res, cmds, *output == "json")
	}

	if !atTime.IsZero() {
		rep, err := bulkstop.Schedule(ctx, nc, nf.streams(), *batchID, atTime, cmds, 15*time.Second)
		if err != nil {
			fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
			return bulkstop.ExitNATS
		}
		fmt.Fprintf(info, "scheduled %s for %s (not after %s), batch %s: %d stored", plural(len(cmds), "stop", "stops"),
			atTime.Local().Format(time.RFC3339), deadline, *batchID, rep.Stored)
		if rep.Duplicates > 0 {
			fmt.Fprintf(info, " (%d asked for before)", rep.Duplicates)
		}
		if rep.Pending > 0 {
			fmt.Fprintf(info, ", %d waiting for a worker to check %s", rep.Pending, pick(rep.Pending, "it", "them"))
		}
		fmt.Fprintln(info)
		for _, ev := range rep.Refused {
			fmt.Fprintf(info, "  refused %s: %s %s\n", ev.Data.CommandID, ev.Data.Code, oneLineMessage(ev.Data.Message))
		}
		fmt.Fprintf(info, "  list them:   bccstop schedules list\n  cancel them: bccstop schedules cancel --batch-id %s\n", *batchID)
		if *output == "json" {
			if err := rep.WriteJSON(stdout, *batchID, atTime, cmds); err != nil {
				fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
				return exitFailure
			}
		}
		if len(rep.Refused) > 0 {
			return bulkstop.ExitFailed
		}
		return bulkstop.ExitOK
	}

	opts := bulkstop.Options{
		Commands: cmds, BatchID: *batchID, Wait: *wait, Timeout: *timeout, MaxInFlight: *maxInFlight, MaxErrors: budget,
		CommandsStream: nf.commands, ResultsStream: nf.results, LedgerBucket: nf.ledger,
		Progress: bulkstop.NewProgress(stderr, isTerminal(stderr), 2*time.Second),
	}
	var fleet *fleetWatch
	watchCtx, stopWatch := context.WithCancel(ctx)
	if js, err := jetstream.New(nc); err == nil && *wait {
		// A pause that begins while this waits (an operator's, or the
		// blast-radius budget's) is said when it happens.
		fleet = watchFleet(watchCtx, stderr, js, nf.target(), pausedAtStart, !isTerminal(stderr))
		opts.Fleet = fleet.note
	}
	report, err := bulkstop.Run(ctx, nc, opts)
	stopWatch() // nothing more is said once the run is over
	if err != nil {
		fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
		return exitFailure
	}
	if *output == "json" {
		if err := report.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
			return exitFailure
		}
	}
	switch {
	case report.Err != nil:
		fmt.Fprintf(stderr, "bccstop stop: %v\n", report.Err)
	case report.Interrupted:
		fmt.Fprintln(info, "interrupted")
	case report.TimedOut:
		fmt.Fprintf(info, "timed out after %s\n", *timeout)
	}
	if !*wait && report.Err == nil && !report.Interrupted {
		fmt.Fprintf(info, "published %s (%d already published before); not waiting for results\n", plural(report.Total, "command", "commands"), report.Duplicates)
		return report.ExitCode()
	}
	report.WriteSummary(info)
	if st := fleet.paused(); st != nil && report.TimedOut {
		fmt.Fprintf(info, "The fleet is PAUSED, %s: the commands without a result wait for it to be resumed (bccstop resume).\n", pauseTerms(st))
	}
	return report.ExitCode()
}

// plural writes n with the word for one or for several.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// pick is one when n is 1, else many.
func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// oneLineMessage cuts a result's message to one short line.
func oneLineMessage(s string) string {
	return shorten(strings.ReplaceAll(s, "\n", " "), 160)
}

// shorten cuts s to at most n characters, the last of them "…" when cut
// (never inside a character).
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// tagFilterText writes filters as --tag takes them.
func tagFilterText(filters []bcc.Tag) string {
	parts := make([]string, len(filters))
	for i, f := range filters {
		parts[i] = "--tag " + f.String()
	}
	return strings.Join(parts, " ")
}

// describeTargets says what was found and what is skipped (in a dry run
// the plan shows the skipped).
func describeTargets(w io.Writer, res bulkstop.Resolution, duplicates int, filters []bcc.Tag, batch string, dryRun bool) {
	if dryRun {
		fmt.Fprintf(w, "dry run for %s (%s), batch %s\n", plural(len(res.Targets), "instance", "instances"), foundText(res, duplicates, filters), batch)
		return
	}
	fmt.Fprintf(w, "stopping %s (%s), batch %s\n", plural(len(res.Targets), "instance", "instances"), foundText(res, duplicates, filters), batch)
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "  skipped %s (%s): %s\n", s.ID, s.Reason, s.Detail)
	}
}

// nothingToStop says why no instance is targeted, and returns exitNothing.
func nothingToStop(w io.Writer, res bulkstop.Resolution, filters []bcc.Tag) int {
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "  skipped %s (%s): %s\n", s.ID, s.Reason, s.Detail)
	}
	switch n := len(res.Skipped); {
	case n == 0:
		fmt.Fprintf(w, "bccstop stop: nothing to stop: no instance carries %s (the list API returned none)\n", tagFilterText(filters))
	case n == 1:
		fmt.Fprintln(w, "bccstop stop: nothing to stop: the 1 instance found is skipped")
	default:
		fmt.Fprintf(w, "bccstop stop: nothing to stop: all %d instances found are skipped\n", n)
	}
	return exitNothing
}

// dryRunPlan shows what each target's command would get (bulkstop.Forecast:
// the holds read from NATS, the status of the ids named explicitly
// described with the BCC API when there are credentials) and counts it;
// it exits 0 when some command would stop an instance, 6 when none would.
func dryRunPlan(ctx context.Context, stdout, stderr, info io.Writer, nc *nats.Conn, nf *natsFlags, d bulkstop.Describer, region string,
	res bulkstop.Resolution, cmds []messages.StopCommand, asJSON bool) int {
	js, err := jetstream.New(nc)
	if err != nil {
		return nf.fail(stderr, "bccstop stop", err)
	}
	holds, err := guard.ListHolds(ctx, js)
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nf.fail(stderr, "bccstop stop", fmt.Errorf("the dry run reads the holds: %w", err))
	}
	if d == nil {
		if api, err := newListClient(); err != nil {
			fmt.Fprintf(stderr, "bccstop stop: status not checked: %v\n", err)
		} else {
			d = api
		}
	}
	expect, err := bulkstop.Forecast(ctx, d, region, res, holds)
	if err != nil {
		fmt.Fprintf(stderr, "bccstop stop: the dry run describes the instances named: %v\n", err)
		return exitNATS
	}
	if err := bulkstop.WritePlan(stdout, res, expect, cmds, asJSON); err != nil {
		fmt.Fprintf(stderr, "bccstop stop: %v\n", err)
		return exitFailure
	}
	line, wouldStop := bulkstop.PlanSummary(res, expect)
	fmt.Fprintln(info, line)
	if wouldStop == 0 {
		return exitNothing
	}
	return exitOK
}

// warnIfPaused says, before anything is published, that the fleet is
// paused: the commands are published all the same and wait for it.
func warnIfPaused(ctx context.Context, w io.Writer, nc *nats.Conn, nf *natsFlags, n int, batch string, wait, dryRun bool, timeout time.Duration) *control.State {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := control.ReadPause(ctx, js, nf.target())
	if err != nil {
		return nil // no worker has run yet
	}
	if !st.Paused {
		return st
	}
	fmt.Fprintf(w, "bccstop stop: the fleet is PAUSED, %s\n", pauseTerms(st))
	if dryRun {
		fmt.Fprintln(w, "  a stop now would be published all the same and wait in the stream until the fleet is resumed (bccstop resume)")
		return st
	}
	fmt.Fprintf(w, "  %s published all the same and %s in the stream, nothing is lost: the workers take %s once the fleet is resumed (bccstop resume)\n",
		pick(n, "the command is", "the commands are"), pick(n, "waits", "wait"), pick(n, "it", "them"))
	if wait && (st.PausedUntil.IsZero() || time.Until(st.PausedUntil) > timeout) {
		fmt.Fprintf(w, "  the wait for %s (--timeout %s) may end first: run again with --batch-id %s later to collect %s\n",
			pick(n, "its result", "their results"), timeout, batch, pick(n, "it", "them"))
	}
	return st
}

// pauseTerms says whose pause holds the fleet, since when, until when and why.
func pauseTerms(st *control.State) string {
	var terms []string
	if st.By != "" {
		terms = append(terms, "by "+printableField(st.By))
	}
	if !st.Since.IsZero() {
		terms = append(terms, "since "+st.Since.Local().Format(time.RFC3339))
	}
	if st.PausedUntil.IsZero() {
		terms = append(terms, "until resumed")
	} else {
		terms = append(terms, fmt.Sprintf("until %s (in %s)", st.PausedUntil.Local().Format(time.RFC3339), time.Until(st.PausedUntil).Round(time.Second)))
	}
	text := strings.Join(terms, ", ")
	if st.Reason != "" {
		text += ": " + strconv.Quote(printableField(st.Reason))
	}
	return text
}

// foundText says how the targets were found.
func foundText(res bulkstop.Resolution, duplicates int, filters []bcc.Tag) string {
	var found []string
	if res.FoundByID > 0 {
		found = append(found, fmt.Sprintf("%d by id", res.FoundByID))
	}
	if len(filters) > 0 {
		found = append(found, fmt.Sprintf("%d by tag", res.FoundByTag))
	}
	if res.FoundByBoth > 0 {
		found = append(found, fmt.Sprintf("%d both ways", res.FoundByBoth))
	}
	if duplicates > 0 {
		found = append(found, plural(duplicates, "duplicate id", "duplicate ids")+" ignored")
	}
	return strings.Join(found, ", ")
}

// newListClient is the BCC client the tag listing uses: the worker's
// credentials and endpoints.
func newListClient() (*bcc.Client, error) {
	cfg, err := config.LoadAPI()
	if err != nil {
		return nil, err
	}
	return bcc.New(bcc.Options{
		Endpoint: cfg.Endpoint, Regions: cfg.Endpoints, Timeout: 30 * time.Second,
		Credentials: bce.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey.Reveal(), SessionToken: cfg.SessionToken.Reveal()},
	})
}

// parseAt reads --at: RFC 3339, or HH:MM for its next occurrence in local time.
func parseAt(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("%s is not in the future", v)
		}
		return t, nil
	}
	hm, err := time.ParseInLocation("15:04", v, now.Location())
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-29T18:00:00Z) nor HH:MM", v)
	}
	t := time.Date(now.Year(), now.Month(), now.Day(), hm.Hour(), hm.Minute(), 0, 0, now.Location())
	if !t.After(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// parseNotAfter reads --not-after: a duration (from --at's time, or from
// now) or an RFC 3339 time. With --at and no --not-after, TIME + 1h.
func parseNotAfter(v string, now, at time.Time) (string, error) {
	base := now
	if !at.IsZero() {
		base = at
		if v == "" {
			v = "1h"
		}
	}
	if v == "" {
		return "", nil
	}
	var t time.Time
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return "", fmt.Errorf("%s is not positive", v)
		}
		t = base.Add(d)
	} else if t, err = time.Parse(time.RFC3339, v); err != nil {
		return "", fmt.Errorf("%q is neither a duration (1h) nor an RFC 3339 time", v)
	}
	if !t.After(base) {
		return "", fmt.Errorf("%s is not after %s", t.Format(time.RFC3339), base.Format(time.RFC3339))
	}
	return t.UTC().Format(time.RFC3339), nil
}

// parseBudget reads --max-errors: N, or P% of total (rounded down);
// "" means no budget (-1).
func parseBudget(v string, total int) (int, error) {
	if v == "" {
		return -1, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
			return 0, fmt.Errorf("%q is not a percentage from 0%% to 100%%", v)
		}
		return int(f / 100 * float64(total)), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a count (5) or a percentage (10%%)", v)
	}
	return n, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
