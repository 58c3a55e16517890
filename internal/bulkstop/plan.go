package bulkstop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/messages"
)

// What a dry run expects a target's command to get (Expectation.Outcome):
// the contract's outcomes, ExpectSkipped for an instance that is not
// targeted, and ExpectUnknown when its status could not be read.
const (
	ExpectSkipped = "skipped"
	ExpectUnknown = "unknown"
)

// Expectation is what a dry run expects the command of one target to get.
type Expectation struct {
	// Outcome is messages.Succeeded (it would stop a Running instance),
	// Rejected (the instance is held), Forbidden (it is not Running),
	// Failed (the API does not know it), or ExpectUnknown.
	Outcome string
	// Why says it for people ("" for a Running instance).
	Why string
}

// Describer describes instances by id, in batches; *bcc.Client is one.
type Describer interface {
	DescribeInstances(ctx context.Context, region string, ids []string) (map[string]bcc.Instance, bcc.Response, error)
}

// Forecast says what the command of each target of res would get, in the
// order of res.Targets, as a worker would decide it now: rejected when the
// instance is held (holds, from guard.ListHolds), failed when the API does
// not know it, forbidden when it is not Running, succeeded when it is. The
// targets named by id that the tag listing did not return are described
// with d, up to bcc.MaxDescribeIDs a call, and their status is set in res;
// the listed ones have theirs from the listing. With d nil their status is
// not read: ExpectUnknown. An error of the describe is returned as is.
func Forecast(ctx context.Context, d Describer, region string, res Resolution, holds []guard.Hold) ([]Expectation, error) {
	var unknown []string
	for _, t := range res.Targets {
		if t.Instance.Status == "" {
			unknown = append(unknown, t.ID)
		}
	}
	var described map[string]bcc.Instance
	if d != nil && len(unknown) > 0 {
		var err error
		if described, _, err = d.DescribeInstances(ctx, region, unknown); err != nil {
			return nil, err
		}
	}
	held := make(map[string]guard.Hold, len(holds))
	for _, h := range holds {
		held[h.InstanceID] = h
	}
	out := make([]Expectation, len(res.Targets))
	for i := range res.Targets {
		t := &res.Targets[i]
		if t.Instance.Status == "" && described != nil {
			if in, ok := described[t.ID]; ok {
				t.Instance.Status, t.Instance.Name = in.Status, in.Name
			}
		}
		h, isHeld := held[t.ID]
		switch {
		case isHeld:
			out[i] = Expectation{string(messages.Rejected), strings.TrimPrefix(h.String(), "instance "+t.ID+" is ")}
		case t.Instance.Status == "" && d == nil:
			out[i] = Expectation{ExpectUnknown, "status not checked (no BCE credentials)"}
		case t.Instance.Status == "":
			out[i] = Expectation{string(messages.Failed), "no such instance (the API does not describe it)"}
		case t.Instance.Status != "Running":
			out[i] = Expectation{string(messages.Forbidden), "not Running (" + t.Instance.Status + ")"}
		default:
			out[i] = Expectation{string(messages.Succeeded), ""}
		}
	}
	return out, nil
}

// planLine is one line of a dry run in JSON.
type planLine struct {
	InstanceID string                `json:"instanceId"`
	FoundBy    []string              `json:"foundBy,omitempty"`
	Status     string                `json:"status,omitempty"`
	Tags       map[string]string     `json:"tags,omitempty"`
	Expect     string                `json:"expect"`
	Why        string                `json:"why,omitempty"`
	Subject    string                `json:"subject,omitempty"`
	MsgID      string                `json:"natsMsgId,omitempty"`
	Command    *messages.StopCommand `json:"command,omitempty"`
	Skipped    string                `json:"skipped,omitempty"`
	Detail     string                `json:"detail,omitempty"`
}

// WritePlan writes what a dry run found: each target with what its
// command would get (expect[i], from Forecast) and the command that would
// be published for it (cmds[i] for res.Targets[i]), then each instance
// skipped and why. As text it is a table; as JSON, one object per line.
func WritePlan(w io.Writer, res Resolution, expect []Expectation, cmds []messages.StopCommand, asJSON bool) error {
	lines := make([]planLine, 0, len(res.Targets)+len(res.Skipped))
	for i, t := range res.Targets {
		l := planLine{InstanceID: t.ID, Status: t.Instance.Status, Expect: expect[i].Outcome, Why: expect[i].Why,
			Subject: messages.CommandSubject, MsgID: CommandMsgID(cmds[i]), Command: &cmds[i]}
		if t.ByID {
			l.FoundBy = append(l.FoundBy, "id")
		}
		if t.ByTag {
			l.FoundBy = append(l.FoundBy, "tag")
		}
		if len(t.Instance.Tags) > 0 {
			l.Tags = map[string]string{}
			for _, tag := range t.Instance.Tags {
				l.Tags[tag.Key] = tag.Value
			}
		}
		lines = append(lines, l)
	}
	for _, s := range res.Skipped {
		lines = append(lines, planLine{InstanceID: s.ID, Expect: ExpectSkipped, Why: s.Detail, Skipped: string(s.Reason), Detail: s.Detail})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tFOUND BY\tSTATUS\tTAGS\tWOULD\tCOMMAND (on "+messages.CommandSubject+")")
	for _, l := range lines {
		if l.Skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tskipped (%s): %s\t-\n", l.InstanceID, l.Skipped, l.Detail)
			continue
		}
		var tags []string
		for k, v := range l.Tags {
			tags = append(tags, k+"="+v)
		}
		slices.Sort(tags)
		would := "stop"
		if l.Expect != string(messages.Succeeded) {
			would = l.Expect + ": " + l.Why
		}
		cmd, _ := json.Marshal(l.Command)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.InstanceID, orDash(strings.Join(l.FoundBy, "+")), orDash(l.Status), orDash(strings.Join(tags, ",")), would, cmd)
	}
	return tw.Flush()
}

// PlanSummary is the last line of a dry run: how many commands would be
// published and what they would get, and how many instances are skipped.
// WouldStop counts the commands that would (or, status unknown, may) stop
// an instance.
func PlanSummary(res Resolution, expect []Expectation) (line string, wouldStop int) {
	n := map[string]int{}
	for _, e := range expect {
		n[e.Outcome]++
	}
	wouldStop = n[string(messages.Succeeded)] + n[ExpectUnknown]
	parts := []string{fmt.Sprintf("%d would stop", n[string(messages.Succeeded)])}
	for _, c := range []struct{ outcome, text string }{
		{ExpectUnknown, "status unknown"},
		{string(messages.Rejected), "held (rejected)"},
		{string(messages.Forbidden), "not Running (forbidden)"},
		{string(messages.Failed), "no such instance (failed)"},
	} {
		if n[c.outcome] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[c.outcome], c.text))
		}
	}
	line = fmt.Sprintf("dry run: %s would be published, none was: %s", plural(len(expect), "command", "commands"), strings.Join(parts, ", "))
	skipped := map[SkipReason]int{}
	var reasons []SkipReason
	for _, s := range res.Skipped {
		if skipped[s.Reason] == 0 {
			reasons = append(reasons, s.Reason)
		}
		skipped[s.Reason]++
	}
	var skips []string
	for _, r := range reasons {
		skips = append(skips, fmt.Sprintf("%d skipped (%s)", skipped[r], r))
	}
	if len(skips) > 0 {
		line += "; " + strings.Join(skips, ", ")
	}
	if wouldStop == 0 {
		line += "; nothing would be stopped"
	}
	return line, wouldStop
}
