package worker

import (
	"context"
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

	binding   atomic.Pointer[binding] // set once bound, replaced on rebind
	consuming atomic.Bool
	pending   atomic.Int64 // consumer's pending count, polled for metrics
	ackPend   atomic.Int64
	paused    atomic.Bool
	leases    leases
}

// binding is what the worker found when it bound to JetStream.
type binding struct {
	ledger  *ledger
	results jetstream.Stream
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
	if w.tel, err = newObservability(w); err != nil {
		return nil, err
	}
	w.countSlowConsumers()
	w.handler = w.tel.traced(w.tel.observed(w.recovered(w.handle)))
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
	return nil
}

// Run provisions (when asked) and consumes commands until ctx is done. Then
// it stops fetching, hands buffered commands back, lets in-flight ones
// finish within ShutdownTimeout (their results stored and acked), cancels
// the rest (left for another worker) and returns nil. It returns an error
// only when it cannot start consuming before ctx is done.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.start(ctx)
	if err != nil {
		return err
	}
	if cons == nil { // ctx ended while starting
		return nil
	}
	// The poller of the consumer's state; replaced when Run binds again.
	var stopPoll context.CancelFunc
	defer func() { stopPoll() }()
	watch := func(cons jetstream.Consumer) chan error {
		var pollCtx context.Context
		pollCtx, stopPoll = context.WithCancel(ctx)
		gone := make(chan error, 1)
		go w.pollConsumer(pollCtx, cons, gone)
		return gone
	}
	gone := watch(cons)

	// Handlers run on a context that the stop signal does not cancel, so
	// in-flight commands can finish; it is cancelled at the shutdown deadline.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	go w.leases.keep(hardCtx, w.opts.AckWait/3, w.opts.Now)
	p := newPuller(w.opts.Conn, w.opts.CommandsStream, w.opts.Consumer, w.opts.Concurrency, w.opts.Prefetch)
	var inflight sync.WaitGroup
	for range w.opts.Concurrency {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			for msg := range p.work {
				if ctx.Err() != nil {
					// Stopping: buffered commands go straight back to
					// JetStream for another worker.
					_ = msg.Nak()
				} else {
					w.process(hardCtx, msg)
				}
				p.release(1)
			}
		}()
	}

	for ctx.Err() == nil {
		w.consume(ctx, p, gone)
		if ctx.Err() == nil {
			w.log.Warn("command consumer stopped; resuming in 1s")
			sleep(ctx, time.Second)
			if c, err := w.rebind(ctx); err == nil {
				stopPoll()
				gone = watch(c)
			}
		}
	}
	p.stop()
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

// start provisions or binds, retrying until it works or ctx ends.
func (w *Worker) start(ctx context.Context) (jetstream.Consumer, error) {
	delay := 500 * time.Millisecond
	for {
		cons, err := w.rebind(ctx)
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, nil
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

func (w *Worker) rebind(ctx context.Context) (jetstream.Consumer, error) {
	// Short: when several workers create the same new replicated stream at
	// once, the server may answer only the first; the others retry soon.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	if w.opts.Provision {
		if err := w.provision(ctx); err != nil {
			return nil, err
		}
	}
	cons, kv, results, err := w.bind(ctx)
	if err != nil {
		return nil, err
	}
	w.binding.Store(&binding{
		ledger: &ledger{kv: kv, js: w.js, subjectPrefix: "$KV." + w.opts.LedgerBucket + ".", workerID: w.opts.WorkerID,
			lease: w.opts.AckWait + 2*w.opts.CallTimeout, now: w.opts.Now},
		results: results,
	})
	return cons, nil
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

// process handles one message and settles it.
func (w *Worker) process(ctx context.Context, msg *nats.Msg) {
	d, err := newDelivery(msg, w.opts.Now())
	if err != nil {
		w.log.Error("message without JetStream metadata; terminating it", "error", err)
		_ = msg.Term()
		return
	}
	w.leases.hold(d, d.received)
	r := w.handler(ctx, d)
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

// pollConsumer keeps the consumer's pending counts and pause state for the
// metrics, says in one log line when the fleet is paused or resumed, and
// publishes the resumed event when a pause runs out by itself.
//
// It also tells gone when the consumer (or its stream) no longer exists, so
// Run binds again (and provisions, when it does).
func (w *Worker) pollConsumer(ctx context.Context, cons jetstream.Consumer, gone chan<- error) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var (
		known       bool
		wasPaused   bool
		pausedUntil time.Time
	)
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := cons.Info(reqCtx)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			select {
			case gone <- fmt.Errorf("the command consumer is gone: %w", err):
			default:
			}
		}
		if err == nil {
			w.pending.Store(int64(info.NumPending))
			w.ackPend.Store(int64(info.NumAckPending))
			w.paused.Store(info.Paused)
			switch {
			case info.Paused && (!known || !wasPaused):
				if info.Config.PauseUntil != nil {
					pausedUntil = *info.Config.PauseUntil
				}
				until := pausedUntil.Format(time.RFC3339)
				if pausedUntil.Equal(control.Indefinitely) {
					until = "resumed"
				}
				w.log.Warn("the fleet is paused: no command is taken until "+until, "consumer", w.opts.Consumer,
					"reason", info.Config.Metadata["bccstop.pause.reason"], "by", info.Config.Metadata["bccstop.pause.by"])
			case !info.Paused && known && wasPaused:
				ranOut := !pausedUntil.IsZero() && !w.opts.Now().Before(pausedUntil)
				w.log.Info("the fleet is resumed: taking commands again", "consumer", w.opts.Consumer, "pause_ran_out", ranOut)
				if ranOut {
					ev := messages.ControlData{Action: messages.ControlResumed, Stream: w.opts.CommandsStream, Consumer: w.opts.Consumer,
						Reason: "the pause ran out", RequestedBy: "bccstop/" + w.opts.WorkerID, Automatic: true}
					if err := control.PublishEvent(reqCtx, w.js, messages.SourcePrefix+w.opts.WorkerID, ev, control.ResumedEventID(pausedUntil)); err != nil {
						w.log.Warn("could not publish the resumed event", "error", err)
					}
				}
			}
			known, wasPaused = true, info.Paused
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

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
