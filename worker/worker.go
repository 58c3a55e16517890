package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// Worker consumes commands and publishes results. Create it with New and
// start it with Run; Ready reports whether it is consuming. It is safe for
// concurrent use.
type Worker struct {
	opts      Options
	js        jetstream.JetStream
	log       *slog.Logger
	tel       *observability
	protected map[string]bool
	handler   handlerFunc

	// scheduleHandler handles schedule requests (see schedule.go).
	scheduleHandler handlerFunc
	// holds watches the holds on instances (see guards.go).
	holds *guard.HoldWatcher
	// budgetLimit is the budget's N (BudgetSpec), for the metric.
	budgetLimit int
	// looks batches describe calls (see looks.go); creds is the state of
	// the BCE credentials (see credentials.go), probeCtx what their probe
	// runs on.
	looks    *looker
	creds    credentials
	probeCtx context.Context

	binding     atomic.Pointer[binding] // set once bound, replaced on rebind
	consuming   atomic.Bool
	pending     atomic.Int64 // consumer's pending count, polled for metrics
	ackPend     atomic.Int64
	paused      atomic.Bool
	pausedSince atomic.Int64 // Unix nanoseconds the pause in force began; 0 while running
	oldest      atomic.Int64 // Unix nanoseconds the oldest stored command was stored; 0: none
	leases      leases
}

// binding is what the worker found when it bound to JetStream.
type binding struct {
	*bound
	ledger    *ledger
	announcer *control.Announcer
}

// bound returns the current binding; handlers run only once there is one.
func (w *Worker) bound() *binding { return w.binding.Load() }

// New checks opts and wires a Worker; it does no I/O. Invalid options are
// an error wrapping ErrInvalidOption that names the option.
func New(opts Options) (*Worker, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	// Every JetStream write goes through the asynchronous publisher (see
	// publishAndWait); each in-flight command has at most one outstanding.
	js, err := jetstream.New(opts.Conn, jetstream.WithPublishAsyncMaxPending(max(4096, 2*opts.Concurrency)),
		jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("worker: jetstream: %w", err)
	}
	w := &Worker{opts: opts, js: js, log: opts.Logger, protected: map[string]bool{}, leases: leases{held: map[*delivery]time.Time{}}}
	for _, id := range opts.Protected {
		w.protected[id] = true
	}
	if opts.Budget != nil {
		n, _, err := guard.ParseBudget(opts.BudgetSpec)
		if err != nil {
			return nil, invalidOption("BudgetSpec", "%v", err)
		}
		w.budgetLimit = n
	}
	if w.tel, err = newObservability(w); err != nil {
		return nil, err
	}
	if w.holds, err = guard.NewHoldWatcher(guard.HoldWatcherOptions{JetStream: js, Bucket: opts.HoldsBucket, OnChange: w.announceHold, Now: opts.Now}); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.countSlowConsumers()
	w.handler = w.tel.traced(w.tel.observed(w.recovered(w.handle)))
	w.scheduleHandler = w.tel.traced(w.tel.observed(w.recovered(w.acceptSchedule)))
	return w, nil
}

// countSlowConsumers counts the connection's slow-consumer events (messages
// the client dropped) in a metric, then hands the error on to whatever
// handler the connection had (which logs it).
func (w *Worker) countSlowConsumers() {
	prev := w.opts.Conn.ErrorHandler()
	w.opts.Conn.SetErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			w.tel.slowConsumers.Add(context.Background(), 1)
		}
		if prev != nil {
			prev(nc, sub, err)
		}
	})
}

// Ready returns nil while the worker is consuming over a live connection,
// else the reason it is not (for /readyz).
func (w *Worker) Ready() error {
	if !w.consuming.Load() {
		return errors.New("not consuming commands yet")
	}
	if !w.opts.Conn.IsConnected() {
		return fmt.Errorf("NATS connection is %s", w.opts.Conn.Status())
	}
	return w.guardsReady()
}

// Run provisions (when asked) and consumes commands until ctx is done. Then
// it stops fetching, hands buffered commands back, lets in-flight ones
// finish within ShutdownTimeout (their results stored and acked), cancels
// the rest (left for another worker) and returns nil. It returns an error
// only when it cannot start consuming before ctx is done.
//
// It consumes the shared consumer of the commands stream and, while a
// store of layout 1 is being drained, the same consumer on the retired
// stream (one pool of handlers for both), and it takes schedule requests
// on a consumer of their own.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.start(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	// The watcher of the fleet (pause, counts); replaced when Run binds again.
	var stopWatch context.CancelFunc
	defer func() { stopWatch() }()
	watch := func() chan error {
		var watchCtx context.Context
		watchCtx, stopWatch = context.WithCancel(ctx)
		gone := make(chan error, 1)
		go w.watchFleet(watchCtx, gone)
		return gone
	}
	gone := watch()

	// Handlers run on a context that the stop signal does not cancel, so
	// in-flight commands can finish; it is cancelled at the shutdown deadline.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	go w.leases.keep(hardCtx, w.opts.AckWait/3, w.opts.Now)
	// The guardrails outlive the stop signal too: commands still being
	// handled at shutdown are paced and checked like the others.
	w.runGuards(hardCtx)
	w.looks, w.probeCtx = newLooker(hardCtx, w.opts.API), hardCtx
	capacity := w.opts.Concurrency + w.opts.Prefetch
	legacyCapacity := max(1, w.opts.Concurrency/2)
	work := newWork(capacity, legacyCapacity)
	main := newPuller(w.opts.Conn, w.opts.CommandsStream, w.opts.Consumer, capacity, work)
	legacy := newPuller(w.opts.Conn, w.opts.LegacyCommandsStream, w.opts.Consumer, legacyCapacity, work)
	// No command is taken while the guardrails cannot be applied.
	main.gate, legacy.gate = w.guardsReady, w.guardsReady
	schedWork := newWork(schedulerCapacity)
	scheduler := newPuller(w.opts.Conn, w.opts.CommandsStream, w.opts.SchedulerConsumer, schedulerCapacity, schedWork)
	var inflight sync.WaitGroup
	handle := func(work chan pulled, h handlerFunc, n int) {
		for range n {
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				for m := range work {
					if ctx.Err() != nil {
						// Stopping: buffered commands go straight back to
						// JetStream for another worker.
						_ = m.msg.Nak()
					} else {
						w.process(hardCtx, m.msg, h)
					}
					m.from.release(1)
				}
			}()
		}
	}
	handle(work, w.handler, w.opts.Concurrency)
	handle(schedWork, w.scheduleHandler, schedulerCapacity)

	var side sync.WaitGroup
	side.Add(2)
	go func() { defer side.Done(); w.drainLegacy(ctx, legacy) }()
	go func() { defer side.Done(); w.pullSchedules(ctx, scheduler) }()
	for ctx.Err() == nil {
		w.consume(ctx, main, gone)
		if ctx.Err() == nil {
			w.log.Warn("command consumer stopped; resuming in 1s")
			sleep(ctx, time.Second)
			if err := w.rebind(ctx); err == nil {
				stopWatch()
				gone = watch()
			}
		}
	}
	side.Wait()
	main.stop()
	legacy.stop()
	scheduler.stop()
	close(work)
	close(schedWork)
	w.consuming.Store(false)

	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	w.log.Info("stopping: waiting for in-flight commands", "timeout", w.opts.ShutdownTimeout.String())
	select {
	case <-done:
	case <-time.After(w.opts.ShutdownTimeout):
		w.log.Warn("shutdown timeout reached; cancelling unfinished commands, which go back to JetStream")
		hardCancel()
		<-done
	}
	return nil
}

// schedulerCapacity is how many schedule requests one worker takes at once.
const schedulerCapacity = 4

// start provisions or binds, retrying until it works or ctx ends.
func (w *Worker) start(ctx context.Context) error {
	delay := 500 * time.Millisecond
	for {
		err := w.rebind(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.As(err, &errPermanent{}) {
			return err
		}
		if !w.opts.Conn.IsConnected() {
			// Say what is really wrong, not what failing to reach a stream
			// looks like without a connection.
			err = fmt.Errorf("not connected to NATS (%s); still trying", w.opts.Conn.Status())
		}
		w.log.Error("cannot start consuming; retrying", "error", err, "retry_in", delay.String())
		sleep(ctx, delay)
		delay = min(delay*2, 15*time.Second)
	}
}

func (w *Worker) rebind(runCtx context.Context) error {
	// Short: when several workers create the same new replicated stream at
	// once, the server may answer only the first; the others retry soon.
	// (A migration of layout 1 cut short goes on where it stopped.)
	ctx, cancel := context.WithTimeout(runCtx, 8*time.Second)
	defer cancel()
	if w.opts.Provision {
		if err := w.provision(ctx); err != nil {
			return err
		}
	}
	b, err := w.bind(ctx)
	if err != nil {
		return err
	}
	announcer, err := control.NewAnnouncer(ctx, w.js, w.target(), messages.SourcePrefix+w.opts.WorkerID, w.opts.Now)
	if err != nil {
		return err
	}
	w.binding.Store(&binding{bound: b, announcer: announcer, ledger: w.newLedger(b)})
	// What budget the fleet runs with, for bccstop status (every worker
	// writes it; they share their configuration).
	if w.opts.Provision {
		record, _ := json.Marshal(map[string]any{"v": 1, "spec": w.opts.BudgetSpec})
		if _, err := b.fleet.Put(ctx, layout.BudgetKey, record); err != nil {
			w.log.Warn("could not record the blast-radius budget for bccstop status", "error", err)
		}
	}
	if w.opts.Provision {
		go w.sweepLedger(runCtx)
	}
	return nil
}

// newLedger is the ledger on the bucket b found.
func (w *Worker) newLedger(b *bound) *ledger {
	return &ledger{kv: b.kv, js: w.js, subjectPrefix: jsstore.SubjectPrefix(w.opts.LedgerBucket), workerID: w.opts.WorkerID,
		lease: w.opts.AckWait + 2*w.opts.CallTimeout, ttl: w.opts.LedgerTTL, now: w.opts.Now}
}

// target names the fleet for internal/control.
func (w *Worker) target() control.Target {
	return control.Target{CommandsStream: w.opts.CommandsStream, LegacyCommandsStream: w.opts.LegacyCommandsStream, Consumer: w.opts.Consumer,
		ResultsStream: w.opts.ResultsStream, ControlStream: w.opts.ControlStream, FleetBucket: w.opts.FleetBucket}
}

// consume pulls commands for the handlers until ctx ends or the consumer
// is gone. See puller for why it never holds more than it can buffer.
func (w *Worker) consume(ctx context.Context, p *puller, gone <-chan error) {
	w.consuming.Store(true)
	w.log.Info("consuming commands", "stream", w.opts.CommandsStream, "consumer", w.opts.Consumer, "concurrency", w.opts.Concurrency)
	err := p.run(ctx, gone)
	if err != nil && ctx.Err() == nil {
		w.consuming.Store(false)
		w.log.Error("command consumer unavailable", "error", err)
	}
}

// drainLegacy consumes what a release of layout 1 left in its commands
// stream (retired by provision) until the stream or its consumer is gone or
// ctx ends: queued commands keep their order and get their results once.
func (w *Worker) drainLegacy(ctx context.Context, p *puller) {
	for ctx.Err() == nil {
		if b := w.bound(); b != nil && b.legacy != nil {
			err := p.run(ctx, nil)
			if ctx.Err() != nil {
				return
			}
			w.log.Info("stopped draining the retired commands stream", "stream", w.opts.LegacyCommandsStream, "reason", errString(err))
			return
		}
		sleep(ctx, 5*time.Second)
	}
}

// pullSchedules takes schedule requests until ctx ends.
func (w *Worker) pullSchedules(ctx context.Context, p *puller) {
	for ctx.Err() == nil {
		if err := p.run(ctx, nil); err != nil && ctx.Err() == nil {
			w.log.Warn("schedule requests unavailable; retrying in 5s", "error", err)
			sleep(ctx, 5*time.Second)
		}
	}
}

// process handles one message and settles it.
func (w *Worker) process(ctx context.Context, msg *nats.Msg, h handlerFunc) {
	d, err := newDelivery(msg, w.opts.Now())
	if err != nil {
		w.log.Error("message without JetStream metadata; terminating it", "error", err)
		_ = msg.Term()
		return
	}
	w.leases.hold(d, d.received)
	r := h(ctx, d)
	w.leases.release(d)
	w.settle(ctx, d, r)
}

// leases tells JetStream that commands taking long are still being worked
// on (InProgress), from one ticker for the whole worker, so a slow call is
// not redelivered to another worker meanwhile. A delivery that finishes
// soon, nearly all of them, costs a map entry, not a timer.
type leases struct {
	mu   sync.Mutex
	held map[*delivery]time.Time // when the delivery began or InProgress was last sent
}

func (l *leases) hold(d *delivery, now time.Time) {
	l.mu.Lock()
	l.held[d] = now
	l.mu.Unlock()
}

func (l *leases) release(d *delivery) {
	l.mu.Lock()
	delete(l.held, d)
	l.mu.Unlock()
}

// keep sends InProgress for every delivery held longer than every, checking
// twice per every, until ctx ends: each is renewed well within the ack wait.
func (l *leases) keep(ctx context.Context, every time.Duration, now func() time.Time) {
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var due []*delivery
		at := now()
		l.mu.Lock()
		for d, since := range l.held {
			if at.Sub(since) >= every {
				due = append(due, d)
				l.held[d] = at
			}
		}
		l.mu.Unlock()
		for _, d := range due {
			_ = d.msg.InProgress()
		}
	}
}

// watchFleet keeps the consumer's pending counts and pause state for the
// metrics, says in one log line when the fleet is paused or resumed, and
// announces the fleet's pauses (see control.Announcer): every worker does,
// and each change is announced once.
//
// It also tells gone when the consumer (or its stream) no longer exists, so
// Run binds again (and provisions, when it does).
func (w *Worker) watchFleet(ctx context.Context, gone chan<- error) {
	t := time.NewTicker(fleetPoll)
	defer t.Stop()
	known, wasPaused := false, false
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if w.bound().legacy != nil {
			// While layout 1 is drained, a pause by its command line (of
			// its consumer alone) holds the whole fleet within fleetPoll.
			w.watchLegacyPause(reqCtx)
		}
		obs, err := w.bound().announcer.Step(reqCtx)
		cancel()
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			select {
			case gone <- fmt.Errorf("the command consumer is gone: %w", err):
			default:
			}
		} else if err != nil && ctx.Err() == nil {
			w.log.Warn("could not check or announce the fleet's pause", "error", err)
		}
		if info := obs.Info; info != nil {
			w.pending.Store(int64(info.NumPending))
			w.ackPend.Store(int64(info.NumAckPending))
			w.paused.Store(obs.Paused)
			w.pausedSince.Store(0)
			if obs.Paused && obs.Span != nil {
				w.pausedSince.Store(obs.Span.Since.UnixNano())
			}
			switch {
			case obs.Paused && (!known || !wasPaused):
				until := "resumed"
				if !obs.Until.IsZero() && !obs.Until.Equal(control.Indefinitely) {
					until = obs.Until.UTC().Format(time.RFC3339)
				}
				var reason, by string
				if obs.Span != nil {
					reason, by = obs.Span.Reason, obs.Span.By
				}
				w.log.Warn("the fleet is paused: no command is taken until "+until, "consumer", w.opts.Consumer, "reason", reason, "by", by)
			case !obs.Paused && known && wasPaused:
				w.log.Info("the fleet is resumed: taking commands again", "consumer", w.opts.Consumer)
			}
			known, wasPaused = true, obs.Paused
		}
		w.readOldest(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readOldest keeps when the oldest message of the commands stream (and of
// the legacy one, while it is drained) was stored, for the metrics.
func (w *Worker) readOldest(ctx context.Context) {
	oldest := time.Time{}
	for _, name := range []string{w.opts.CommandsStream, w.opts.LegacyCommandsStream} {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := w.js.Stream(reqCtx, name)
		cancel()
		if err != nil {
			continue
		}
		state := st.CachedInfo().State
		if state.Msgs > 0 && (oldest.IsZero() || state.FirstTime.Before(oldest)) {
			oldest = state.FirstTime
		}
	}
	if oldest.IsZero() {
		w.oldest.Store(0)
		return
	}
	w.oldest.Store(oldest.UnixNano())
}

// fleetPoll is how often a worker looks at the fleet's state.
const fleetPoll = 2 * time.Second

// backoff is the redelivery delay after the given delivery failed
// transiently: BCCSTOP_BACKOFF's entry for it (the last one repeating), plus
// up to 20% jitter, and at least what the API asked for in Retry-After.
func (w *Worker) backoff(delivered uint64, retryAfter time.Duration) time.Duration {
	i := min(max(int(delivered)-1, 0), len(w.opts.Backoff)-1)
	d := w.opts.Backoff[i]
	d += w.opts.Jitter(d / 5)
	return max(d, retryAfter)
}

func randomJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
