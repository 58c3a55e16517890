package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/bccstop/bccstop/internal/bulkstop"
)

const schedulesUsage = `Usage: bccstop schedules [list] [--output json] [flags]
       bccstop schedules cancel ID… | --batch-id BATCH [flags]

Lists the stops scheduled with "bccstop stop --at" that have not fired yet
(when, which instance, batch, notAfter, reason), or cancels them: by command
id ("<batch>.<instance>"), or every one of a batch. A cancelled schedule
never fires. Needs NATS server 2.12 or later.

Exit status: 0, 1 when NATS cannot be read or schedules are not supported,
2 usage (cancel with nothing to cancel named).

` + natsConnectionHelp

func runSchedules(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	action := "list"
	if len(args) > 0 && (args[0] == "list" || args[0] == "cancel") {
		action, args = args[0], args[1:]
	}
	fs := newFlagSet("bccstop schedules "+action, schedulesUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	output := fs.String("output", "text", "`FORMAT`: text, or json: one schedule per line")
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
		return usagef(stderr, "bccstop schedules cancel", "name the schedules to cancel: command ids, or --batch-id")
	case *batch != "" && !bulkstop.ValidBatchID(*batch):
		return usagef(stderr, "bccstop schedules cancel", "--batch-id %q is not a batch id", *batch)
	}
	nc, err := nf.connect(ctx, "bccstop schedules")
	if err != nil {
		return failf(stderr, "bccstop schedules", err)
	}
	defer nc.Close()
	if action == "cancel" {
		n, err := bulkstop.CancelSchedules(ctx, nc, nf.commands, ids, *batch)
		if err != nil {
			return failf(stderr, "bccstop schedules cancel", err)
		}
		fmt.Fprintf(stdout, "cancelled %d scheduled stops\n", n)
		return exitOK
	}
	list, err := bulkstop.ListSchedules(ctx, nc, nf.commands)
	if err != nil {
		return failf(stderr, "bccstop schedules list", err)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		for _, s := range list {
			_ = enc.Encode(map[string]any{"commandId": s.CommandID, "instanceId": s.InstanceID, "batchId": s.BatchID,
				"at": s.At.UTC().Format(time.RFC3339), "notAfter": s.NotAfter, "reason": s.Reason, "requestedBy": s.RequestedBy,
				"waitUntilStopped": s.WaitUntilStopped})
		}
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no stops scheduled")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tINSTANCE\tBATCH\tNOT AFTER\tREQUESTED BY\tREASON")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.At.Local().Format(time.RFC3339), s.InstanceID, s.BatchID,
			orDash(s.NotAfter), orDash(s.RequestedBy), orDash(s.Reason))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d scheduled stops\n", len(list))
	return exitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
