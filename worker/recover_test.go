package worker_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// panicking is the real API client with a bug: every stop call panics,
// after the call was made (afterCall) or before; with inDescribe, every
// describe call panics too.
type panicking struct {
	worker.API
	afterCall, inDescribe bool
}

func (p panicking) DescribeInstance(ctx context.Context, region, instanceID string) (bcc.Instance, bcc.Response, error) {
	if p.inDescribe {
		panic("bug in describe for " + instanceID)
	}
	return p.API.DescribeInstance(ctx, region, instanceID)
}

func (p panicking) StopInstance(ctx context.Context, r bcc.StopRequest) (bcc.Response, error) {
	if p.afterCall {
		_, _ = p.API.StopInstance(ctx, r)
	}
	panic(fmt.Sprintf("bug in the stop path for %s", r.InstanceID))
}

// TestPanicOnLastDeliveryIsConcludedThroughTheLedger: a bug that panics on
// every delivery ends the command once its budget is spent, and the
// outcome is decided as any other: recorded in the ledger (a repeat of the
// command gets the same result and no stop call) and, when the panicking
// code may have called the API, only after describing the instance, so a
// stop that went through is reported succeeded, never failed.
func TestPanicOnLastDeliveryIsConcludedThroughTheLedger(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		afterCall, inDescribe bool
		// maxDeliver: with more than one, a later delivery would find an
		// earlier one's stop by describing first, as after any lost answer.
		maxDeliver int
		outcome    messages.Outcome
		status     string // the instance's status afterwards
	}{
		{"panic before the call", false, false, 3, messages.Failed, fakebcc.Running},
		{"panic after the call", true, false, 1, messages.Succeeded, fakebcc.Stopping},
		// The bug is in describing too, so concluding panics as well: the
		// command still gets one answer, which says it cannot tell.
		{"panic after the call and in describe", true, true, 1, messages.Failed, fakebcc.Stopping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			real, err := bcc.New(bcc.Options{Endpoint: h.simURL, Credentials: testenv.Credentials, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			h.startWorker(func(o *worker.Options) {
				o.API, o.MaxDeliver = panicking{API: real, afterCall: tc.afterCall, inDescribe: tc.inDescribe}, tc.maxDeliver
			})
			h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
			live := testenv.SubscribeResults(t, h.nc)
			instance := "i-panic" + map[bool]string{false: "before", true: "after"}[tc.afterCall]
			h.sim.SetStatus(instance, fakebcc.Running)
			cmd := fmt.Sprintf(`{"commandId":"bug-1","instanceId":%q,"forceStop":false}`, instance)
			h.publish(cmd, nil)
			first := h.wait("bug-1")["bug-1"]
			d := first.Event.Data
			if d.Outcome != tc.outcome {
				t.Fatalf("outcome %s %s (%s), want %s", d.Outcome, d.Code, d.Message, tc.outcome)
			}
			switch tc.outcome {
			case messages.Failed:
				want := messages.CodeInternalError
				if tc.inDescribe {
					want = messages.CodeOutcomeUnknown
				}
				if d.Code != want || d.Attempts != tc.maxDeliver {
					t.Errorf("failed with code %q after %d attempts, want %s after %d", d.Code, d.Attempts, want, tc.maxDeliver)
				}
				if tc.inDescribe && (d.LastCode != messages.CodeInternalError || !strings.Contains(d.Message, "may have taken effect")) {
					t.Errorf("lastCode %q, message %q; want %s, saying the stop may have taken effect", d.LastCode, d.Message, messages.CodeInternalError)
				}
			case messages.Succeeded:
				if !d.Reconciled || d.InstanceStatus != fakebcc.Stopping || d.LastCode != messages.CodeInternalError {
					t.Errorf("succeeded with reconciled=%v instanceStatus=%q lastCode %q; want reconciled, Stopping, last code %s",
						d.Reconciled, d.InstanceStatus, d.LastCode, messages.CodeInternalError)
				}
			}
			if st, _ := h.sim.Status(instance); st != tc.status {
				t.Errorf("instance is %s, want %s", st, tc.status)
			}

			// The same command again, to a worker without the bug: the
			// ledger answers it, with no call.
			calls := h.sim.StopCalls(instance)
			h.stop()
			h.startWorker(func(o *worker.Options) { o.API = real })
			h.publish(cmd, nil)
			testenv.Eventually(t, 10*time.Second, "the repeat's result", func() bool { return len(live.ByID("bug-1")) == 2 })
			if n := h.sim.StopCalls(instance); n != calls {
				t.Errorf("the repeat made %d stop call(s); the ledger holds the outcome", n-calls)
			}
			for _, r := range live.ByID("bug-1") {
				if r.Event.ID != first.Event.ID || r.Event.Data.Outcome != tc.outcome {
					t.Errorf("bug-1 answered %s (%s), then %s (%s): two outcomes for one command",
						first.Event.Data.Outcome, first.Event.ID, r.Event.Data.Outcome, r.Event.ID)
				}
			}
			if st, _ := h.sim.Status(instance); st != tc.status {
				t.Errorf("after the repeat the instance is %s, want %s", st, tc.status)
			}
		})
	}
}

// panickyLooks is the real API client whose describe calls panic when
// look, told the call's number, says so.
type panickyLooks struct {
	worker.API
	looks *atomic.Int32
	look  func(n int32) (panicNow bool)
}

func (p panickyLooks) DescribeInstance(ctx context.Context, region, instanceID string) (bcc.Instance, bcc.Response, error) {
	if p.look(p.looks.Add(1)) {
		panic("bug while waiting for " + instanceID)
	}
	return p.API.DescribeInstance(ctx, region, instanceID)
}

// TestPanicWhileWaitingWaitsOn: a command with waitUntilStopped whose stop
// went through, and whose wait for Stopped panics once its delivery budget
// is spent (every look uses up a delivery), keeps waiting until
// BCCSTOP_STOP_WAIT_TIMEOUT, as after a look that failed; past it, it ends
// as the wait would, failed with the last status seen. No second stop is
// sent.
func TestPanicWhileWaitingWaitsOn(t *testing.T) {
	const instance = "i-waitpanic"
	for _, tc := range []struct {
		name    string
		look    func(h *harness, n int32) bool
		outcome messages.Outcome
		status  string
	}{
		{"one look panics, then the instance is Stopped", func(h *harness, n int32) bool {
			if n == 3 {
				h.sim.SetStatus(instance, fakebcc.Stopped)
			}
			return n == 1
		}, messages.Succeeded, fakebcc.Stopped},
		{"every look panics until the wait times out", func(*harness, int32) bool { return true }, messages.Failed, fakebcc.Stopping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			real, err := bcc.New(bcc.Options{Endpoint: h.simURL, Credentials: testenv.Credentials, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			api := panickyLooks{API: real, looks: &atomic.Int32{}, look: func(n int32) bool { return tc.look(h, n) }}
			h.startWorker(func(o *worker.Options) {
				o.API, o.MaxDeliver = api, 1
				o.StopWaitIntervals, o.StopWaitTimeout = []time.Duration{50 * time.Millisecond}, 600*time.Millisecond
			})
			h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
			h.sim.SetStatus(instance, fakebcc.Running)
			h.publish(`{"commandId":"wait-bug","instanceId":"i-waitpanic","waitUntilStopped":true}`, nil)
			d := h.wait("wait-bug")["wait-bug"].Event.Data
			if d.Outcome != tc.outcome || d.InstanceStatus != tc.status {
				t.Fatalf("%s %s, instanceStatus %q (%s); want %s, %s", d.Outcome, d.Code, d.InstanceStatus, d.Message, tc.outcome, tc.status)
			}
			switch tc.outcome {
			case messages.Failed:
				if d.Code != messages.CodeInternalError || !strings.Contains(d.Message, "the stop went through") {
					t.Errorf("code %q, message %q; want %s, saying the stop went through", d.Code, d.Message, messages.CodeInternalError)
				}
				if n := api.looks.Load(); n < 3 {
					t.Errorf("%d looks before giving up; the wait should go on until its timeout", n)
				}
			case messages.Succeeded:
				if d.StoppedAt == "" {
					t.Error("succeeded without stoppedAt")
				}
			}
			if n := h.sim.StopCalls(instance); n != 1 {
				t.Errorf("%d stop calls, want 1", n)
			}
		})
	}
}

// panickyPropagator panics in Inject (called as each result is published)
// while armed is above zero, counting down.
type panickyPropagator struct {
	propagation.TextMapPropagator
	armed *atomic.Int32
}

func (p panickyPropagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	if p.armed.Add(-1) >= 0 {
		panic("bug in publishing a result")
	}
	p.TextMapPropagator.Inject(ctx, carrier)
}

// TestPanicRepublishingADecidedOutcomeKeepsIt: a repeat of a decided
// command whose republishing panics on its last delivery, and again while
// concluding, still gets the decided outcome; nothing is written over it.
func TestPanicRepublishingADecidedOutcomeKeepsIt(t *testing.T) {
	armed := &atomic.Int32{}
	h := newHarness(t, nil)
	h.startWorker(func(o *worker.Options) {
		o.MaxDeliver = 1
		o.Propagator = panickyPropagator{TextMapPropagator: propagation.TraceContext{}, armed: armed}
	})
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, h.nc)
	first := publishAndWait(t, h, "dup-1")

	armed.Store(2)
	h.publish(`{"commandId":"dup-1","instanceId":"i-dup-1","forceStop":false}`, nil)
	testenv.Eventually(t, 10*time.Second, "the repeat's result", func() bool { return len(live.ByID("dup-1")) == 2 })
	h.publish(`{"commandId":"dup-1","instanceId":"i-dup-1","forceStop":false}`, nil)
	testenv.Eventually(t, 10*time.Second, "the third result", func() bool { return len(live.ByID("dup-1")) == 3 })
	for _, r := range live.ByID("dup-1") {
		if r.Event.ID != first.Event.ID || r.Event.Data.Outcome != messages.Succeeded {
			t.Errorf("dup-1 answered %s (%s), then %s (%s)", first.Event.Data.Outcome, first.Event.ID, r.Event.Data.Outcome, r.Event.ID)
		}
	}
	if n := len(h.results.All()); n != 1 {
		t.Errorf("the results stream holds %d results, want dup-1's one", n)
	}
	if n := h.sim.StopCalls("i-dup-1"); n != 1 {
		t.Errorf("%d stop calls, want 1", n)
	}
	if n := armed.Load(); n > 0 {
		t.Errorf("%d planned panics did not happen", n)
	}
}

// TestPanicAnsweringAConflictNeverActs: a command reusing another's
// identity, whose answer panics on its last delivery and again while
// concluding, is dropped: never acted on, never retried, the first
// command's result untouched, and the worker goes on.
func TestPanicAnsweringAConflictNeverActs(t *testing.T) {
	armed := &atomic.Int32{}
	h := newHarness(t, nil)
	h.startWorker(func(o *worker.Options) {
		o.MaxDeliver = 1
		o.Propagator = panickyPropagator{TextMapPropagator: propagation.TraceContext{}, armed: armed}
	})
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	first := publishAndWait(t, h, "same-id")

	armed.Store(2)
	h.sim.SetStatus("i-other", fakebcc.Running)
	h.publish(`{"commandId":"same-id","instanceId":"i-other","forceStop":false}`, nil)
	checkSettled(t, h) // ended, not left to be redelivered
	if n := armed.Load(); n > 0 {
		t.Errorf("%d planned panics did not happen", n)
	}
	publishAndWait(t, h, "after") // the worker goes on
	if n := h.sim.StopCalls("i-other"); n != 0 {
		t.Errorf("the conflicting command made %d stop calls", n)
	}
	if got := h.results.Count("same-id"); got != 1 || h.wait("same-id")["same-id"].Event.ID != first.Event.ID {
		t.Errorf("same-id has %d results; want its first one alone", got)
	}
}

// calledFrom reports whether a function whose name ends in one of names
// is on the caller's stack.
func calledFrom(names ...string) bool {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		for _, n := range names {
			if strings.HasSuffix(f.Function, n) {
				return true
			}
		}
		if !more {
			return false
		}
	}
}

// TestPanicWhileConcludingAPanicIsRetried: the first look of a command
// waiting for Stopped panics on its last delivery, and the clock panics
// too while that is concluded, in the ledger's claim or in the wait's own
// code; nothing escapes to crash the worker, and the command goes on
// waiting until the instance is Stopped, with one stop call.
func TestPanicWhileConcludingAPanicIsRetried(t *testing.T) {
	for _, where := range []string{"(*ledger).claimAs", "(*Worker).panicWhileWaiting"} {
		t.Run(where, func(t *testing.T) {
			const instance = "i-clockpanic"
			h := newHarness(t, nil)
			real, err := bcc.New(bcc.Options{Endpoint: h.simURL, Credentials: testenv.Credentials, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			clock := &atomic.Int32{}
			api := panickyLooks{API: real, looks: &atomic.Int32{}, look: func(n int32) bool {
				if n == 3 {
					h.sim.SetStatus(instance, fakebcc.Stopped)
				}
				if n == 1 {
					clock.Store(1)
				}
				return n == 1
			}}
			h.startWorker(func(o *worker.Options) {
				o.API, o.MaxDeliver = api, 2
				o.StopWaitIntervals = []time.Duration{50 * time.Millisecond}
				o.Now = func() time.Time {
					if clock.Load() > 0 && calledFrom(where) && clock.Add(-1) == 0 {
						panic("bug in the clock")
					}
					return time.Now()
				}
			})
			h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
			h.sim.SetStatus(instance, fakebcc.Running)
			h.publish(`{"commandId":"clock-bug","instanceId":"i-clockpanic","waitUntilStopped":true}`, nil)
			d := h.wait("clock-bug")["clock-bug"].Event.Data
			if d.Outcome != messages.Succeeded || d.InstanceStatus != fakebcc.Stopped {
				t.Fatalf("%s %s, instanceStatus %q (%s); want succeeded, Stopped", d.Outcome, d.Code, d.InstanceStatus, d.Message)
			}
			if n := clock.Load(); n != 0 {
				t.Error("the clock never panicked")
			}
			if n := h.sim.StopCalls(instance); n != 1 {
				t.Errorf("%d stop calls, want 1", n)
			}
		})
	}
}
