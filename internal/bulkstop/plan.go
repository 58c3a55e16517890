package bulkstop

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/bccstop/bccstop/messages"
)

// planLine is one line of a dry run in JSON.
type planLine struct {
	InstanceID string                `json:"instanceId"`
	FoundBy    []string              `json:"foundBy,omitempty"`
	Status     string                `json:"status,omitempty"`
	Tags       map[string]string     `json:"tags,omitempty"`
	Subject    string                `json:"subject,omitempty"`
	MsgID      string                `json:"natsMsgId,omitempty"`
	Command    *messages.StopCommand `json:"command,omitempty"`
	Skipped    string                `json:"skipped,omitempty"`
	Detail     string                `json:"detail,omitempty"`
}

// WritePlan writes what a dry run found: each target with the command
// that would be published for it (cmds[i] for res.Targets[i]), then each
// instance skipped and why. As text it is a table; as JSON, one object per
// line.
func WritePlan(w io.Writer, res Resolution, cmds []messages.StopCommand, asJSON bool) error {
	lines := make([]planLine, 0, len(res.Targets)+len(res.Skipped))
	for i, t := range res.Targets {
		l := planLine{InstanceID: t.ID, Status: t.Instance.Status, Subject: messages.CommandSubject, MsgID: CommandMsgID(cmds[i]), Command: &cmds[i]}
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
		lines = append(lines, planLine{InstanceID: s.ID, Skipped: string(s.Reason), Detail: s.Detail})
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
	fmt.Fprintln(tw, "INSTANCE\tFOUND BY\tSTATUS\tTAGS\tCOMMAND (on "+messages.CommandSubject+")")
	for _, l := range lines {
		if l.Skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tskipped (%s): %s\n", l.InstanceID, l.Skipped, l.Detail)
			continue
		}
		var tags []string
		for k, v := range l.Tags {
			tags = append(tags, k+"="+v)
		}
		slices.Sort(tags)
		cmd, _ := json.Marshal(l.Command)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.InstanceID, orDash(strings.Join(l.FoundBy, "+")), orDash(l.Status), orDash(strings.Join(tags, ",")), cmd)
	}
	return tw.Flush()
}
