package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/messages"
)

const holdUsage = `Usage: bccstop hold ID… --for DURATION --reason TEXT [--force] [flags]

Holds instances for a while: until the hold ends, every command for them is
rejected, InstanceHeld, on every worker, within a second of hold returning;
the result's message says who holds the instance, why and until when. Holds
end by themselves (at most 90 days); "bccstop release" ends them early. The
static BCCSTOP_PROTECTED_INSTANCES stays for instances never to stop. Each
change is announced by the workers as a control event (held, released).

An instance held by someone else is not silently shortened or replaced:
hold says whose hold it is and changes nothing (exit 7); --force replaces it.
Your own hold is changed (extended or shortened) by holding again.

` + exitCodesHelp + "\n" + natsConnectionHelp

const holdsUsage = `Usage: bccstop holds [--output json] [flags]

Lists the holds in force: instance, until when, who, why, since when.
--output json prints one hold per line.

` + exitCodesHelp + "\n" + natsConnectionHelp

const releaseUsage = `Usage: bccstop release ID… [flags]

Ends the holds of the instances given, now. An instance that is not held is
named and the exit status is 6 (the others are released all the same).

` + exitCodesHelp + "\n" + natsConnectionHelp

func runHold(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop hold", holdUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	forD := duration(fs.FlagSet, "for", 0, "how long the hold lasts (`DURATION`, for example 90m, 8h; at most 90 days)")
	reason := fs.String("reason", "", "why the instances are held (`TEXT`: a ticket, a change window; required)")
	by := fs.String("requested-by", whoami(), "who holds them (`NAME`)")
	force := fs.Bool("force", false, "replace a hold someone else placed")
	ids, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	switch {
	case len(ids) == 0:
		return usagef(stderr, "bccstop hold", "name the instances to hold (i-…)")
	case *forD <= 0:
		return usagef(stderr, "bccstop hold", "--for is required: how long the hold lasts, for example 90m or 8h")
	case *forD > guard.MaxHoldDuration:
		return usagef(stderr, "bccstop hold", "--for %s is longer than %s; for an instance never to stop, use BCCSTOP_PROTECTED_INSTANCES", *forD, guard.MaxHoldDuration)
	case strings.TrimSpace(*reason) == "":
		return usagef(stderr, "bccstop hold", "--reason is required: who reads the rejection should learn why")
	}
	if bad := badInstanceIDs(ids); bad != "" {
		return usagef(stderr, "bccstop hold", "%s", bad)
	}
	js, nc, code := nf.jetStream(ctx, "bccstop hold", stderr)
	if js == nil {
		return code
	}
	defer nc.Close()
	ctx, cancel := nf.failFast(ctx)
	defer cancel()
	until := time.Now().Add(*forD)
	held, err := guard.PutHolds(ctx, js, ids, until, *reason, *by, *force)
	if errors.Is(err, guard.ErrHeld) {
		fmt.Fprintf(stderr, "bccstop hold: %v\n  nothing was changed; --force replaces another's hold\n", err)
		return exitRefused
	}
	if errors.Is(err, guard.ErrInvalidHold) {
		return usagef(stderr, "bccstop hold", "%v", err)
	}
	if err != nil {
		return nf.fail(stderr, "bccstop hold", err)
	}
	fmt.Fprintf(stdout, "held %s until %s: %s\n", plural(len(held), "instance", "instances"), until.Local().Format(time.RFC3339), strings.Join(ids, ", "))
	for _, h := range held {
		if r := h.Replaced; r != nil {
			fmt.Fprintf(stdout, "  %s: replaces the hold by %s until %s (%q)%s\n", h.InstanceID, r.By, r.Until.Local().Format(time.RFC3339), r.Reason, holdChange(r.Until, h.Until))
		}
	}
	return exitOK
}

func runHolds(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop holds", holdsUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	output := fs.String("output", "text", "`FORMAT`: text, or json: one hold per line")
	shorthand(fs.FlagSet, "o", "output")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	if err := checkOutput(*output); err != nil {
		return usagef(stderr, "bccstop holds", "%v", err)
	}
	js, nc, code := nf.jetStream(ctx, "bccstop holds", stderr)
	if js == nil {
		return code
	}
	defer nc.Close()
	holds, err := guard.ListHolds(ctx, js)
	if err != nil {
		return nf.fail(stderr, "bccstop holds", err)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		for _, h := range holds {
			_ = enc.Encode(holdJSON(h))
		}
		return exitOK
	}
	writeHolds(stdout, holds)
	return exitOK
}

// holdJSON is one hold as --output json writes it.
func holdJSON(h guard.Hold) map[string]any {
	return map[string]any{"instanceId": h.InstanceID, "until": h.Until.UTC().Format(time.RFC3339), "reason": h.Reason, "by": h.By,
		"since": h.Since.UTC().Format(time.RFC3339), "unreadable": h.Unreadable}
}

// writeHolds writes the holds as a table.
func writeHolds(w io.Writer, holds []guard.Hold) {
	if len(holds) == 0 {
		fmt.Fprintln(w, "no instance is held")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tUNTIL\tBY\tREASON\tSINCE")
	for _, h := range holds {
		reason := printableField(h.Reason)
		if h.Unreadable != "" {
			reason = "(" + printableField(h.Unreadable) + ") " + reason
		}
		fmt.Fprintf(tw, "%s\t%s (in %s)\t%s\t%s\t%s\n", h.InstanceID, h.Until.Local().Format(time.RFC3339), time.Until(h.Until).Round(time.Second),
			orDash(printableField(h.By)), orDash(reason), h.Since.Local().Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintln(w, plural(len(holds), "instance held", "instances held"))
}

func runRelease(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop release", releaseUsage, stdout, stderr)
	var nf natsFlags
	nf.register(fs.FlagSet)
	ids, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	if len(ids) == 0 {
		return usagef(stderr, "bccstop release", "name the instances to release (bccstop holds lists the holds)")
	}
	if bad := badInstanceIDs(ids); bad != "" {
		return usagef(stderr, "bccstop release", "%s", bad)
	}
	js, nc, code := nf.jetStream(ctx, "bccstop release", stderr)
	if js == nil {
		return code
	}
	defer nc.Close()
	ctx, cancel := nf.failFast(ctx)
	defer cancel()
	notHeld, err := guard.ReleaseHolds(ctx, js, ids)
	if err != nil {
		return nf.fail(stderr, "bccstop release", err)
	}
	released := len(ids) - len(notHeld)
	if released > 0 {
		fmt.Fprintf(stdout, "released %s\n", plural(released, "instance", "instances"))
	}
	if len(notHeld) > 0 {
		fmt.Fprintf(stderr, "bccstop release: not held: %s\n", strings.Join(notHeld, ", "))
		return exitNothing
	}
	return exitOK
}

// badInstanceIDs says which arguments are not instance ids ("" if all are).
func badInstanceIDs(ids []string) string {
	var bad []string
	for _, id := range ids {
		if !messages.ValidInstanceID(id) {
			bad = append(bad, fmt.Sprintf("%q", printableField(id)))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "not instance ids: " + strings.Join(bad, ", ") + " (" + messages.InstanceIDForm + ")"
}

// holdChange says how a hold's end moved when it was replaced.
func holdChange(before, after time.Time) string {
	d := after.Sub(before).Round(time.Second)
	switch {
	case d < -time.Second:
		return ", shortened by " + shortDuration(-d)
	case d > time.Second:
		return ", extended by " + shortDuration(d)
	}
	return ""
}
