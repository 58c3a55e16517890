package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/messages"
)

const schedulesUsage = `Usage: bccstop schedules [list] [--output json] [flags]
       bccstop schedules cancel ID… | --batch-id BATCH [flags]

Lists the stops scheduled with "bccstop stop --at" that have not fired yet:
for each its id (the one cancel takes), state (scheduled; pending: no
worker has checked the request yet; legacy: left by an earlier release, to
be carried over or refused), pattern, target, time, instance, batch,
notAfter, who asked and why. Or cancels them: by id ("<batch>.<instance>"
for bccstop stop --at), or every schedule of one batch with --batch-id.
Cancel matches exactly: an id, or a batch id alone, never a prefix or a
wildcard (--batch-id evening does not touch evening.eu). A cancelled
schedule never fires. When nothing named matched, it says so and exits 6.
Needs NATS server 2.12 or later.

` + exitCodesHelp + "\n" + natsConnectionHelp

func runSchedules(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	action := "list"
	if len(args) > 0 && (args[0] == "list" || args[0] == "cancel") {
		action, args = args[0], args[1:]
	} else if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return unknownWord(stderr, "bccstop schedules", "action", args[0], []string{"list", "cancel"}, "bccstop help schedules")
	}
	fs := newFlagSet("bccstop schedules "+action, schedulesUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	output := fs.String("output", "text", "`FORMAT`: text, or json: one schedule per line")
	shorthand(fs.FlagSet, "o", "output")
	batch := fs.String("batch-id", "", "with cancel: cancel every schedule of `BATCH`")
	ids, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	if err := checkOutput(*output); err != nil {
		return usagef(stderr, "bccstop schedules", "%v", err)
	}
	switch {
	case action == "list" && (len(ids) > 0 || *batch != ""):
		return usagef(stderr, "bccstop schedules list", "takes no ids or --batch-id (did you mean cancel?)")
	case action == "cancel" && len(ids) == 0 && *batch == "":
		return usagef(stderr, "bccstop schedules cancel", "name the schedules to cancel: their ids (bccstop schedules list shows them), or --batch-id")
	case *batch != "" && !bulkstop.ValidBatchID(*batch):
		return usagef(stderr, "bccstop schedules cancel", "--batch-id %q is not a batch id: up to %d of A-Z a-z 0-9 _ = - and '.' between words", *batch, bulkstop.MaxBatchID)
	}
	for _, id := range ids {
		if !messages.ValidScheduleID(id) {
			return usagef(stderr, "bccstop schedules cancel", "%q is not a schedule id: up to %d of A-Z a-z 0-9 _ = - and '.' between words, as bccstop schedules list shows them (no wildcards)",
				id, messages.MaxScheduleID)
		}
	}
	nc, err := nf.connect(ctx, "bccstop schedules")
	if err != nil {
		return nf.fail(stderr, "bccstop schedules", err)
	}
	defer nc.Close()
	if action == "cancel" {
		ctx, cancel := nf.failFast(ctx)
		defer cancel()
		rep, err := bulkstop.CancelSchedules(ctx, nc, nf.streams(), ids, *batch)
		if err != nil {
			return nf.fail(stderr, "bccstop schedules cancel", err)
		}
		if len(rep.Cancelled) > 0 {
			fmt.Fprintf(stdout, "cancelled %s: %s\n", plural(len(rep.Cancelled), "scheduled stop", "scheduled stops"), strings.Join(rep.Cancelled, ", "))
		}
		for _, id := range rep.Pending {
			fmt.Fprintf(stderr, "bccstop schedules cancel: %s is a request no worker has checked yet; it cannot be removed until one stores it: cancel it then\n", id)
		}
		if len(rep.NotFound) > 0 {
			fmt.Fprintf(stderr, "bccstop schedules cancel: nothing scheduled matches %s\n", strings.Join(rep.NotFound, ", "))
		}
		if len(rep.Cancelled) == 0 || len(rep.NotFound) > 0 || len(rep.Pending) > 0 {
			if len(rep.Cancelled) == 0 {
				fmt.Fprintln(stderr, "bccstop schedules cancel: cancelled nothing")
			}
			return exitNothing
		}
		return exitOK
	}
	list, err := bulkstop.ListSchedules(ctx, nc, nf.streams())
	if err != nil {
		return nf.fail(stderr, "bccstop schedules list", err)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		for _, s := range list {
			at := ""
			if !s.At.IsZero() {
				at = s.At.UTC().Format(time.RFC3339)
			}
			_ = enc.Encode(map[string]any{"id": s.ID, "state": s.State, "pattern": s.Pattern, "target": s.Target,
				"commandId": s.CommandID, "instanceId": s.InstanceID, "batchId": s.BatchID,
				"at": at, "notAfter": s.NotAfter, "reason": s.Reason, "requestedBy": s.RequestedBy,
				"waitUntilStopped": s.WaitUntilStopped})
		}
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no stops scheduled")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPATTERN\tTARGET\tINSTANCE\tBATCH\tNOT AFTER\tREQUESTED BY\tREASON")
	for _, s := range list {
		pattern := s.Pattern
		if !s.At.IsZero() {
			pattern = messages.ScheduleOneShotPrefix + s.At.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State, orDash(printableField(pattern)), orDash(printableField(s.Target)),
			orDash(s.InstanceID), orDash(s.BatchID), orDash(s.NotAfter), orDash(printableField(s.RequestedBy)), orDash(printableField(s.Reason)))
	}
	tw.Flush()
	fmt.Fprintln(stdout, plural(len(list), "scheduled stop", "scheduled stops"))
	return exitOK
}

// printableField makes text from the bus safe to print in a table.
func printableField(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
