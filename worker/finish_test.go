package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// quickLooks makes waiting for Stopped look often, for tests.
func quickLooks(o *worker.Options) {
	o.StopWaitIntervals = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
}

// TestWaitUntilStoppedHoldsNoSlot: 40 commands with waitUntilStopped on a
// worker with 2 handlers, instances Stopping for 1.5s. They all wait at
// once (were a handler held per wait, it would take 30s); each ends
// succeeded with the instance Stopped, after exactly one stop call.
func TestWaitUntilStoppedHoldsNoSlot(t *testing.T) {
	h := startHarness(t, quickLooks, func(o *worker.Options) { o.Concurrency = 2; o.Prefetch = 2 })
	h.sim.SetStopDuration(1500 * time.Millisecond)
	var ids []string
	for i := range 40 {
		inst := fmt.Sprintf("i-wait%02d", i)
		h.sim.SetStatus(inst, fakebcc.Running)
		ids = append(ids, "wait-"+inst)
		h.publish(fmt.Sprintf(`{"instanceId":%q,"commandId":"wait-%s","waitUntilStopped":true}`, inst, inst), nil)
	}
	begin := time.Now()
	got := h.wait(ids...)
	took := time.Since(begin)
	for _, id := range ids {
		d := got[id].Event.Data
		if d.Outcome != messages.Succeeded || d.InstanceStatus != "Stopped" || d.StoppedAt == "" || !d.WaitUntilStopped || d.HTTPStatus != 200 {
			t.Errorf("%s: %+v", id, d)
		}
		stoppedAt, err := time.Parse(time.RFC3339Nano, d.StoppedAt)
		if err != nil || stoppedAt.Before(begin) {
			t.Errorf("%s: stoppedAt %q", id, d.StoppedAt)
		}
	}
	if took > 8*time.Second {
		t.Errorf("40 waits with 2 handlers took %v: waiting holds handlers", took)
	}
	for inst, n := range h.sim.StopCallsByInstance() {
		if n != 1 {
			t.Errorf("%s: %d stop calls", inst, n)
		}
	}
	checkSettled(t, h)
}

// TestStopTimedOut: not Stopped within the wait timeout ends failed
// StopTimedOut, with the last status seen.
func TestStopTimedOut(t *testing.T) {
	h := startHarness(t, quickLooks, func(o *worker.Options) { o.StopWaitTimeout = 800 * time.Millisecond })
	h.sim.SetStatus("i-slowstop", fakebcc.Running)
	h.publish(`{"instanceId":"i-slowstop","commandId":"slowstop","waitUntilStopped":true}`, nil)
	d := h.wait("slowstop")["slowstop"].Event.Data
	if d.Outcome != messages.Failed || d.Code != messages.CodeStopTimedOut || d.InstanceStatus != "Stopping" || d.Reconciled ||
		!strings.Contains(d.Message, "not Stopped within") {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-slowstop"); n != 1 {
		t.Errorf("%d stop calls", n)
	}
}

// TestExpiredCommands: a command taken after its notAfter, or stored
// longer than MaxCommandAge, is rejected Expired and the API never called.
func TestExpiredCommands(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-late", "i-intime")
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	h.publish(`{"instanceId":"i-late","commandId":"late","notAfter":"`+past+`"}`, nil)
	h.publish(`{"instanceId":"i-intime","commandId":"intime","notAfter":"`+future+`"}`, nil)
	got := h.wait("late", "intime")
	if d := got["late"].Event.Data; d.Outcome != messages.Rejected || d.Code != messages.CodeExpired || d.NotAfter != past ||
		!strings.Contains(d.Message, "after its notAfter") || d.HTTPStatus != 0 {
		t.Errorf("late: %+v", d)
	}
	if d := got["intime"].Event.Data; d.Outcome != messages.Succeeded || d.NotAfter != future {
		t.Errorf("in time: %+v", d)
	}
	if n := h.sim.StopCalls("i-late"); n != 0 {
		t.Errorf("%d stop calls for the expired command", n)
	}

	// A command stored while no worker runs, then taken too late.
	aged := startHarness(t)
	aged.stop()
	aged.sim.SetStatus("i-aged", fakebcc.Running)
	aged.publish(`{"instanceId":"i-aged","commandId":"aged"}`, nil)
	time.Sleep(400 * time.Millisecond) // the backlog ages: the scenario, not synchronisation
	aged.startWorker(func(o *worker.Options) { o.MaxCommandAge = 200 * time.Millisecond })
	if d := aged.wait("aged")["aged"].Event.Data; d.Outcome != messages.Rejected || d.Code != messages.CodeExpired ||
		!strings.Contains(d.Message, "BCCSTOP_MAX_COMMAND_AGE") {
		t.Errorf("aged: %+v", d)
	}
	if n := aged.sim.StopCalls("i-aged"); n != 0 {
		t.Errorf("%d stop calls for the aged command", n)
	}
}

// TestNoRetryAfterTheDeadline: a command whose first attempt failed is not
// retried past its notAfter.
func TestNoRetryAfterTheDeadline(t *testing.T) {
	h := startHarness(t, func(o *worker.Options) { o.Backoff = []time.Duration{1500 * time.Millisecond} })
	h.sim.SetStatus("i-deadline", fakebcc.Running)
	h.sim.FailInstance("i-deadline", 429, "RequestLimitExceeded")
	notAfter := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	h.publish(`{"instanceId":"i-deadline","commandId":"deadline","notAfter":"`+notAfter+`"}`, nil)
	d := h.wait("deadline")["deadline"].Event.Data
	if d.Outcome != messages.Failed || d.Code != messages.CodeExpired || d.LastCode != "RequestLimitExceeded" || !strings.Contains(d.Message, "no retry") {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-deadline"); n != 1 {
		t.Errorf("%d stop calls, want 1: no retry after the deadline", n)
	}
}

// TestAuditTrail: reason and requestedBy are echoed in the result, set on
// the command's span and written on its log line.
func TestAuditTrail(t *testing.T) {
	o := startObserved(t)
	o.sim.SetStatus("i-audit", fakebcc.Running)
	o.publish(`{"instanceId":"i-audit","commandId":"audit-1","reason":"INC-4711: web-3 compromised","requestedBy":"pagerduty/alice"}`,
		nats.Header{"traceparent": []string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}})
	d := o.wait("audit-1")["audit-1"].Event.Data
	if d.Reason != "INC-4711: web-3 compromised" || d.RequestedBy != "pagerduty/alice" {
		t.Errorf("result: %+v", d)
	}
	var attrs map[attribute.Key]string
	testenv.Eventually(t, 5*time.Second, "no span with the audit trail", func() bool {
		for _, s := range o.spans.GetSpans() {
			if s.Name != "process bcc.instance.stop" {
				continue
			}
			attrs = map[attribute.Key]string{}
			for _, a := range s.Attributes {
				attrs[a.Key] = a.Value.Emit()
			}
			if attrs["bccstop.command.id"] == "audit-1" {
				return true
			}
		}
		return false
	})
	if attrs["bccstop.reason"] != "INC-4711: web-3 compromised" || attrs["bccstop.requested_by"] != "pagerduty/alice" {
		t.Errorf("span attributes: %v", attrs)
	}
	testenv.Eventually(t, 5*time.Second, "no log line with the audit trail", func() bool {
		return strings.Contains(o.log.String(), `"reason":"INC-4711: web-3 compromised","requested_by":"pagerduty/alice"`)
	})
}

// TestWaitingSurvivesAWorker: the worker that made the stop stops while
// the command waits; another finishes the wait without a second stop.
func TestWaitingSurvivesAWorker(t *testing.T) {
	h := startHarness(t, quickLooks)
	h.sim.SetStopDuration(2 * time.Second)
	h.sim.SetStatus("i-handover", fakebcc.Running)
	h.publish(`{"instanceId":"i-handover","commandId":"handover","waitUntilStopped":true}`, nil)
	testenv.Eventually(t, 10*time.Second, "the stop was never made", func() bool { return h.sim.StopCalls("i-handover") == 1 })
	h.stop()
	h.startWorker(quickLooks, func(o *worker.Options) { o.WorkerID = "second" })
	d := h.wait("handover")["handover"].Event.Data
	if d.Outcome != messages.Succeeded || d.InstanceStatus != "Stopped" || d.WorkerID != "second" {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-handover"); n != 1 {
		t.Errorf("%d stop calls", n)
	}
	_ = context.Background()
}
