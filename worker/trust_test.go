package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// The tests in this file hold the worker to "one identity, one command,
// one outcome" at its edges, checking what the simulator saw (stops that
// took effect) and what was published, not only what the results stream
// stored (which de-duplicates by Nats-Msg-Id and so cannot show a second
// decision).

// TestFallbackIdentitySurvivesStreamRecreation: a command with no identity
// of its own, after the commands stream was deleted and created again (so
// its sequence numbers start over), is a new command: it is stopped, not
// acked with the old command's result.
func TestFallbackIdentitySurvivesStreamRecreation(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-before", "i-after")
	first := h.publish(`{"instanceId":"i-before"}`, nil)
	if first != testenv.StoredAt("BCCSTOP_COMMANDS_V2", 1) {
		t.Fatalf("first command is %s, want sequence 1", first)
	}
	h.wait(first)

	if err := h.js.DeleteStream(context.Background(), "BCCSTOP_COMMANDS_V2"); err != nil {
		t.Fatal(err)
	}
	// The worker notices its consumer is gone, provisions again and goes on.
	var second string
	testenv.Eventually(t, 20*time.Second, "the commands stream was not created again", func() bool {
		_, err := h.js.Stream(context.Background(), "BCCSTOP_COMMANDS_V2")
		return err == nil
	})
	second = h.publish(`{"instanceId":"i-after"}`, nil)
	if second != first {
		t.Fatalf("second command is %s; the test needs the sequence to start over (%s)", second, first)
	}
	testenv.Eventually(t, 20*time.Second, "i-after was never stopped", func() bool {
		return h.sim.AppliedStops()["i-after"] == 1
	})
	testenv.Eventually(t, 10*time.Second, "no result for the second command", func() bool { return h.results.Count(second) == 2 })
	a, b := h.results.All()[0].Event.Data, h.results.All()[1].Event.Data
	if a.CommandID == b.CommandID || a.InstanceID != "i-before" || b.InstanceID != "i-after" || b.Outcome != messages.Succeeded {
		t.Fatalf("results %+v and %+v", a, b)
	}
}

// TestOneIdentityOneCommand: an identity reused for other content is
// rejected CommandIdConflict under a derived Nats-Msg-Id, and nothing is
// stopped; the first result stays as it was. Changing only the audit
// fields is a repeat.
func TestOneIdentityOneCommand(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-first", "i-other")
	live := testenv.SubscribeResults(t, h.nc)
	h.publish(`{"instanceId":"i-first","commandId":"job-7","reason":"INC-1"}`, nil)
	first := h.wait("job-7")["job-7"]
	testenv.Eventually(t, 5*time.Second, "the first result was not seen live", func() bool { return len(live.ByID("job-7")) == 1 })

	for _, tc := range []struct{ name, payload string }{
		{"another instance", `{"instanceId":"i-other","commandId":"job-7"}`},
		{"forceStop flipped", `{"instanceId":"i-first","commandId":"job-7","forceStop":true}`},
		{"waitUntilStopped added", `{"instanceId":"i-first","commandId":"job-7","waitUntilStopped":true}`},
		{"a region", `{"instanceId":"i-first","commandId":"job-7","region":"gz"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(live.ByID("job-7"))
			h.publish(tc.payload, nil)
			var got testenv.Result
			testenv.Eventually(t, 10*time.Second, "no result published for the conflicting command", func() bool {
				all := live.ByID("job-7")
				if len(all) > before {
					got = all[len(all)-1]
					return true
				}
				return false
			})
			d := got.Event.Data
			if d.Outcome != messages.Rejected || d.Code != messages.CodeCommandIDConflict || !strings.Contains(d.Message, "instanceId=i-first") {
				t.Fatalf("data: %+v", d)
			}
			if id := got.Header.Get("Nats-Msg-Id"); id == "job-7" || !strings.HasPrefix(id, "job-7~") {
				t.Errorf("conflict published with Nats-Msg-Id %q; want one derived from job-7", id)
			}
			if got.Event.ID == first.Event.ID {
				t.Error("the conflict reuses the first result's event id")
			}
		})
	}
	// Each conflict is stored (under its own Nats-Msg-Id); the first result is untouched.
	testenv.Eventually(t, 10*time.Second, "conflicts not stored", func() bool { return h.results.Count("job-7") == 5 })
	if stored := h.results.Wait(t, time.Second, "job-7")["job-7"]; stored.Event.ID != first.Event.ID || stored.Event.Data.Outcome != messages.Succeeded {
		t.Errorf("first stored result changed: %+v", stored.Event)
	}
	if n := h.sim.StopCalls("i-other"); n != 0 {
		t.Errorf("i-other got %d stop calls, want 0", n)
	}
	if n := h.sim.StopCalls("i-first"); n != 1 {
		t.Errorf("i-first got %d stop calls, want 1", n)
	}

	// A repeat that changes only reason and requestedBy is the same command.
	before := len(live.ByID("job-7"))
	h.publish(`{"instanceId":"i-first","commandId":"job-7","reason":"INC-2","requestedBy":"bob"}`, nil)
	testenv.Eventually(t, 10*time.Second, "no answer to the repeat", func() bool { return len(live.ByID("job-7")) > before })
	if repeat := live.ByID("job-7")[before]; repeat.Event.ID != first.Event.ID || repeat.Event.Data.Reason != "INC-1" {
		t.Errorf("repeat answered with %+v, want the first result", repeat.Event)
	}
	if n := h.sim.StopCalls("i-first"); n != 1 {
		t.Errorf("i-first got %d stop calls after the repeat, want 1", n)
	}
}

// TestRejectionIsRecorded: an identity once rejected stays rejected; a
// corrected command under the same identity is a conflict, not a stop.
func TestRejectionIsRecorded(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-job9")
	live := testenv.SubscribeResults(t, h.nc)
	h.publish(`{"instanceId":"i-job9","commandId":"job-9","region":"mars"}`, nil)
	first := h.wait("job-9")["job-9"]
	testenv.Eventually(t, 5*time.Second, "the first result was not seen live", func() bool { return len(live.ByID("job-9")) == 1 })
	if d := first.Event.Data; d.Outcome != messages.Rejected || d.Code != messages.CodeUnknownRegion {
		t.Fatalf("first: %+v", d)
	}
	// The same bad command again: the same rejection, from the ledger.
	h.publish(`{"instanceId":"i-job9","commandId":"job-9","region":"mars"}`, nil)
	// The corrected command under the same identity.
	h.publish(`{"instanceId":"i-job9","commandId":"job-9"}`, nil)
	testenv.Eventually(t, 10*time.Second, "not every command answered", func() bool { return len(live.ByID("job-9")) == 3 })
	// The two arrive in either order: the repeat is answered with the first
	// rejection, the corrected command with a conflict.
	repeats, conflicts := 0, 0
	for _, r := range live.ByID("job-9")[1:] {
		switch d := r.Event.Data; {
		case r.Event.ID == first.Event.ID:
			repeats++
		case d.Outcome == messages.Rejected && d.Code == messages.CodeCommandIDConflict && d.Region == "":
			conflicts++
		default:
			t.Errorf("unexpected answer %+v", d)
		}
	}
	if repeats != 1 || conflicts != 1 {
		t.Errorf("%d repeats of the first rejection and %d conflicts, want 1 and 1", repeats, conflicts)
	}
	if n := h.sim.StopCalls("i-job9"); n != 0 {
		t.Errorf("%d stop calls, want none", n)
	}
	checkSettled(t, h)
}

// TestDuplicateAckOfAFreshDecisionIsNotSilent: the results stream holds a
// result for an identity the ledger does not know (say the ledger bucket
// was purged). A new decision for that identity is not dropped as a
// duplicate: it is stored under a derived Nats-Msg-Id, and said so.
func TestDuplicateAckOfAFreshDecisionIsNotSilent(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-ghost")
	stale := `{"specversion":"1.0","id":"stale","source":"bccstop/old","type":"bcc.instance.stop.failed","time":"2026-11-01T00:00:00Z","datacontenttype":"application/json",` +
		`"data":{"commandId":"job-ghost","instanceId":"i-ghost","forceStop":false,"outcome":"failed","code":"X","message":"","httpStatus":500,"requestId":"","attempts":1}}`
	if _, err := h.js.PublishMsg(context.Background(), &nats.Msg{Subject: "bcc.instance.stop.result.failed", Data: []byte(stale)},
		jetstream.WithMsgID("job-ghost")); err != nil {
		t.Fatal(err)
	}
	h.publish(`{"instanceId":"i-ghost","commandId":"job-ghost"}`, nil)
	testenv.Eventually(t, 10*time.Second, "the new decision was not stored", func() bool { return h.results.Count("job-ghost") == 2 })
	fresh := h.results.All()[1]
	if d := fresh.Event.Data; d.Outcome != messages.Succeeded || !strings.HasPrefix(fresh.Header.Get("Nats-Msg-Id"), "job-ghost~") {
		t.Fatalf("stored %+v with Nats-Msg-Id %q", d, fresh.Header.Get("Nats-Msg-Id"))
	}
	if !strings.Contains(h.logs.String(), "already holds another result") {
		t.Error("the discrepancy was not logged")
	}
	checkSettled(t, h)
}

// TestRepeatAfterTheLedgerForgot: the server removes a decided ledger
// record a moment after its TTL, and a repeat answered from it then was
// stored a second time, the results stream having forgotten its
// Nats-Msg-Id (its window is the TTL: the nemesis saw a repeat answered
// 10.08 s after its decision, TTL 10 s). Now the ledger takes a record past
// its TTL for forgotten, as the results stream does: the repeat is a new
// command (here the worker's clock runs a TTL ahead, so that the record is
// still there), its result is stored beside the first, and it is not
// counted as a conflict.
func TestRepeatAfterTheLedgerForgot(t *testing.T) {
	const ttl = 10 * time.Second
	var ahead atomic.Int64
	h := startHarness(t, func(o *worker.Options) {
		o.LedgerTTL = ttl
		o.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	info, err := h.js.Stream(context.Background(), "BCCSTOP_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	if d := info.CachedInfo().Config.Duplicates; d != ttl {
		t.Errorf("the results stream drops repeats for %s, not for the ledger's TTL (%s)", d, ttl)
	}
	h.sim.Seed(fakebcc.Running, "i-forgot")
	h.publish(`{"instanceId":"i-forgot","commandId":"job-forgot"}`, nil)
	h.wait("job-forgot")
	ahead.Store(int64(ttl + time.Second))
	h.publish(`{"instanceId":"i-forgot","commandId":"job-forgot"}`, nil)
	testenv.Eventually(t, 10*time.Second, "the repeat past the TTL got no result of its own", func() bool { return h.results.Count("job-forgot") == 2 })
	if d := h.results.All()[1].Event.Data; d.Outcome != messages.Forbidden {
		t.Errorf("the command again, past the ledger's TTL: %+v, want forbidden (the instance is stopping)", d)
	}
	if n := h.sim.StopCalls("i-forgot"); n != 2 {
		t.Errorf("%d stop calls, want 2 (the second a new command's, answered 409)", n)
	}
	if logs := h.logs.String(); strings.Contains(logs, "already holds another result") || !strings.Contains(logs, "this command is a new one") {
		t.Errorf("a command past the ledger's TTL reported as a conflict, or not said:\n%s", logs)
	}
	checkSettled(t, h)
}

// TestUntrustedHeaderIdentities: an identity from a header is at most 128
// printable characters; a longer or unprintable one is not used, and the
// command is rejected naming the header, its result small.
func TestUntrustedHeaderIdentities(t *testing.T) {
	h := startHarness(t)
	h.sim.Seed(fakebcc.Running, "i-hdr")
	long := strings.Repeat("x", 60<<10)
	a := h.publish(`{"instanceId":"i-hdr"}`, nats.Header{"Nats-Msg-Id": []string{long}})
	b := h.publish(`{"instanceId":"i-hdr"}`, nats.Header{"ce-specversion": []string{"1.0"}, "ce-id": []string{long},
		"ce-source": []string{"s"}, "ce-type": []string{"t"}})
	c := h.publish(`{"instanceId":"i-hdr"}`, nats.Header{"Nats-Msg-Id": []string{"job\x1b[2J"}})
	got := h.wait(a, b, c)
	for id, field := range map[string]string{a: "Nats-Msg-Id", b: "ce-id", c: "Nats-Msg-Id"} {
		r := got[id]
		d := r.Event.Data
		if d.Outcome != messages.Rejected || d.Code != messages.CodeInvalidCommand || !strings.Contains(d.Message, field) {
			t.Errorf("%s: %+v, want rejected naming %s", field, d, field)
		}
		if n := len(r.Header.Get("Nats-Msg-Id")) + len(d.Message) + len(d.CommandID); n > 1024 {
			t.Errorf("%s: the result carries %d bytes of identity and message", field, n)
		}
	}
	if n := h.sim.StopCalls("i-hdr"); n != 0 {
		t.Errorf("%d stop calls, want none", n)
	}
	info, err := h.js.Stream(context.Background(), "BCCSTOP_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.MaxMsgSize <= 0 || cfg.MaxBytes <= 0 {
		t.Errorf("results stream without size limits: max msg size %d, max bytes %d", cfg.MaxMsgSize, cfg.MaxBytes)
	}
}

// TestLostAnswerIsNeverReportedFailed: every stop call answers 503, but
// the first one had already stopped the instance. The worker describes it
// before trying again, sees it Stopping, and reports succeeded (reconciled)
// with no second stop; it never reports failed RetriesExhausted.
func TestLostAnswerIsNeverReportedFailed(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-lost", fakebcc.Running)
	h.sim.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{503}, AfterApply: 1})
	id := h.publish(`{"instanceId":"i-lost"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Succeeded || !d.Reconciled || d.InstanceStatus != "Stopping" || d.Attempts != 2 {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.StopCalls("i-lost"); n != 1 {
		t.Errorf("%d stop calls, want 1: the instance was seen stopping before a second", n)
	}
}

// TestRetriesExhaustedDescribesFirst: every answer is 503 and nothing took
// effect; the final failure says what the instance is.
func TestRetriesExhaustedDescribesFirst(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-down", fakebcc.Running)
	h.sim.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{503}})
	id := h.publish(`{"instanceId":"i-down"}`, nil)
	d := h.wait(id)[id].Event.Data
	if d.Outcome != messages.Failed || d.Code != messages.CodeRetriesExhausted || d.InstanceStatus != "Running" || d.Reconciled {
		t.Fatalf("data: %+v", d)
	}
	if n := h.sim.AppliedStops()["i-down"]; n != 0 {
		t.Fatalf("%d stops applied", n)
	}
}

func TestPlainCommandWithCommandIDSpecversion(t *testing.T) {
	h := startHarness(t)
	h.sim.SetStatus("i-spec", fakebcc.Running)
	h.publish(`{"instanceId":"i-spec","commandId":"specversion"}`, nil)
	if d := h.wait("specversion")["specversion"].Event.Data; d.Outcome != messages.Succeeded {
		t.Fatalf("data: %+v", d)
	}
}

func TestInvalidOptions(t *testing.T) {
	h := startHarness(t)
	for _, tc := range []struct {
		name   string
		change func(*worker.Options)
	}{
		{"Concurrency", func(o *worker.Options) { o.Concurrency = -1 }},
		{"MaxDeliver", func(o *worker.Options) { o.MaxDeliver = -3 }},
		{"Backoff", func(o *worker.Options) { o.Backoff = []time.Duration{-time.Second} }},
		{"AckWait", func(o *worker.Options) { o.AckWait = -time.Second }},
		{"LedgerTTL", func(o *worker.Options) { o.LedgerTTL = 5 * time.Second }},
		{"MaxDeliver", func(o *worker.Options) { o.MaxDeliver = 9223372036854775807 }},
		{"CommandsStream", func(o *worker.Options) { o.CommandsStream = "BCCSTOP_COMMANDS" }},
		{"API", func(o *worker.Options) { o.API = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, err := bcc.New(bcc.Options{Endpoint: h.simURL, Credentials: testenv.Credentials})
			if err != nil {
				t.Fatal(err)
			}
			opts := worker.Options{Conn: h.nc, API: api}
			tc.change(&opts)
			_, err = worker.New(opts)
			if !errors.Is(err, worker.ErrInvalidOption) || !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("err = %v, want ErrInvalidOption naming %s", err, tc.name)
			}
		})
	}
}

// checkSettled waits until the consumer holds nothing: every command
// acknowledged or terminated, none pending.
func checkSettled(t *testing.T, h *harness) {
	t.Helper()
	var ci *jetstream.ConsumerInfo
	testenv.Eventually(t, 10*time.Second, "commands left unsettled", func() bool {
		c, err := h.js.Consumer(context.Background(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
		if err != nil {
			return false
		}
		ci, err = c.Info(context.Background())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
}
