package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// puller hands commands to the handlers so that the client never holds
// more messages than it has room for, by construction.
//
// Why not Consumer.Messages: nats.go buffers its pull subscription in a
// channel of exactly PullMaxMessages, which the server's status messages
// (idle heartbeats, 408 pull-expiry notices) share with the commands. While
// every handler is busy nobody reads that channel; it fills with prefetched
// commands, and the next status message or command overflows it: "slow
// consumer, messages dropped". A dropped command comes back only after the
// ack wait. A missed heartbeat (a CPU-starved process) also resets the
// client's count of what it asked for, and the next pull asks for a full
// batch while the server still holds the older request, so more arrives
// than fits.
//
// Here every message has a slot before it is asked for: a pull (one
// Consumer.Fetch) asks for exactly the slots it reserved, its messages go
// into work, whose capacity is the number of slots, and a handler gives its
// slot back when it has settled its message. The fetch's own buffer is twice
// its batch and is emptied as messages arrive, never waiting on a handler.
// Nothing can overflow, however slow the handlers or starved the process.
type puller struct {
	capacity int
	work     chan jetstream.Msg

	mu    sync.Mutex
	free  int           // slots neither reserved by a pull nor holding a message
	freed chan struct{} // signalled when slots are given back
	pulls sync.WaitGroup
}

// pullExpiry is how long one pull waits on the server for messages. Short,
// so that a pull parked on a NATS node that went away is replaced soon.
const pullExpiry = 2 * time.Second

// maxPulls bounds the pull requests one worker has open at once.
const maxPulls = 4

func newPuller(concurrency, prefetch int) *puller {
	n := concurrency + prefetch
	return &puller{capacity: n, work: make(chan jetstream.Msg, n), free: n, freed: make(chan struct{}, 1)}
}

// release gives n slots back.
func (p *puller) release(n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	p.free += n
	p.mu.Unlock()
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// reserve takes every free slot once there are at least min, waiting until
// then; it returns 0 when ctx ends first.
func (p *puller) reserve(ctx context.Context, min int) int {
	for {
		p.mu.Lock()
		if n := p.free; n >= min {
			p.free = 0
			p.mu.Unlock()
			return n
		}
		p.mu.Unlock()
		select {
		case <-p.freed:
		case <-ctx.Done():
			return 0
		}
	}
}

// run pulls for the handlers until ctx ends (it returns nil) or the
// consumer is gone (it returns why). Transient pull errors go to warn.
func (p *puller) run(ctx context.Context, cons jetstream.Consumer, warn func(error)) error {
	var (
		open  = make(chan struct{}, maxPulls) // one token per open pull
		fatal = make(chan error, maxPulls)
	)
	defer p.pulls.Wait()
	for {
		// With a pull already open, wait for a worthwhile batch rather than
		// asking for one message at a time; with none open, ask at once.
		min := 1
		if len(open) > 0 {
			min = max(1, p.capacity/4)
		}
		n := p.reserve(ctx, min)
		if n == 0 {
			return nil
		}
		select {
		case open <- struct{}{}:
		case err := <-fatal:
			p.release(n)
			return err
		case <-ctx.Done():
			p.release(n)
			return nil
		}
		p.pulls.Add(1)
		go func() {
			defer p.pulls.Done()
			defer func() { <-open }()
			got, err := p.pull(ctx, cons, n)
			p.release(n - got)
			switch {
			case err == nil:
			case isFatalPullError(err):
				fatal <- err
			default:
				warn(err)
				sleep(ctx, 100*time.Millisecond) // a server gone for a moment: no hot loop
			}
		}()
		select {
		case err := <-fatal:
			return err
		default:
		}
	}
}

// pull asks for n messages and hands each one to the handlers as it
// arrives. When ctx ends the pull ends too (the server sends nothing more to
// a request nobody listens to); a message that arrives anyway goes straight
// back to JetStream for another worker.
func (p *puller) pull(ctx context.Context, cons jetstream.Consumer, n int) (got int, err error) {
	pullCtx, cancel := context.WithTimeout(ctx, pullExpiry)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(pullCtx))
	if err != nil {
		return 0, err
	}
	// Messages that arrive after the pull's own deadline (a process thawed
	// after a freeze reads them late) still have their slots: only the end
	// of ctx, shutdown, sends them back.
	for msg := range batch.Messages() {
		if ctx.Err() != nil {
			_ = msg.Nak()
			continue
		}
		got++
		p.work <- msg // never blocks: the slot was reserved
	}
	err = batch.Error()
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil
	}
	return got, err
}

// stop ends the handlers' supply once run has returned.
func (p *puller) stop() {
	p.pulls.Wait()
	close(p.work)
}

func isFatalPullError(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrConnectionClosed)
}
