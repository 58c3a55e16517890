package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// gate is an API rate limiter that gives no turn until it is opened.
type gate chan struct{}

func (g gate) Wait(ctx context.Context) error {
	select {
	case <-g:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withBudget gives the worker a blast-radius budget of n stops a minute,
// read and charged with the clock now (time.Now when nil).
func withBudget(t *testing.T, n int, now func() time.Time) func(*worker.Options) {
	return func(o *worker.Options) {
		js, err := jetstream.New(o.Conn)
		if err != nil {
			t.Fatal(err)
		}
		b, err := guard.NewBudget(guard.BudgetOptions{JetStream: js, Limit: n, Window: time.Minute, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		o.Budget, o.BudgetSpec = b, fmt.Sprintf("%d/1m", n)
	}
}

// budgetUsed reads how much of a budget of a minute the fleet has used.
func budgetUsed(t *testing.T, h *harness) int {
	t.Helper()
	return budgetUsedIn(t, h, time.Minute)
}

// budgetUsedIn reads how much of a budget of window the fleet has used.
func budgetUsedIn(t *testing.T, h *harness, window time.Duration) int {
	t.Helper()
	b, err := guard.NewBudget(guard.BudgetOptions{JetStream: h.js, Limit: 10, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	used, err := b.Used(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return used
}

// TestBudgetChargedWhenTheCallHasItsTurn: a stop waiting for its turn under
// the fleet's rate has not been charged; it is charged when it gets it. (A
// worker that charged before waiting let a call charged in one window land
// in a later one: the nemesis saw 98 first stops in a window of 75.)
func TestBudgetChargedWhenTheCallHasItsTurn(t *testing.T) {
	turn := make(gate)
	h := newHarness(t, func(o *bcc.Options) { o.Limiter = turn })
	h.startWorker(withBudget(t, 10, nil))
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	h.sim.SetStatus("i-turn1", fakebcc.Running)
	h.publish(`{"instanceId":"i-turn1","commandId":"turn-1"}`, nil)
	id := "turn-1"
	time.Sleep(500 * time.Millisecond) // taken, waiting for its turn
	if used := budgetUsed(t, h); used != 0 {
		t.Errorf("%d charged while the stop waits for its turn, want 0", used)
	}
	close(turn)
	if d := h.wait(id)[id].Event.Data; d.Outcome != messages.Succeeded {
		t.Fatalf("%s %s %q", d.Outcome, d.Code, d.Message)
	}
	if used := budgetUsed(t, h); used != 1 {
		t.Errorf("%d charged after the stop, want 1", used)
	}
}

// TestBudgetChargeTooLongBeforeTheCall: a charge made more than a second
// before its call could go (here, a budget clock 1.5 s behind: every charge
// looks that old) is not used: the stop is not sent, and the command waits.
// Once charges are on time again, the stop goes, and the stale charges
// have been taken back: one stop, one charge.
func TestBudgetChargeTooLongBeforeTheCall(t *testing.T) {
	var behind atomic.Int64
	behind.Store(int64(1500 * time.Millisecond))
	clock := func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }
	h := newHarness(t, nil)
	h.startWorker(withBudget(t, 10, clock))
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	h.sim.SetStatus("i-late1", fakebcc.Running)
	h.publish(`{"instanceId":"i-late1","commandId":"late-1"}`, nil)
	id := "late-1"
	time.Sleep(2500 * time.Millisecond) // two deliveries at least
	if n := h.sim.Stats().StopCalls; n != 0 {
		t.Fatalf("%d stop calls on charges made 1.5 s before them, want 0", n)
	}
	behind.Store(0)
	if d := h.wait(id)[id].Event.Data; d.Outcome != messages.Succeeded {
		t.Fatalf("%s %s %q", d.Outcome, d.Code, d.Message)
	}
	if n := h.sim.Stats().StopCalls; n != 1 {
		t.Errorf("%d stop calls, want 1", n)
	}
	if used := budgetUsed(t, h); used != 1 {
		t.Errorf("%d charged after one stop, want 1 (the late charges taken back)", used)
	}
}

// TestBudgetChargedAgainWhenNoCallFollowed: a worker charged a command's
// stop and was stopped before its call went out (here its call hangs until
// the shutdown cancels it); another worker takes the command over seconds
// later, when that charge has left the budget's window. Its call is the
// first to reach the API and must be counted in the window it lands in:
// it was not (the ledger said "charged"), so a window could hold more than
// N first stop calls.
func TestBudgetChargedAgainWhenNoCallFollowed(t *testing.T) {
	h := newHarness(t, nil)
	window := 2 * time.Second
	budget := func(o *worker.Options) {
		js, err := jetstream.New(o.Conn)
		if err != nil {
			t.Fatal(err)
		}
		b, err := guard.NewBudget(guard.BudgetOptions{JetStream: js, Limit: 10, Window: window})
		if err != nil {
			t.Fatal(err)
		}
		o.Budget, o.BudgetSpec = b, "10/2s"
	}
	sent := make(chan struct{}, 1)
	hanging := func(o *worker.Options) {
		o.CallTimeout, o.ShutdownTimeout = time.Minute, 300*time.Millisecond
		api, err := bcc.New(bcc.Options{Endpoint: h.simURL, Credentials: testenv.Credentials, Timeout: time.Minute,
			Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
				sent <- struct{}{}
				<-r.Context().Done() // never sent: the worker is stopped first
				return nil, r.Context().Err()
			})})
		if err != nil {
			t.Fatal(err)
		}
		o.API = api
	}
	h.startWorker(budget, hanging)
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	h.sim.SetStatus("i-nocall1", fakebcc.Running)
	h.publish(`{"instanceId":"i-nocall1","commandId":"nocall-1"}`, nil)
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		t.Fatal("the first worker never tried the stop")
	}
	h.stop()
	used := func() int { return budgetUsedIn(t, h, window) }
	time.Sleep(2*window + time.Second) // the first charge has left the window
	if n := used(); n != 0 {
		t.Fatalf("%d used before the second worker starts, want 0 (the first charge left the window)", n)
	}
	h.startWorker(budget)
	id := "nocall-1"
	if d := h.wait(id)[id].Event.Data; d.Outcome != messages.Succeeded {
		t.Fatalf("%s %s %q", d.Outcome, d.Code, d.Message)
	}
	if n := h.sim.Stats().StopCalls; n != 1 {
		t.Fatalf("%d stop calls reached the API, want 1", n)
	}
	if n := used(); n != 1 {
		t.Errorf("%d charged in the window of the one stop call that reached the API, want 1", n)
	}
}

// roundTripper is an http.RoundTripper of a function.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
