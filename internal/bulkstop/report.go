package bulkstop

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bccstop/bccstop/messages"
)

// Exit statuses of `bccstop stop`, from the most to the least serious.
const (
	ExitOK        = 0 // every command succeeded
	ExitFailed    = 1 // at least one command failed, was rejected or was not sent
	ExitUsage     = 2 // bad flags, ids or configuration
	ExitForbidden = 3 // none failed or rejected, but at least one instance was not Running
	ExitTimedOut  = 4 // some commands had no result in time (or the wait was interrupted)
	ExitNATS      = 5 // NATS could not be reached or the commands could not be published
)

// ExitCode is the status the report deserves.
func (r *Report) ExitCode() int {
	switch {
	case r.Err != nil:
		return ExitNATS
	case r.Interrupted && len(r.Unanswered) > 0 || r.waitedInVain() > 0:
		return ExitTimedOut
	case r.Counts[messages.Failed] > 0 || r.Counts[messages.Rejected] > 0 || r.Counts[OutcomeNotSent] > 0:
		return ExitFailed
	case r.Counts[messages.Forbidden] > 0:
		return ExitForbidden
	}
	return ExitOK
}

// waitedInVain counts the commands published and waited for without a
// result.
func (r *Report) waitedInVain() int {
	n := 0
	for _, u := range r.Unanswered {
		if u.Outcome == OutcomeNoResult && u.Code != CodeNotWaited {
			n++
		}
	}
	return n
}

// unanswered counts the commands without a result with code.
func (r *Report) unanswered(code string) int {
	n := 0
	for _, u := range r.Unanswered {
		if u.Code == code {
			n++
		}
	}
	return n
}

// WriteSummary writes the counts by outcome and a table of every command
// that did not succeed.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "%s in %s: %d succeeded, %d forbidden, %d failed, %d rejected",
		plural(r.Total, "command", "commands"), r.Elapsed.Round(10*time.Millisecond), r.Counts[messages.Succeeded], r.Counts[messages.Forbidden],
		r.Counts[messages.Failed], r.Counts[messages.Rejected])
	if n := r.Counts[OutcomeNotSent]; n > 0 {
		fmt.Fprintf(w, ", %d not sent", n)
	}
	if n := r.Counts[OutcomeNoResult]; n > 0 {
		fmt.Fprintf(w, ", %d without a result", n)
	}
	fmt.Fprintln(w)
	if r.Duplicates > 0 {
		fmt.Fprintf(w, "%s been published before (batch %s): %s reported, nothing was stopped twice\n",
			plural(r.Duplicates, "command had", "commands had"), r.BatchID, pick(r.Duplicates, "its earlier outcome is", "their earlier outcomes are"))
	}
	if r.Halted {
		n := r.unanswered(CodeErrorBudgetSpent)
		fmt.Fprintf(w, "stopped publishing after %s in this run, over the error budget: %s not sent\n",
			plural(r.Errors, "error", "errors"), plural(n, "command was", "commands were"))
	}
	if r.Conflicts > 0 {
		fmt.Fprintf(w, "%s with an earlier use of batch %s for other commands (another instance set, --force, --no-charge, --region, --wait-stopped or --not-after): nothing was done for %s; use a new --batch-id\n",
			plural(r.Conflicts, "command conflicts", "commands conflict"), r.BatchID, pick(r.Conflicts, "it", "them"))
	}
	if r.Mismatched > 0 {
		fmt.Fprintf(w, "%s under this batch's command ids (%s) %s other commands than the ones published: not counted as theirs\n",
			plural(r.Mismatched, "stored result", "stored results"), strings.Join(r.MismatchedIDs, ", "), pick(r.Mismatched, "answers", "answer"))
	}
	var rows []string
	notOK := make([]string, 0, len(r.Order))
	for _, id := range r.Order {
		if r.Results[id].Event.Data.Outcome != messages.Succeeded {
			notOK = append(notOK, id)
		}
	}
	// The most serious first, then by instance id.
	rank := map[messages.Outcome]int{messages.Failed: 0, messages.Rejected: 1, messages.Forbidden: 2}
	sort.Slice(notOK, func(i, j int) bool {
		oi, oj := rank[r.Results[notOK[i]].Event.Data.Outcome], rank[r.Results[notOK[j]].Event.Data.Outcome]
		if oi != oj {
			return oi < oj
		}
		return notOK[i] < notOK[j]
	})
	for _, id := range notOK {
		d := r.Results[id].Event.Data
		status := "-"
		if d.HTTPStatus != 0 {
			status = fmt.Sprint(d.HTTPStatus)
		}
		rows = append(rows, strings.Join([]string{id, string(d.Outcome), orDash(d.Code), status, oneLine(d.Message)}, "\t"))
	}
	for _, u := range r.Unanswered {
		rows = append(rows, strings.Join([]string{u.Command.InstanceID, string(u.Outcome), u.Code, "-", oneLine(u.Message)}, "\t"))
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Not succeeded:")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INSTANCE\tOUTCOME\tCODE\tHTTP\tMESSAGE")
		for _, row := range rows {
			fmt.Fprintln(tw, row)
		}
		tw.Flush()
	}
	if len(r.Unanswered) > 0 {
		fmt.Fprintf(w, "\nTo go on, run the same job again with --batch-id %s: commands already decided are reported, none is stopped twice.\n", r.BatchID)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "…"
	}
	return s
}

// pick is one when n is 1, else many.
func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// plural writes n with the word for one or for several.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
