package guard_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/testenv"
)

func startCounters(t *testing.T, window time.Duration) string {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, guard.BudgetStream(1, window)); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL()
}

func newBudget(t *testing.T, url string, opts guard.BudgetOptions) *guard.Budget {
	t.Helper()
	_, js := testenv.Connect(t, url)
	opts.JetStream = js
	b, err := guard.NewBudget(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBudgetAdmitsExactlyN: five workers with 64 handlers each, 640
// charges at once against 50 stops a minute: exactly 50 admitted, not 49,
// not 51, and Used says 50.
//
// The storm is started at the beginning of a (one-second) slot: charges
// racing across a slot boundary may refuse each other pessimistically
// (never admitting more than N), which TestBudgetSlidingWindow exercises.
func TestBudgetAdmitsExactlyN(t *testing.T) {
	t.Parallel()
	const n = 50
	url := startCounters(t, time.Minute)
	var budgets []*guard.Budget
	for range 5 {
		budgets = append(budgets, newBudget(t, url, guard.BudgetOptions{Limit: n, Window: time.Minute}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Warm up each budget's view of the settled slots (one charge each
	// would count; a Used does not).
	for _, b := range budgets {
		if used, err := b.Used(ctx); err != nil || used != 0 {
			t.Fatalf("Used before: %d, %v", used, err)
		}
	}
	for time.Now().Nanosecond() > 50_000_000 { // just after a second starts
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	var admitted, refused, failed atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for w, b := range budgets {
		for h := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2 {
					d, err := b.Charge(ctx, fmt.Sprintf("w%d-h%d-%d", w, h, i))
					switch {
					case err != nil:
						failed.Add(1)
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					case d.Admitted:
						admitted.Add(1)
					default:
						refused.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("640 charges in %s: %d admitted, %d refused, %d failed", took.Round(time.Millisecond), admitted.Load(), refused.Load(), failed.Load())
	if len(errs) > 0 {
		t.Fatalf("%d charges failed, first: %v", len(errs), errs[0])
	}
	if admitted.Load() != n {
		t.Errorf("%d charges admitted, want exactly %d", admitted.Load(), n)
	}
	for i, b := range budgets {
		if used, err := b.Used(ctx); err != nil || used != n {
			t.Errorf("budget %d: Used %d, %v; want %d", i, used, err, n)
		}
	}
	d, err := budgets[0].Charge(ctx, "one-more")
	if err != nil || d.Admitted || d.Used != n || d.Limit != n || d.Window != time.Minute {
		t.Errorf("one more charge: %+v, %v; want refused with %d used", d, err, n)
	}
	// The oldest call leaves the window a little more than a minute
	// after it was counted (the budget counts whole slots and a margin).
	if wait := d.FreesAt.Sub(start); wait < time.Minute || wait > time.Minute+5*time.Second {
		t.Errorf("FreesAt %s after the first charge, want a little over a minute", wait)
	}
}

// TestBudgetSlidingWindow: five workers with 4 handlers each charge
// all the time for 9 s against 10 stops in 3 s: every window of 3 s, timed
// by when the server stored the admitted increments, holds at most 10, and
// the budget is used again as calls leave the window.
func TestBudgetSlidingWindow(t *testing.T) {
	t.Parallel()
	const (
		n      = 10
		window = 3 * time.Second
	)
	url := startCounters(t, window)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	var mu sync.Mutex
	admitted := map[string]bool{}
	var wg sync.WaitGroup
	var failures, charges atomic.Int64
	for w := range 5 {
		b := newBudget(t, url, guard.BudgetOptions{Limit: n, Window: window, MaxClockOffset: 50 * time.Millisecond, MaxChargeTime: 500 * time.Millisecond})
		for h := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					nonce := fmt.Sprintf("w%d-h%d-%d", w, h, i)
					d, err := b.Charge(ctx, nonce)
					charges.Add(1)
					if err != nil {
						if ctx.Err() == nil {
							failures.Add(1)
							t.Logf("charge %s: %v", nonce, err)
						}
						return
					}
					if d.Admitted {
						mu.Lock()
						admitted[nonce] = true
						mu.Unlock()
					}
					time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
				}
			}()
		}
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d charges failed", failures.Load())
	}
	readFrom := time.Now()
	stored := admittedTimes(t, url, admitted)
	t.Logf("read the stream in %s", time.Since(readFrom).Round(time.Millisecond))
	most, at := maxPerWindow(stored, window)
	t.Logf("%d charges, %d admitted over 9s; at most %d in any %s window (from %s), by the server's timestamps",
		charges.Load(), len(stored), most, window, at.Format("15:04:05.000"))
	if most > n {
		t.Errorf("%d admitted charges in the %s from %s: the budget of %d was exceeded", most, window, at.Format("15:04:05.000"), n)
	}
	if len(stored) <= n {
		t.Errorf("only %d charges admitted in 9s: the budget was not used again as calls left the window", len(stored))
	}
}

// admittedTimes reads the counter stream and returns when the server
// stored the increment of each admitted nonce: a nonce's last "charge"
// increment, which no "undo" took back.
func admittedTimes(t *testing.T, url string, admitted map[string]bool) []time.Time {
	t.Helper()
	_, js := testenv.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, guard.BudgetStreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, guard.BudgetStreamName)
	if err != nil {
		t.Fatal(err)
	}
	last := info.CachedInfo().State.LastSeq
	charged := map[string]time.Time{} // msg id → stored at
	undone := map[string]bool{}
	for seen := uint64(0); seen < last; {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, _ := m.Metadata()
			seen = meta.Sequence.Stream
			id := m.Headers().Get(nats.MsgIdHdr)
			kind, rest, _ := strings.Cut(id, " ")
			switch kind {
			case "charge":
				charged[rest] = meta.Timestamp
			case "undo":
				undone[rest] = true
			default:
				t.Fatalf("increment with Nats-Msg-Id %q", id)
			}
		}
		if err := batch.Error(); err != nil || (got == 0 && ctx.Err() != nil) {
			t.Fatalf("reading the counter stream at %d of %d: %v", seen, last, errors.Join(err, ctx.Err()))
		}
		if got == 0 {
			time.Sleep(20 * time.Millisecond) // not delivered yet
		}
	}
	var times []time.Time
	for genNonce, at := range charged {
		_, nonce, _ := strings.Cut(genNonce, " ")
		if !undone[genNonce] {
			if !admitted[nonce] {
				t.Errorf("charge %q was neither admitted nor taken back", genNonce)
			}
			times = append(times, at)
		}
	}
	if len(times) != len(admitted) {
		t.Errorf("%d increments stand, %d charges were admitted", len(times), len(admitted))
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	return times
}

// TestBudgetRepeatedChargeCountsOnce: an increment published twice with
// the same Nats-Msg-Id counts once; a charge whose answer was lost,
// charged again with its nonce, counts once; a refused charge does not
// count; and Used reports the count.
func TestBudgetRepeatedChargeCountsOnce(t *testing.T) {
	t.Parallel()
	url := startCounters(t, time.Minute)
	b := newBudget(t, url, guard.BudgetOptions{Limit: 3, Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := b.Charge(ctx, "cmd-1")
	if err != nil || !d.Admitted || d.Used != 1 {
		t.Fatalf("first charge: %+v, %v", d, err)
	}
	// The same nonce again: the answer was lost and no call made. The
	// earlier increment is taken back and the charge made afresh.
	d, err = b.Charge(ctx, "cmd-1")
	if err != nil || !d.Admitted || d.Used != 1 {
		t.Fatalf("charge repeated with the same nonce: %+v, %v; want admitted, 1 used", d, err)
	}
	if used, err := b.Used(ctx); err != nil || used != 1 {
		t.Fatalf("Used after the repeat: %d, %v; want 1", used, err)
	}
	// The client's own retry of the publish: the server drops the repeat.
	_, js := testenv.Connect(t, url)
	stream, err := js.Stream(ctx, guard.BudgetStreamName)
	if err != nil {
		t.Fatal(err)
	}
	subject := stream.CachedInfo().Config.Subjects[0]
	subject = strings.TrimSuffix(subject, ">") + "1.999"
	for range 2 {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: nats.Header{"Nats-Incr": {"+1"}}}, jetstream.WithMsgID("retried"))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("publish: %+v", *ack)
	}
	m, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil || string(m.Data) != `{"val":"1"}` {
		t.Fatalf("counter after a repeated increment: %s, %v", m.Data, err)
	}
	d, err = b.Charge(ctx, "cmd-2")
	if err != nil || !d.Admitted || d.Used != 2 {
		t.Fatalf("second charge: %+v, %v", d, err)
	}
	d, err = b.Charge(ctx, "cmd-3")
	if err != nil || !d.Admitted || d.Used != 3 {
		t.Fatalf("third charge: %+v, %v", d, err)
	}
	d, err = b.Charge(ctx, "cmd-4")
	if err != nil || d.Admitted || d.Used != 3 || d.FreesAt.IsZero() {
		t.Fatalf("fourth charge: %+v, %v; want refused, 3 used, a time it frees", d, err)
	}
	if used, err := b.Used(ctx); err != nil || used != 3 {
		t.Fatalf("Used: %d, %v; want 3 (the refused charge does not count)", used, err)
	}
	// The refused charge, charged again: still refused, still not counted.
	d, err = b.Charge(ctx, "cmd-4")
	if err != nil || d.Admitted || d.Used != 3 {
		t.Fatalf("refused charge repeated: %+v, %v", d, err)
	}
}

// TestBudgetWithoutStream: no counter stream, no decision.
func TestBudgetWithoutStream(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	b := newBudget(t, srv.ClientURL(), guard.BudgetOptions{Limit: 3, Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d, err := b.Charge(ctx, "x"); !errors.Is(err, guard.ErrNotReady) || d.Admitted {
		t.Fatalf("charge without a stream: %+v, %v", d, err)
	}
	if _, err := b.Used(ctx); !errors.Is(err, guard.ErrNotReady) {
		t.Fatalf("Used without a stream: %v", err)
	}
	for _, opts := range []guard.BudgetOptions{{}, {Limit: 1}, {Limit: 1, Window: time.Millisecond}, {Limit: -1, Window: time.Minute}} {
		if _, err := guard.NewBudget(opts); !errors.Is(err, guard.ErrInvalidOption) {
			t.Errorf("NewBudget(%+v): %v, want ErrInvalidOption", opts, err)
		}
	}
}

func TestParseBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		d    time.Duration
		want string // in the error; "" for none
	}{
		{in: "200/10m", n: 200, d: 10 * time.Minute},
		{in: " 50 / 1m ", n: 50, d: time.Minute},
		{in: "1/1s", n: 1, d: time.Second},
		{in: "0/10m", want: "at least 1"},
		{in: "-5/10m", want: "at least 1"},
		{in: "NaN/10m", want: "not a whole number"},
		{in: "1.5/10m", want: "not a whole number"},
		{in: "200/NaN", want: "not a duration"},
		{in: "200", want: "N/DURATION"},
		{in: "/10m", want: "missing"},
		{in: "200/", want: "missing"},
		{in: "200/10m/5", want: "one /"},
		{in: "99999999999999999999/10m", want: "out of range"},
		{in: "2000000/10m", want: "at most"},
		{in: "200/9999999999h", want: "not a duration"},
		{in: "200/500ms", want: "at least 1s"},
		{in: "200/-1m", want: "at least 1s"},
		{in: "200/0s", want: "at least 1s"},
		{in: "200/200h", want: "at most"},
		{in: "", want: "N/DURATION"},
	} {
		n, d, err := guard.ParseBudget(tc.in)
		switch {
		case tc.want == "" && (err != nil || n != tc.n || d != tc.d):
			t.Errorf("ParseBudget(%q) = %d, %s, %v; want %d, %s", tc.in, n, d, err, tc.n, tc.d)
		case tc.want != "" && (!errors.Is(err, guard.ErrInvalidBudget) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseBudget(%q): %v; want ErrInvalidBudget saying %q", tc.in, err, tc.want)
		}
	}
}

// BenchmarkBudgetCharge measures one admitted charge: an increment and the
// reads of the slots not yet settled.
func BenchmarkBudgetCharge(b *testing.B) {
	srv := testenv.NATS(b)
	_, js := testenv.Connect(b, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, guard.BudgetStream(1, time.Hour)); err != nil {
		b.Fatal(err)
	}
	budget, err := guard.NewBudget(guard.BudgetOptions{JetStream: js, Limit: guard.MaxBudgetStops, Window: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := budget.Used(ctx); err != nil { // the settled slots, read once
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if d, err := budget.Charge(ctx, fmt.Sprintf("bench-%d", i)); err != nil || !d.Admitted {
			b.Fatal(d, err)
		}
	}
}
