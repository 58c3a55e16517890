package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// puller hands commands to the handlers so that the client never holds
// more messages than it has room for and never drops one, by construction.
//
// Why not nats.go's Consumer.Messages or Fetch: Messages buffers its pull
// subscription in a channel of exactly PullMaxMessages, which the server's
// status messages (idle heartbeats, 408 pull-expiry notices) share with the
// commands; while every handler is busy nobody reads it, and a heartbeat
// missed by a starved process makes the client reset its count of what it
// asked for and ask for a full batch again while the server still holds the
// older request: more arrives than fits, and the channel overflows ("slow
// consumer, messages dropped"). Fetch unsubscribes when its deadline passes
// and drops what is still buffered, which a process frozen past the deadline
// does. A dropped command comes back only after the ack wait.
//
// Here every message has a slot before it is asked for. A pull request asks
// for exactly the slots it reserved, on a subscription of its own whose
// buffer is unbounded (the request bounds what can arrive), and which lives
// until the request is over: all its messages came, or the server ended it
// (404, 408, 409: a status always follows the request's messages), so
// nothing can be buffered when it goes. A request the server never ends
// (the connection dropped and the server lost it) is written off: its unused
// slots are given back, and whatever still comes for it goes straight back
// to JetStream for another delivery rather than wait out the ack wait. A
// handler gives its slot back when it has settled its message.
type puller struct {
	nc       *nats.Conn
	subject  string // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
	capacity int
	// work is where pulled messages go; several pullers may share one
	// (see newWork), each bounded by its own capacity.
	work chan pulled
	// gate, when set, keeps the puller from asking for messages while it
	// returns an error (checked again every second).
	gate func() error

	mu       sync.Mutex
	free     int // slots neither reserved by a request nor holding a message
	requests map[*pullRequest]bool
	freed    chan struct{} // signalled when slots are given back
	fatal    chan error    // the consumer is gone
	closing  bool
}

type pullRequest struct {
	n, got     int
	sub        *nats.Subscription
	sent       time.Time
	reconnects uint64 // the connection's reconnect count when it was sent
	writtenOff time.Time
}

// pullExpiry is how long one pull request waits on the server for messages:
// short, so a request parked on a NATS node that went away is replaced soon.
// A request the server has not ended is written off pullGrace after it
// expired if the connection dropped since it was sent (the server may have
// lost it), and pullOverdue after in any case; its subscription lingers
// pullLinger more to send back whatever still comes.
const (
	pullExpiry  = 2 * time.Second
	pullGrace   = 2 * time.Second
	pullOverdue = 30 * time.Second
	pullLinger  = time.Minute
)

// maxPulls bounds the pull requests one worker has open at once.
const maxPulls = 4

// pulled is a message and the puller whose slot it holds.
type pulled struct {
	msg  *nats.Msg
	from *puller
}

// newWork makes the channel several pullers feed: its buffer holds what
// all of them may have pulled at once, so none ever blocks on it.
func newWork(capacities ...int) chan pulled {
	n := 0
	for _, c := range capacities {
		n += c
	}
	return make(chan pulled, n)
}

// newPuller pulls from a consumer into work, at most capacity messages
// without a free handler slot (work's buffer must have room for them).
func newPuller(nc *nats.Conn, stream, consumer string, capacity int, work chan pulled) *puller {
	return &puller{nc: nc, subject: "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer, capacity: capacity,
		work: work, free: capacity, requests: map[*pullRequest]bool{},
		freed: make(chan struct{}, 1), fatal: make(chan error, 1)}
}

// release gives n slots back.
func (p *puller) release(n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	p.free += n
	p.mu.Unlock()
	p.signal()
}

func (p *puller) signal() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// run pulls for the handlers until ctx ends (it returns nil) or the consumer
// is gone (gone is signalled, or the server says so: it returns why).
func (p *puller) run(ctx context.Context, gone <-chan error) error {
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	for {
		if r, ok := p.reserve(); ok {
			if err := p.request(ctx, r); err != nil {
				p.end(r, true)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(100 * time.Millisecond): // not connected: no hot loop
				}
			}
			continue
		}
		var regate <-chan time.Time
		if p.gated() {
			regate = time.After(100 * time.Millisecond) // look at the gate again soon
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-gone:
			return err
		case err := <-p.fatal:
			return err
		case <-p.freed:
		case <-regate:
		case <-sweep.C:
			p.sweep()
		}
	}
}

// reserve takes the free slots for a new request when one is worthwhile:
// with no request open, any free slot; with some open, a quarter of the
// capacity, so a busy worker asks in batches, not one message at a time.
func (p *puller) reserve() (*pullRequest, bool) {
	if p.gated() {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	open := 0
	for r := range p.requests {
		if r.writtenOff.IsZero() {
			open++
		}
	}
	switch {
	case open >= maxPulls, p.free == 0, open > 0 && p.free < max(1, p.capacity/4):
		return nil, false
	}
	r := &pullRequest{n: p.free, sent: time.Now(), reconnects: p.nc.Stats().Reconnects}
	p.free = 0
	p.requests[r] = true
	return r, true
}

// gated reports whether the gate keeps the puller from asking now.
func (p *puller) gated() bool { return p.gate != nil && p.gate() != nil }

// request subscribes the request's own inbox and sends it.
func (p *puller) request(ctx context.Context, r *pullRequest) error {
	inbox := p.nc.NewInbox()
	sub, err := p.nc.Subscribe(inbox, func(m *nats.Msg) { p.receive(ctx, r, m) })
	if err != nil {
		return fmt.Errorf("subscribe for pulled commands: %w", err)
	}
	// Unbounded: the request bounds what can arrive, and nothing is dropped.
	_ = sub.SetPendingLimits(-1, -1)
	p.mu.Lock()
	r.sub = sub
	p.mu.Unlock()
	body, _ := json.Marshal(struct {
		Batch   int           `json:"batch"`
		Expires time.Duration `json:"expires"`
	}{r.n, pullExpiry})
	return p.nc.PublishRequest(p.subject, inbox, body)
}

// receive takes one message of request r: a command for a handler, or the
// status that ends the request. It never blocks.
func (p *puller) receive(ctx context.Context, r *pullRequest, m *nats.Msg) {
	if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
		switch desc := strings.ToLower(m.Header.Get("Description")); {
		case status == "100": // an idle heartbeat (not asked for) or flow control
			return
		case status == "409" && strings.Contains(desc, "consumer deleted"):
			select {
			case p.fatal <- errors.New("the command consumer was deleted"):
			default:
			}
		case status == "503":
			// No one answers pulls: the consumer (or JetStream) is not there.
			select {
			case p.fatal <- errors.New("no consumer answers pull requests (no responders)"):
			default:
			}
		}
		p.end(r, true) // 404 no messages, 408 expired, 409 and the like
		return
	}
	p.mu.Lock()
	take := r.writtenOff.IsZero() && !p.closing && ctx.Err() == nil && r.got < r.n
	if take {
		r.got++
		// Never blocks: the slot was reserved. Sent under the lock, so stop
		// cannot close the channel in between.
		p.work <- pulled{m, p}
	}
	done := r.got == r.n
	p.mu.Unlock()
	if !take {
		// No slot for it (its request was written off, or the worker is
		// stopping): straight back to JetStream for another delivery.
		_ = m.Nak()
		return
	}
	if done {
		p.end(r, false) // it had all it asked for: no status follows
	}
}

// end closes request r: its subscription goes and its unused slots come
// back (unless it was written off, which gave them back already).
func (p *puller) end(r *pullRequest, giveBack bool) {
	p.mu.Lock()
	if !p.requests[r] {
		p.mu.Unlock()
		return
	}
	delete(p.requests, r)
	unused := r.n - r.got
	if !r.writtenOff.IsZero() || !giveBack {
		unused = 0
	}
	p.free += unused
	sub := r.sub
	p.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	p.signal()
}

// sweep writes off requests the server will not end, and drops the
// subscriptions of written-off requests that have lingered long enough.
func (p *puller) sweep() {
	now := time.Now()
	reconnects := p.nc.Stats().Reconnects
	var gone []*pullRequest
	p.mu.Lock()
	for r := range p.requests {
		expired := r.sent.Add(pullExpiry)
		switch {
		case !r.writtenOff.IsZero():
			if now.Sub(r.writtenOff) > pullLinger {
				gone = append(gone, r)
			}
		case reconnects != r.reconnects && now.After(expired.Add(pullGrace)), now.After(expired.Add(pullOverdue)):
			r.writtenOff = now
			p.free += r.n - r.got
		}
	}
	p.mu.Unlock()
	p.signal()
	for _, r := range gone {
		p.end(r, false)
	}
}

// stop ends this puller's supply once run has returned (the caller closes
// the work channel once every puller feeding it has stopped). Requests
// still open keep their subscriptions a little longer, so what the server
// sends them meanwhile goes back to JetStream at once instead of being lost.
func (p *puller) stop() {
	p.mu.Lock()
	p.closing = true
	var open []*pullRequest
	for r := range p.requests {
		open = append(open, r)
	}
	p.mu.Unlock()
	if len(open) > 0 {
		time.AfterFunc(pullExpiry+pullGrace, func() {
			for _, r := range open {
				p.end(r, false)
			}
		})
	}
}
