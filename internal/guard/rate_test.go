package guard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/testenv"
)

// Timings of the rate tests: short, so a worker that dies or is frozen
// drops out within a second.
const (
	testLimit     = 40
	testHeartbeat = 200 * time.Millisecond
	testTTL       = time.Second
	testJoinWait  = 600 * time.Millisecond
)

func rateOptions(id string, limit float64) guard.RateOptions {
	return guard.RateOptions{WorkerID: id, Limit: limit, Heartbeat: testHeartbeat, TTL: testTTL, JoinWait: testJoinWait, Recovery: 3 * time.Second}
}

func startRegistry(t *testing.T) *server.Server {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, guard.RegistryStream(1)); err != nil {
		t.Fatal(err)
	}
	return srv
}

// rateWorker is one Rate on its own connection, run until stopped or the
// test ends.
type rateWorker struct {
	rate   *guard.Rate
	cancel context.CancelFunc
	done   chan struct{}
	kill   func() // closes the connection: the worker dies without leaving
}

func startRate(t *testing.T, url string, opts guard.RateOptions) *rateWorker {
	t.Helper()
	nc, js := testenv.Connect(t, url)
	opts.JetStream = js
	r, err := guard.NewRate(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &rateWorker{rate: r, cancel: cancel, done: make(chan struct{}), kill: nc.Close}
	go func() { defer close(w.done); _ = r.Run(ctx) }()
	t.Cleanup(w.stop)
	return w
}

func (w *rateWorker) stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		buf := make([]byte, 1<<20)
		panic("Rate.Run did not return within 5s of its context ending:\n" + string(buf[:runtime.Stack(buf, true)]))
	}
}

// grants records when calls were granted.
type grants struct {
	mu    sync.Mutex
	times []time.Time
}

func (g *grants) add(t time.Time) {
	g.mu.Lock()
	g.times = append(g.times, t)
	g.mu.Unlock()
}

func (g *grants) all() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.times)
}

// hammer calls Wait from n goroutines until ctx ends, recording each grant.
func hammer(ctx context.Context, r *guard.Rate, n int, rec *grants) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := r.Wait(ctx); err != nil {
					return
				}
				rec.add(time.Now())
			}
		}()
	}
	return &wg
}

// maxPerWindow is the most grants in any half-open window [t, t+w).
func maxPerWindow(times []time.Time, w time.Duration) (most int, at time.Time) {
	times = slices.Clone(times)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	lo := 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= w {
			lo++
		}
		if n := hi - lo + 1; n > most {
			most, at = n, times[lo]
		}
	}
	return most, at
}

func countBetween(times []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range times {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// checkWindow fails the test when a sliding second holds more than the
// limit plus 10%, and logs the figure.
func checkWindow(t *testing.T, what string, times []time.Time) int {
	t.Helper()
	most, at := maxPerWindow(times, time.Second)
	t.Logf("%s: %d grants, at most %d in a sliding second (at %s)", what, len(times), most, at.Format("15:04:05.000"))
	if most > testLimit*11/10 {
		t.Errorf("%s: %d calls in the second from %s, more than %d + 10%%", what, most, at.Format("15:04:05.000"), testLimit)
	}
	return most
}

// TestRateFleetStaysWithinLimit: 1, 3 and 5 workers, each with 32
// goroutines calling Wait without pause for 10 s, joining one after
// another: no sliding second holds more than the limit (+10%), and once
// all have joined the fleet gets at least 70% of it.
func TestRateFleetStaysWithinLimit(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 5} {
		t.Run(fmt.Sprintf("%d workers", n), func(t *testing.T) {
			t.Parallel()
			srv := startRegistry(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rec := &grants{}
			var hammers []*sync.WaitGroup
			var workers []*rateWorker
			for i := range n {
				w := startRate(t, srv.ClientURL(), rateOptions(fmt.Sprintf("worker-%d", i), testLimit))
				workers = append(workers, w)
				hammers = append(hammers, hammer(ctx, w.rate, 32, rec))
				time.Sleep(150 * time.Millisecond) // staggered joins, each while the others run
			}
			testenv.Eventually(t, 5*time.Second, "every worker ready and counting the others", func() bool {
				for _, w := range workers {
					if w.rate.Ready() != nil || w.rate.Snapshot().Workers != n {
						return false
					}
				}
				return true
			})
			steady := time.Now()
			for _, h := range hammers {
				h.Wait()
			}
			end := time.Now()
			times := rec.all()
			checkWindow(t, fmt.Sprintf("%d workers", n), times)
			got := float64(countBetween(times, steady, end)) / end.Sub(steady).Seconds()
			t.Logf("%d workers: %.1f calls/s once all had joined (%.0f%% of %d); share each %.0f/s",
				n, got, 100*got/testLimit, testLimit, workers[0].rate.Snapshot().Share)
			if got < 0.7*testLimit {
				t.Errorf("%d workers made %.1f calls/s together, less than 70%% of %d", n, got, testLimit)
			}
		})
	}
}

// TestRateWorkerDyingDoesNotLetOthersExceed: one of three workers loses
// its connection (dead: no heartbeat, no delete). Its key expires by TTL,
// the two others take over its share, and no sliding second holds more
// than the limit, counting the dead worker's last calls.
func TestRateWorkerDyingDoesNotLetOthersExceed(t *testing.T) {
	t.Parallel()
	srv := startRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	rec := &grants{}
	var workers []*rateWorker
	var hammers []*sync.WaitGroup
	for i := range 3 {
		w := startRate(t, srv.ClientURL(), rateOptions(fmt.Sprintf("worker-%d", i), testLimit))
		workers = append(workers, w)
		hammers = append(hammers, hammer(ctx, w.rate, 32, rec))
	}
	testenv.Eventually(t, 5*time.Second, "three workers ready", func() bool {
		return workers[0].rate.Ready() == nil && workers[0].rate.Snapshot().Workers == 3
	})
	time.Sleep(2 * time.Second) // steady state at three shares
	died := time.Now()
	workers[2].kill()
	testenv.Eventually(t, 3*time.Second, "the survivors drop the dead worker", func() bool {
		return workers[0].rate.Snapshot().Workers == 2 && workers[1].rate.Snapshot().Workers == 2
	})
	t.Logf("survivors counted 2 workers %s after the death (TTL %s)", time.Since(died).Round(time.Millisecond), testTTL)
	for _, h := range hammers {
		h.Wait()
	}
	times := rec.all()
	checkWindow(t, "death", times)
	last := time.Now().Add(-2 * time.Second)
	if got := float64(countBetween(times, last, time.Now())) / 2; got < 0.7*testLimit {
		t.Errorf("after the death the survivors made %.1f calls/s, less than 70%% of %d", got, testLimit)
	}
}

// TestRateFrozenWorkerDoesNotBurst: a worker process frozen (SIGSTOP)
// past its TTL loses its registration; the others take its share. Thawed,
// it grants nothing until it has registered again and waited JoinWait:
// no burst of the calls that queued while it was frozen, and no sliding
// second above the limit.
func TestRateFrozenWorkerDoesNotBurst(t *testing.T) {
	t.Parallel()
	srv := startRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	rec := &grants{}
	var workers []*rateWorker
	var hammers []*sync.WaitGroup
	for i := range 2 {
		w := startRate(t, srv.ClientURL(), rateOptions(fmt.Sprintf("worker-%d", i), testLimit))
		workers = append(workers, w)
		hammers = append(hammers, hammer(ctx, w.rate, 32, rec))
	}
	child := testenv.Start(t, os.Args[0], []string{"GUARD_RATE_HELPER=1", "NATS_URL=" + srv.ClientURL(), "RUN_FOR=8s"},
		"-test.run=^TestRateHelperProcess$")
	testenv.Eventually(t, 5*time.Second, "three workers ready", func() bool {
		return workers[0].rate.Snapshot().Workers == 3 && strings.Count(child.Stdout.String(), "\n") > 5
	})
	time.Sleep(1500 * time.Millisecond)
	if err := child.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	testenv.Eventually(t, 3*time.Second, "the others drop the frozen worker", func() bool {
		return workers[0].rate.Snapshot().Workers == 2
	})
	time.Sleep(testTTL)
	if err := child.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	t.Logf("child frozen for %s", thawed.Sub(frozen).Round(time.Millisecond))
	testenv.Eventually(t, 5*time.Second, "the thawed worker counted again", func() bool {
		return workers[0].rate.Snapshot().Workers == 3
	})
	for _, h := range hammers {
		h.Wait()
	}
	if code := child.Wait(5 * time.Second); code != 0 {
		t.Fatalf("helper exited %d: %s", code, child.Stderr.String())
	}
	childTimes := parseTimes(t, child.Stdout.String())
	all := append(rec.all(), childTimes...)
	checkWindow(t, "freeze", all)
	// Only a call granted just before the freeze and recorded after it
	// may show up early; nothing more before it has joined again.
	early := countBetween(childTimes, thawed, thawed.Add(testJoinWait))
	t.Logf("thawed worker: %d grants within JoinWait (%s) of the thaw; %d grants in all", early, testJoinWait, len(childTimes))
	if early > 1 {
		t.Errorf("the thawed worker made %d calls within JoinWait of the thaw: it did not wait to be counted again", early)
	}
	if n := countBetween(childTimes, thawed, time.Now()); n == 0 {
		t.Error("the thawed worker never made a call again")
	}
}

func parseTimes(t *testing.T, out string) []time.Time {
	t.Helper()
	var times []time.Time
	for _, line := range testenv.Lines(out) {
		if line == "" || !strings.HasPrefix(line, "grant ") {
			continue
		}
		ns, err := strconv.ParseInt(strings.TrimPrefix(line, "grant "), 10, 64)
		if err != nil {
			t.Fatalf("helper output %q: %v", line, err)
		}
		times = append(times, time.Unix(0, ns))
	}
	return times
}

// TestRateHelperProcess is the worker process TestRateFrozenWorkerDoesNotBurst
// freezes: a Rate with 32 goroutines calling Wait, printing each grant.
func TestRateHelperProcess(t *testing.T) {
	if os.Getenv("GUARD_RATE_HELPER") != "1" {
		t.Skip("helper process, started by TestRateFrozenWorkerDoesNotBurst")
	}
	runFor, err := time.ParseDuration(os.Getenv("RUN_FOR"))
	if err != nil {
		t.Fatal(err)
	}
	_, js := testenv.Connect(t, os.Getenv("NATS_URL"))
	opts := rateOptions("helper", testLimit)
	opts.JetStream = js
	r, err := guard.NewRate(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.Wait(ctx) == nil {
				now := time.Now().UnixNano()
				mu.Lock()
				fmt.Fprintf(os.Stdout, "grant %d\n", now)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-done
}

// TestRateThrottledSlowsTheFleet: a throttling answer with Retry-After on
// one worker holds all three until then, halves the fleet's factor, and
// the factor grows back to 1 over the recovery period.
func TestRateThrottledSlowsTheFleet(t *testing.T) {
	t.Parallel()
	srv := startRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs [3]grants
	var workers []*rateWorker
	var hammers []*sync.WaitGroup
	for i := range 3 {
		w := startRate(t, srv.ClientURL(), rateOptions(fmt.Sprintf("worker-%d", i), testLimit))
		workers = append(workers, w)
		hammers = append(hammers, hammer(ctx, w.rate, 32, &recs[i]))
	}
	testenv.Eventually(t, 5*time.Second, "three workers ready", func() bool {
		for _, w := range workers {
			if w.rate.Ready() != nil || w.rate.Snapshot().Workers != 3 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	const retryAfter = 800 * time.Millisecond
	throttled := time.Now()
	workers[0].rate.Throttled(retryAfter)
	testenv.Eventually(t, time.Second, "every worker sees the throttle record", func() bool {
		for _, w := range workers {
			if s := w.rate.Snapshot(); s.Factor > 0.51 || s.HoldUntil.IsZero() {
				return false
			}
		}
		return true
	})
	seen := time.Since(throttled)
	t.Logf("every worker held and at factor 0.5 within %s; worker 2: %+v", seen.Round(time.Millisecond), workers[2].rate.Snapshot())
	// A second answer of the same burst does not halve again.
	workers[1].rate.Throttled(0)
	holdEnd := throttled.Add(retryAfter)
	for _, h := range hammers {
		h.Wait()
	}
	var all []time.Time
	for i := range recs {
		times := recs[i].all()
		// Allow the others a little time to see the record.
		if n := countBetween(times, throttled.Add(seen+50*time.Millisecond), holdEnd); n > 0 {
			t.Errorf("worker %d made %d calls during the fleet's Retry-After hold", i, n)
		}
		all = append(all, times...)
	}
	checkWindow(t, "throttled", all)
	before := countBetween(all, throttled.Add(-time.Second), throttled)
	firstHalf := countBetween(all, holdEnd, holdEnd.Add(500*time.Millisecond))
	lastSecond := countBetween(all, holdEnd.Add(3500*time.Millisecond), holdEnd.Add(4500*time.Millisecond))
	t.Logf("calls: %d in the second before the throttle, %d in the 500ms after the hold, %d in a second after recovery", before, firstHalf, lastSecond)
	// At factor 0.5 rising, about 10 calls, plus one per worker right at
	// the hold's end; at the full rate it would be over 20.
	if firstHalf > testLimit*2/5 {
		t.Errorf("%d calls in the first 500ms after the hold: the fleet did not slow down (factor 0.5 allows about %d)", firstHalf, testLimit/4+3)
	}
	if lastSecond < testLimit*7/10 {
		t.Errorf("%d calls in a second after the recovery period: the fleet did not come back to its rate", lastSecond)
	}
	if f := workers[2].rate.Snapshot().Factor; f != 1 {
		t.Errorf("factor after recovery %v, want 1", f)
	}
}

// TestRateNotReadyWithoutNATS: a Rate whose registry bucket is missing,
// or whose connection is down, grants nothing and says why.
func TestRateNotReadyWithoutNATS(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t) // no registry bucket
	w := startRate(t, srv.ClientURL(), rateOptions("lonely", testLimit))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := w.rate.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait without a registry: %v, want the deadline", err)
	}
	if rerr := w.rate.Ready(); !errors.Is(rerr, guard.ErrNotReady) {
		t.Fatalf("Ready without a registry: %v", rerr)
	}
	t.Logf("Wait: %v; Ready: %v", err, w.rate.Ready())

	srv2 := startRegistry(t)
	w2 := startRate(t, srv2.ClientURL(), rateOptions("cut-off", testLimit))
	testenv.Eventually(t, 5*time.Second, "ready", func() bool { return w2.rate.Ready() == nil })
	srv2.Shutdown()
	testenv.Eventually(t, 5*time.Second, "not ready once NATS is gone", func() bool {
		return errors.Is(w2.rate.Ready(), guard.ErrNotReady)
	})
	t.Logf("after shutdown: %v", w2.rate.Ready())
	w2.stop()
	if err := w2.rate.Wait(context.Background()); !errors.Is(err, guard.ErrClosed) {
		t.Fatalf("Wait after Run returned: %v, want ErrClosed", err)
	}
}

// TestRateOptions: options are checked and named; no limit means no wait.
func TestRateOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts guard.RateOptions
		want string
	}{
		{"negative limit", guard.RateOptions{Limit: -1}, "Limit"},
		{"no jetstream", guard.RateOptions{Limit: 10, WorkerID: "a"}, "JetStream"},
		{"fractional ttl", guard.RateOptions{Limit: 10, WorkerID: "a", TTL: 1500 * time.Millisecond, JetStream: dummyJS(t)}, "TTL"},
		{"join wait too short", guard.RateOptions{Limit: 10, WorkerID: "a", JoinWait: time.Second, JetStream: dummyJS(t)}, "JoinWait"},
		{"min factor", guard.RateOptions{Limit: 10, MinFactor: 2}, "MinFactor"},
	} {
		_, err := guard.NewRate(tc.opts)
		if !errors.Is(err, guard.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidOption naming %s", tc.name, err, tc.want)
		}
	}
	r, err := guard.NewRate(guard.RateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(context.Background()); err != nil || r.Ready() != nil {
		t.Fatalf("no limit: Wait %v, Ready %v", err, r.Ready())
	}
}

// dummyJS is a JetStream context for option checks.
func dummyJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	return js
}

// BenchmarkRateWait measures what Wait itself costs, with a limit far
// above what the loop can reach: no request to NATS, a hand-off to the
// dispatcher.
func BenchmarkRateWait(b *testing.B) {
	srv := testenv.NATS(b)
	_, js := testenv.Connect(b, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, guard.RegistryStream(1)); err != nil {
		b.Fatal(err)
	}
	opts := rateOptions("bench", 1e9)
	opts.JetStream = js
	r, err := guard.NewRate(opts)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(b, 5*time.Second, "ready", func() bool { return r.Ready() == nil })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := r.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
