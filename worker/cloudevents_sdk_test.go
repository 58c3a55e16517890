package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/messages"
)

// TestResultsParseWithTheCloudEventsSDK: the result events a running
// worker publishes are read by the CloudEvents Go SDK, as any consumer
// would read them: from the raw JSON (event.Event, Validate) and through
// the SDK's NATS binding (structured mode), with the attributes the
// contract promises (dataschema naming the result schema, the type by
// outcome, the instance id as subject) and data that decodes into
// messages.ResultData.
func TestResultsParseWithTheCloudEventsSDK(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-sdk-ok")
	sub, err := h.nc.SubscribeSync(messages.ResultSubjects)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	h.publish(`{"instanceId":"i-sdk-ok","commandId":"sdk-ok"}`, nil)
	h.publish(`{"instanceId":"not an id","commandId":"sdk-bad"}`, nil)

	want := map[string]messages.Outcome{"sdk-ok": messages.Succeeded, "sdk-bad": messages.Rejected}
	for range want {
		msg, err := sub.NextMsg(15 * time.Second)
		if err != nil {
			t.Fatalf("no result: %v", err)
		}
		if ct := msg.Header.Get("Content-Type"); ct != "application/cloudevents+json" {
			t.Errorf("%s: Content-Type %q", msg.Subject, ct)
		}

		var ev event.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatalf("%s: the SDK cannot parse %s: %v", msg.Subject, msg.Data, err)
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("%s: the SDK finds the event invalid: %v\n%s", msg.Subject, err, msg.Data)
		}

		bm := cenats.NewMessage(msg)
		if bm.ReadEncoding() != binding.EncodingStructured {
			t.Errorf("%s: the NATS binding reads encoding %v", msg.Subject, bm.ReadEncoding())
		}
		viaBinding, err := binding.ToEvent(context.Background(), bm)
		if err != nil {
			t.Fatalf("%s: the NATS binding cannot read the event: %v", msg.Subject, err)
		}
		if viaBinding.ID() != ev.ID() || viaBinding.Type() != ev.Type() || string(viaBinding.Data()) != string(ev.Data()) {
			t.Errorf("%s: the binding read %v, the JSON %v", msg.Subject, viaBinding, ev)
		}

		var data messages.ResultData
		if err := ev.DataAs(&data); err != nil {
			t.Fatalf("%s: data: %v", msg.Subject, err)
		}
		outcome, ok := want[data.CommandID]
		if !ok || data.Outcome != outcome {
			t.Fatalf("%s: result %+v, want one of %v", msg.Subject, data, want)
		}
		delete(want, data.CommandID)
		checks := []struct{ name, got, want string }{
			{"specversion", ev.SpecVersion(), event.CloudEventsVersionV1},
			{"type", ev.Type(), outcome.EventType()},
			{"subject (NATS)", msg.Subject, messages.ResultSubject(outcome)},
			{"source", ev.Source(), "bccstop/test-worker"},
			{"datacontenttype", ev.DataContentType(), "application/json"},
			{"dataschema", ev.DataSchema(), messages.ResultSchema},
		}
		if outcome == messages.Succeeded {
			checks = append(checks, struct{ name, got, want string }{"subject", ev.Subject(), "i-sdk-ok"})
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s: %s %q, want %q", data.CommandID, c.name, c.got, c.want)
			}
		}
		if ev.Time().IsZero() || time.Since(ev.Time()) > time.Minute {
			t.Errorf("%s: time %v", data.CommandID, ev.Time())
		}
	}
}
