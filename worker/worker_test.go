package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

func TestStopSucceeds(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-YufwpQAe", fakebcc.Running)
	id := h.publish(`{"instanceId":"i-YufwpQAe"}`, nil)

	res := h.wait(id)[id]
	ev := res.Event
	if ev.Type != "bcc.instance.stop.succeeded" || ev.Source != "bccstop/test-worker" || ev.Subject != "i-YufwpQAe" ||
		ev.SpecVersion != "1.0" || ev.DataContentType != "application/json" || ev.ID == "" || ev.Time.IsZero() {
		t.Errorf("event attributes: %+v", ev)
	}
	d := ev.Data
	if d.Outcome != messages.Succeeded || !strings.HasPrefix(d.CommandID, id) || d.InstanceID != "i-YufwpQAe" || d.ForceStop ||
		d.Code != "" || d.HTTPStatus != 200 || d.Attempts != 1 {
		t.Errorf("data: %+v", d)
	}
	if ids := h.sim.StopRequestIDs("i-YufwpQAe"); len(ids) != 1 || d.RequestID != ids[0] {
		t.Errorf("requestId %q, simulator answered %v", d.RequestID, ids)
	}
	if got := res.Header.Get("Nats-Msg-Id"); got != d.CommandID {
		t.Errorf("result Nats-Msg-Id = %q, want the identity %q", got, d.CommandID)
	}
	if got := res.Header.Get("Content-Type"); got != "application/cloudevents+json" {
		t.Errorf("result Content-Type = %q", got)
	}
	if res.Header.Get("traceparent") == "" {
		t.Error("result has no traceparent header")
	}
	if st, _ := h.sim.Status("i-YufwpQAe"); st != fakebcc.Stopping {
		t.Errorf("instance is %s", st)
	}
}

func TestForbiddenWhenNotRunning(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-stopped1", fakebcc.Stopped)
	id := h.publish(`{"instanceId":"i-stopped1","forceStop":true}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Forbidden || d.Code != "Instance.StopInstanceOperationForbidden" || d.HTTPStatus != 409 || !d.ForceStop {
		t.Fatalf("data: %+v", d)
	}
	if ids := h.sim.StopRequestIDs("i-stopped1"); len(ids) != 1 || d.RequestID != ids[0] {
		t.Errorf("requestId %q, simulator answered %v", d.RequestID, ids)
	}
}

func TestIdentityAndHeaders(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-a", "i-b")
	h.publish(`{"instanceId":"i-a","commandId":"job-1.a"}`, nats.Header{"Nats-Msg-Id": []string{"ignored-header-id"}})
	h.publish(`{"instanceId":"i-b"}`, nats.Header{"Nats-Msg-Id": []string{"header-id-7"},
		"traceparent": []string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	got := h.wait("job-1.a", "header-id-7")
	if got["job-1.a"].Header.Get("Nats-Msg-Id") != "job-1.a" || got["header-id-7"].Header.Get("Nats-Msg-Id") != "header-id-7" {
		t.Error("result Nats-Msg-Id is not the command identity")
	}
	tp := got["header-id-7"].Header.Get("traceparent")
	if !strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-") || strings.Contains(tp, "b7ad6b7169203331") {
		t.Errorf("result traceparent %q does not continue the command's trace in a new span", tp)
	}
}

// TestBadPayloadsAreRejected: every kind of bad command gets a rejected
// result naming the problem, is never sent to the API, and does not stop the
// worker from handling the next command.
func TestBadPayloadsAreRejected(t *testing.T) {
	h := startHarness(t, func(o *worker.Options) { o.Protected = []string{"i-database1"} })
	tests := []struct{ payload, code, says string }{
		{`not json`, "InvalidCommand", "not valid JSON"},
		{``, "InvalidCommand", "empty"},
		{`{"instanceId":"i-ok","extra":1}`, "InvalidCommand", `"extra": unknown field`},
		{`{"instanceId":42}`, "InvalidCommand", "instanceId: must be a string"},
		{`{"instanceId":"i-ok","forceStop":"yes"}`, "InvalidCommand", "forceStop: must be true or false"},
		{`{"instanceId":"../etc/passwd"}`, "InvalidCommand", "instanceId"},
		{`{"forceStop":true}`, "InvalidCommand", "instanceId: is required"},
		{`{"instanceId":"i-ok"} trailing`, "InvalidCommand", "after the JSON object"},
		{`{"instanceId":"i-ok","instanceId":"i-other"}`, "InvalidCommand", "more than once"},
		{`{"instanceId":"i-ok","commandId":"has space"}`, "InvalidCommand", "commandId"},
		{`{"instanceId":"i-ok","region":"mars"}`, "UnknownRegion", `"mars" is not configured`},
		{`{"instanceId":"i-database1"}`, "InstanceProtected", "BCCSTOP_PROTECTED_INSTANCES"},
		{"{\"instanceId\":\"i-ok\xff\"}", "InvalidCommand", "UTF-8"},
		{`{"instanceId":"i-ok","commandId":"` + strings.Repeat("x", 70000) + `"}`, "InvalidCommand", "more than the 65536 allowed"},
	}
	ids := make([]string, len(tests))
	for i, tc := range tests {
		ids[i] = h.publish(tc.payload, nil)
	}
	h.sim.SetStatus("i-after", fakebcc.Running)
	after := h.publish(`{"instanceId":"i-after"}`, nil)
	got := h.wait(append(ids, after)...)
	for i, tc := range tests {
		d := got[ids[i]].Event.Data
		if d.Outcome != messages.Rejected || d.Code != tc.code || !strings.Contains(d.Message, tc.says) || d.HTTPStatus != 0 || d.RequestID != "" {
			t.Errorf("payload %.60q: %+v, want rejected %s saying %q", tc.payload, d, tc.code, tc.says)
		}
	}
	if got[after].Event.Data.Outcome != messages.Succeeded {
		t.Errorf("the command after the bad ones: %+v", got[after].Event.Data)
	}
	if s := h.sim.Stats(); s.StopCalls != 1 || s.DescribeCalls != 0 {
		t.Errorf("API calls: %+v, want exactly one (for the good command)", s)
	}
	// Rejected commands are terminated, not redelivered: nothing is left pending.
	checkSettled(t, h)
	info, err := h.js.Consumer(context.Background(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
	if err != nil {
		t.Fatal(err)
	}
	if ci, _ := info.Info(context.Background()); ci.NumRedelivered != 0 {
		t.Errorf("consumer: %d redelivered", ci.NumRedelivered)
	}
}

func TestTransientErrorIsRetriedThenSucceeds(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-flaky", fakebcc.Running)
	h.sim.FailInstanceTimes("i-flaky", 500, "InternalError", 1)
	id := h.publish(`{"instanceId":"i-flaky"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Succeeded || d.Attempts != 2 || d.HTTPStatus != 200 || d.Reconciled {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-flaky"); n != 2 {
		t.Errorf("stop calls = %d, want 2", n)
	}
}

func TestPersistentFailureEndsAsOneFailed(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-broken", fakebcc.Running)
	h.sim.FailInstance("i-broken", 503, "ServiceUnavailable")
	id := h.publish(`{"instanceId":"i-broken"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Failed || d.Code != messages.CodeRetriesExhausted || d.LastCode != "ServiceUnavailable" ||
		d.HTTPStatus != 503 || d.Attempts != 3 || d.RequestID == "" {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-broken"); n != 3 {
		t.Errorf("stop calls = %d, want 3 (MaxDeliver)", n)
	}
	// Nothing left to retry: no stray delivery could decide again.
	checkSettled(t, h)
}

func TestTerminalAPIErrorFailsAtOnce(t *testing.T) {
	h := startHarness(t)
	id := h.publish(`{"instanceId":"i-unknown"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Failed || d.Code != "NoSuchObject" || d.HTTPStatus != 404 || d.Attempts != 1 {
		t.Fatalf("data: %+v", d)
	}
}

// TestRepeatedCommandIsAnsweredFromTheLedger: the same command identity sent
// again gets the same result (same event) without a second API call, and the
// results stream keeps one copy.
func TestRepeatedCommandIsAnsweredFromTheLedger(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-once", fakebcc.Running)
	h.publish(`{"instanceId":"i-once","commandId":"cmd-once"}`, nil)
	first := h.wait("cmd-once")["cmd-once"]

	// A subscriber sees the repeat even though the stream drops it as a duplicate.
	sub, err := h.nc.SubscribeSync(messages.ResultSubjects)
	if err != nil {
		t.Fatal(err)
	}
	h.publish(`{"instanceId":"i-once","commandId":"cmd-once"}`, nil)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var repeat messages.ResultEvent
	json.Unmarshal(m.Data, &repeat)
	if repeat.ID != first.Event.ID || repeat.Data.Outcome != messages.Succeeded || m.Header.Get("Nats-Msg-Id") != "cmd-once" {
		t.Errorf("repeat: %+v, first id %s", repeat, first.Event.ID)
	}
	if n := h.sim.StopCalls("i-once"); n != 1 {
		t.Errorf("stop calls = %d, want 1", n)
	}
	checkSettled(t, h)
}

// TestAmbiguousRetryIsReconciled: the first call stops the instance but
// answers 500 (the client cannot tell); the retry is answered 409, the worker
// describes the instance, sees it Stopping, and reports succeeded, reconciled.
func TestAmbiguousRetryIsReconciled(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-ambig", fakebcc.Running)
	h.sim.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{500}, AfterApply: 1})
	id := h.publish(`{"instanceId":"i-ambig"}`, nil)
	firstCallThenHeal(t, h, "i-ambig")
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Succeeded || !d.Reconciled || d.InstanceStatus != "Stopping" || d.Attempts < 2 {
		t.Fatalf("data: %+v", d)
	}
	if s := h.sim.Stats(); s.DescribeCalls != 1 || s.StopsApplied != 1 {
		t.Errorf("simulator: %+v", s)
	}
}

// TestAmbiguousRetryOnNonRunningInstanceIsForbidden: after an ambiguous
// attempt, a 409 on an instance that is not stopping means forbidden, with
// the observed status.
func TestAmbiguousRetryOnNonRunningInstanceIsForbidden(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-starting", "Starting")
	h.sim.FailInstanceTimes("i-starting", 502, "BadGateway", 1)
	id := h.publish(`{"instanceId":"i-starting"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Forbidden || d.Code != messages.CodeForbidden || d.InstanceStatus != "Starting" || d.HTTPStatus != 409 {
		t.Fatalf("data: %+v", d)
	}
}

func TestRegionRoutesToItsEndpoint(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-gz1", fakebcc.Running)
	h.publish(`{"instanceId":"i-gz1","region":"gz","commandId":"gz-1","stopWithNoCharge":true}`, nil)
	d := h.wait("gz-1")["gz-1"].Event.Data
	if d.Outcome != messages.Succeeded || d.Region != "gz" || !d.StopWithNoCharge {
		t.Fatalf("data: %+v", d)
	}
}

// TestSlowCallIsNotRedelivered: a call slower than the ack wait keeps its
// delivery alive with InProgress, so JetStream does not hand the command to
// another worker meanwhile.
func TestSlowCallIsNotRedelivered(t *testing.T) {
	h := startHarness(t, func(o *worker.Options) { o.AckWait = time.Second; o.CallTimeout = 5 * time.Second })
	h.startWorker(func(o *worker.Options) {
		o.AckWait = time.Second
		o.CallTimeout = 5 * time.Second
		o.WorkerID = "second"
	})
	h.sim.SetStatus("i-slow", fakebcc.Running)
	h.sim.SetLatency(2500*time.Millisecond, 0)
	id := h.publish(`{"instanceId":"i-slow"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Succeeded || d.Attempts != 1 || d.Reconciled {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-slow"); n != 1 {
		t.Fatalf("stop calls = %d, want 1", n)
	}
}

// TestCloudEventCommands: Knative / Argo Events style producers send the
// command as a structured CloudEvent or with ce-* headers; the CloudEvent's
// source and id are the command identity when the command has no commandId.
func TestCloudEventCommands(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-ce-structured", "i-ce-binary")
	h.publish(`{"specversion":"1.0","id":"ce-structured-1","source":"/argo/sensor","type":"bcc.instance.stop","datacontenttype":"application/json","data":{"instanceId":"i-ce-structured"}}`,
		nats.Header{"Content-Type": []string{"application/cloudevents+json"}})
	h.publish(`{"instanceId":"i-ce-binary","forceStop":true}`, nats.Header{
		"ce-specversion": []string{"1.0"}, "ce-id": []string{"ce-binary-1"}, "ce-source": []string{"knative"}, "ce-type": []string{"bcc.instance.stop"},
		"Nats-Msg-Id": []string{"not-the-identity"}})
	h.publish(`{"specversion":"1.0","id":"ce-bad","source":"s","type":"t","data_base64":"e30="}`, nil)
	// A CloudEvent's identity is its source and id together.
	got := h.wait("/argo/sensor#ce-structured-1", "knative#ce-binary-1", "s#ce-bad")
	if d := got["/argo/sensor#ce-structured-1"].Event.Data; d.Outcome != messages.Succeeded || d.InstanceID != "i-ce-structured" {
		t.Errorf("structured: %+v", d)
	}
	if d := got["knative#ce-binary-1"].Event.Data; d.Outcome != messages.Succeeded || !d.ForceStop {
		t.Errorf("binary: %+v", d)
	}
	if d := got["s#ce-bad"].Event.Data; d.Outcome != messages.Rejected || !strings.Contains(d.Message, "data_base64") {
		t.Errorf("base64 CloudEvent: %+v", d)
	}
}

// TestReconcileThatCannotDescribeEndsAsOutcomeUnknown: after an ambiguous
// attempt the retry is answered 409, and describing the instance keeps
// failing; the command ends as one failed OutcomeUnknown result saying the
// stop may have taken effect, not an endless retry.
func TestReconcileThatCannotDescribeEndsAsOutcomeUnknown(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-nodesc", fakebcc.Running)
	h.sim.FailDescribe("i-nodesc", 503, "ServiceUnavailable")
	h.sim.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{500}, AfterApply: 1})
	id := h.publish(`{"instanceId":"i-nodesc"}`, nil)
	firstCallThenHeal(t, h, "i-nodesc")
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Failed || d.Code != messages.CodeOutcomeUnknown || !strings.Contains(d.Message, "may have taken effect") || d.Attempts != 3 {
		t.Fatalf("data: %+v", d)
	}
	if applied := h.sim.AppliedStops()["i-nodesc"]; applied != 1 {
		t.Errorf("stops applied = %d, want 1", applied)
	}
}

// firstCallThenHeal waits until the simulator has answered the first stop
// call for instance (under the faults the test set), then clears the
// faults, so the retry meets a healthy API.
func firstCallThenHeal(t *testing.T, h *harness, instance string) {
	t.Helper()
	answered := func() bool {
		for _, c := range h.sim.History() {
			if c.Op == fakebcc.OpStop && c.Instance == instance && c.Status != 0 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(10 * time.Second)
	for !answered() {
		if time.Now().After(deadline) {
			t.Fatalf("no stop call for %s answered in 10s", instance)
		}
		time.Sleep(time.Millisecond)
	}
	h.sim.SetFaults(fakebcc.Faults{})
}
