package worker

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
)

// Looks at instances (describe calls) are shared. A handler that needs to
// know an instance's status (waiting for Stopped, reconciling after an
// attempt whose fate is unknown) asks the looker, which gathers what every
// handler of this worker asks for together, per region, into one batch
// describe (POST /v2/instance/listByInstanceId), up to lookBatch instances
// a call. Thousands of commands waiting for Stopped then cost a call per
// hundred looks, not one each.

// A batch is sent once no look has joined it for lookIdle (looks asked
// together arrive within microseconds of each other), or lookWindow after
// it began, or when it holds lookBatch instances.
const (
	lookIdle   = 2 * time.Millisecond
	lookWindow = 20 * time.Millisecond
	lookBatch  = 100
)

// looker batches describe calls. Create it with newLooker; it is safe for
// concurrent use.
type looker struct {
	api  API
	base context.Context // the calls' context: ends at the worker's hard stop

	mu      sync.Mutex
	pending map[string]*lookBatchReq // region → the batch being gathered
}

// lookBatchReq is one batch being gathered: the ids asked for, and the
// channel its answer is announced on (closed once answer is set).
type lookBatchReq struct {
	region string
	began  time.Time
	timer  *time.Timer
	ids    []string
	seen   map[string]bool
	done   chan struct{}
	answer lookAnswer
}

// lookAnswer is what one batch describe said.
type lookAnswer struct {
	found map[string]bcc.Instance
	resp  bcc.Response
	err   error
	// panicked is what the API call panicked with: re-raised in every
	// handler that asked, where the worker's recovery handles it.
	panicked any
}

func newLooker(ctx context.Context, api API) *looker {
	return &looker{api: api, base: ctx, pending: map[string]*lookBatchReq{}}
}

// describe returns the instance as a describe of it would: an instance the
// batch does not list answers 404 NoSuchObject.
func (l *looker) describe(ctx context.Context, region, id string) (bcc.Instance, bcc.Response, error) {
	b := l.join(region, id)
	select {
	case <-b.done:
	case <-ctx.Done():
		return bcc.Instance{}, bcc.Response{}, &bcc.TransportError{Err: ctx.Err(), NotSent: true}
	}
	a := b.answer
	if a.panicked != nil {
		panic(a.panicked)
	}
	if a.err != nil {
		if len(b.ids) == 1 {
			return bcc.Instance{}, a.resp, a.err
		}
		return bcc.Instance{}, a.resp, fmt.Errorf("describe %s: %w", id, a.err)
	}
	in, ok := a.found[id]
	if !ok {
		return bcc.Instance{}, a.resp, &bcc.APIError{StatusCode: http.StatusNotFound, Code: bcc.CodeNoSuchObject, RequestID: a.resp.RequestID,
			Message: "the batch describe does not list instance " + id}
	}
	return in, a.resp, nil
}

// join adds id to the region's batch being gathered, starting one (and its
// timer) when there is none, and sends it at once when it is full.
func (l *looker) join(region, id string) *lookBatchReq {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.pending[region]
	switch {
	case b == nil:
		b = &lookBatchReq{region: region, began: time.Now(), seen: map[string]bool{}, done: make(chan struct{})}
		l.pending[region] = b
		b.timer = time.AfterFunc(lookIdle, func() { l.flush(b) })
	case time.Since(b.began) < lookWindow-lookIdle:
		b.timer.Reset(lookIdle) // a flush that ran meanwhile finds b sent
	}
	if !b.seen[id] {
		b.seen[id] = true
		b.ids = append(b.ids, id)
	}
	if len(b.ids) >= lookBatch {
		delete(l.pending, region)
		go l.send(b)
	}
	return b
}

// flush sends b when no look joined it for lookIdle, unless it was sent
// already.
func (l *looker) flush(b *lookBatchReq) {
	l.mu.Lock()
	if l.pending[b.region] != b {
		l.mu.Unlock()
		return
	}
	delete(l.pending, b.region)
	l.mu.Unlock()
	l.send(b)
}

// send makes the batch's call and announces its answer. A batch of one
// instance is a plain describe (GET /v2/instance/{id}): one call either
// way, and its 404 is the service's own.
func (l *looker) send(b *lookBatchReq) {
	defer close(b.done)
	defer func() {
		if p := recover(); p != nil {
			b.answer = lookAnswer{panicked: p}
		}
	}()
	if len(b.ids) == 1 {
		in, resp, err := l.api.DescribeInstance(l.base, b.region, b.ids[0])
		b.answer = lookAnswer{found: map[string]bcc.Instance{b.ids[0]: in}, resp: resp, err: err}
		return
	}
	found, resp, err := l.api.DescribeInstances(l.base, b.region, b.ids)
	b.answer = lookAnswer{found: found, resp: resp, err: err}
}
