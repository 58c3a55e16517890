package bulkstop_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/messages"
)

// TestUnansweredEventHasTheResultShape: the line for a command without a
// result has a worker result's attributes and data fields, says why and
// how to go on, and is never taken for a worker's result.
func TestUnansweredEventHasTheResultShape(t *testing.T) {
	cmd := messages.StopCommand{InstanceID: "i-a", CommandID: "b1.i-a", ForceStop: true, Region: "bj", Reason: "INC-1", RequestedBy: "alice"}
	at := time.Date(2026, 11, 29, 16, 0, 0, 0, time.UTC)
	u := bulkstop.Unanswered{Command: cmd, Outcome: bulkstop.OutcomeNotSent, Code: bulkstop.CodeErrorBudgetSpent, Message: "held back"}
	ev := u.Event("b1", at)
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	worker, _ := json.Marshal(messages.NewResultEvent("e1", "w1", at, messages.ResultData{CommandID: "b1.i-a", InstanceID: "i-a", Outcome: messages.Failed}))
	keys := func(b []byte, inData bool) map[string]bool {
		var m map[string]json.RawMessage
		json.Unmarshal(b, &m)
		if inData {
			var data map[string]json.RawMessage
			json.Unmarshal(m["data"], &data)
			m = data
		}
		out := map[string]bool{}
		for k := range m {
			out[k] = true
		}
		return out
	}
	got, want := keys(raw, false), keys(worker, false)
	delete(want, "dataschema")
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("attribute %s missing", k)
		}
	}
	if got, want := keys(raw, true), keys(worker, true); len(got) != len(want) {
		t.Errorf("data fields %v, want %v", got, want)
	}
	d := ev.Data
	if ev.Type != "bcc.instance.stop.not-sent" || ev.Subject != "i-a" || ev.Source != "bccstop-cli/b1" || !ev.Time.Equal(at) ||
		d.CommandID != "b1.i-a" || !d.ForceStop || d.Region != "bj" || d.Reason != "INC-1" || d.RequestedBy != "alice" ||
		d.Code != "ErrorBudgetSpent" || !strings.HasPrefix(d.Message, "held back; run the same job again with --batch-id b1") {
		t.Errorf("event %+v", ev)
	}
	if _, err := messages.DecodeResultEvent(raw); err == nil {
		t.Errorf("a CLI-only line decodes as a worker's result")
	}
}
