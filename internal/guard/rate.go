package guard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/jsstore"
)

// RegistryBucket is the default name of the worker registry bucket.
const RegistryBucket = "bccstop-workers"

// throttleKey is the registry key of the fleet's throttle record.
const throttleKey = "throttle"

// workerKeyPrefix starts every worker's key in the registry.
const workerKeyPrefix = "w."

// RegistryStream is the configuration of the worker registry bucket
// RegistryBucket: one key per running worker, kept alive by its
// heartbeats with a per-key TTL, and the fleet's throttle record.
func RegistryStream(replicas int) jetstream.StreamConfig {
	return jsstore.BucketStream(jsstore.BucketOptions{
		Bucket:       RegistryBucket,
		Description:  "bccstop: live workers (heartbeats with a per-key TTL) and the fleet's throttle record",
		Replicas:     replicas,
		History:      1,
		PerKeyTTL:    true,
		MaxValueSize: 4 << 10,
	})
}

// RateOptions configure a Rate. JetStream and WorkerID are required when
// Limit is positive; every duration has a default.
type RateOptions struct {
	// JetStream reaches the registry bucket, which must exist
	// (RegistryStream).
	JetStream jetstream.JetStream
	// Bucket is the registry bucket; default RegistryBucket.
	Bucket string
	// WorkerID names this worker in the registry (any text up to 128
	// bytes; it is encoded into the key). Two processes with the same id
	// still count as two workers.
	WorkerID string
	// Limit is the whole fleet's API calls per second. 0 means no limit:
	// Wait returns at once and nothing is registered.
	Limit float64
	// Heartbeat is how often this worker renews its registry key; default 1s.
	Heartbeat time.Duration
	// TTL is how long a key lives after its last heartbeat: a worker that
	// died stops counting that long after its last one. Whole seconds, at
	// least 3 heartbeats; default 5s.
	TTL time.Duration
	// JoinWait is how long a newly registered worker (or one whose
	// registration lapsed) waits before its first call, so that every
	// other worker has seen it and lowered its share. At least 1.5
	// heartbeats and less than TTL; default 2 heartbeats.
	JoinWait time.Duration
	// Recovery is how long the fleet takes to come back to the full rate
	// after a throttling answer (after any Retry-After hold); default 30s.
	Recovery time.Duration
	// MinFactor is the floor of the fleet's rate factor, however many
	// throttling answers come; default 0.05.
	MinFactor float64
	// MaxHold caps the fleet-wide hold a Retry-After asks for; default 2m.
	MaxHold time.Duration
	// Now is the clock; time.Now when nil. Durations are measured with it,
	// so its readings should carry a monotonic reading as time.Now's do.
	Now func() time.Time
}

func (o *RateOptions) validate() error {
	if math.IsNaN(o.Limit) || math.IsInf(o.Limit, 0) || o.Limit < 0 {
		return invalidOption("Limit", "must be a finite number of calls per second, 0 or more, got %v", o.Limit)
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"Heartbeat", o.Heartbeat}, {"TTL", o.TTL}, {"JoinWait", o.JoinWait}, {"Recovery", o.Recovery}, {"MaxHold", o.MaxHold}} {
		if d.value < 0 {
			return invalidOption(d.name, "must not be negative, got %s", d.value)
		}
	}
	if math.IsNaN(o.MinFactor) || o.MinFactor < 0 || o.MinFactor > 1 {
		return invalidOption("MinFactor", "must be between 0 and 1, got %v", o.MinFactor)
	}
	setDefault(&o.Bucket, RegistryBucket)
	setDefault(&o.Heartbeat, time.Second)
	setDefault(&o.TTL, wholeSeconds(5*o.Heartbeat))
	setDefault(&o.JoinWait, 2*o.Heartbeat)
	setDefault(&o.Recovery, 30*time.Second)
	setDefault(&o.MinFactor, 0.05)
	setDefault(&o.MaxHold, 2*time.Minute)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Limit == 0 {
		return nil
	}
	switch {
	case o.JetStream == nil:
		return invalidOption("JetStream", "is required when Limit is set")
	case o.WorkerID == "":
		return invalidOption("WorkerID", "is required when Limit is set")
	case len(o.WorkerID) > 128:
		return invalidOption("WorkerID", "is %d bytes long, more than 128", len(o.WorkerID))
	case o.TTL%time.Second != 0:
		return invalidOption("TTL", "must be whole seconds (the server counts a key's TTL in seconds), got %s", o.TTL)
	case o.TTL < 3*o.Heartbeat:
		return invalidOption("TTL", "(%s) must be at least 3 heartbeats (%s)", o.TTL, 3*o.Heartbeat)
	case o.JoinWait < o.Heartbeat*3/2:
		return invalidOption("JoinWait", "(%s) must be at least 1.5 heartbeats (%s)", o.JoinWait, o.Heartbeat*3/2)
	case o.JoinWait >= o.TTL:
		return invalidOption("JoinWait", "(%s) must be shorter than TTL (%s)", o.JoinWait, o.TTL)
	case o.MinFactor == 0:
		return invalidOption("MinFactor", "must be more than 0")
	}
	return nil
}

// Rate paces this worker's API calls so that the whole fleet together
// makes at most Limit calls in any sliding second, however many workers
// run. Create it with NewRate, run it with Run, and call Wait before every
// API call. It is safe for concurrent use.
//
// Each worker registers in the registry bucket and heartbeats its key;
// every worker watches the bucket, so it knows the live workers n, and
// grants its own calls one at a time, spaced 1/share apart, where share is
// Limit × factor / n rounded down to a whole number of calls a second (so
// that n workers' worst-aligned seconds still add up to at most the
// limit). A worker that joins, or whose registration lapsed (it was frozen
// or cut off past its TTL), makes no call until JoinWait after its
// registration was acknowledged, so the others have lowered their shares
// first; a worker that leaves deletes its key, and one that dies stops
// counting TTL after its last heartbeat. A worker grants nothing while its
// view of the fleet may be stale: while disconnected from NATS, before the
// registry's initial values are in, once its own last acknowledged
// heartbeat is older than the TTL allows, and whenever its own heartbeat
// has not come back through its watch for most of JoinWait.
//
// A worker's share below one call a second still spaces its calls a
// second or more apart, so with more workers than Limit a sliding second
// can hold one call per worker: the fleet keeps Limit on average, not in
// every second.
//
// Throttled turns a throttling answer into a fleet-wide record in the same
// bucket: the factor is halved (down to MinFactor), a Retry-After holds
// every worker until then, and the factor grows back over Recovery along a
// curve computed from the record alone, so every worker agrees without
// further writes.
type Rate struct {
	opts   RateOptions
	key    string // this worker's registry key
	run    string // this process's token, in its key and heartbeats
	wake   chan struct{}
	write  chan struct{} // a throttle record waits to be written
	stop   chan struct{} // closed when granting stops
	nc     *nats.Conn
	prefix string // subject prefix of the bucket's keys

	mu          sync.Mutex
	started     bool
	closed      bool
	queue       []*rateGrant
	lastGrant   time.Time
	synced      bool // the watch delivered the bucket's initial values
	registered  bool
	leaseUntil  time.Time // this worker's key certainly exists until then
	joinReadyAt time.Time
	beat        uint64
	sent        map[uint64]time.Time // heartbeats sent, not yet seen: beat → sent at
	seenOwn     time.Time            // when the newest heartbeat seen through the watch was sent
	peers       map[string]time.Time // other workers' keys → when they stop counting
	fleet       *throttleRecord      // the record as the watch delivered it
	fleetRev    uint64
	local       *throttleRecord // this worker's own newer record, not yet seen in the bucket
	lastErr     error
	badRecords  int
}

type rateGrant struct {
	ch      chan struct{}
	granted bool
}

// NewRate checks opts and returns a Rate; it does no I/O. Invalid options
// are an error wrapping ErrInvalidOption that names the option.
func NewRate(opts RateOptions) (*Rate, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	token := make([]byte, 6)
	if _, err := rand.Read(token); err != nil {
		return nil, fmt.Errorf("guard: rate: random token: %w", err)
	}
	r := &Rate{
		opts:   opts,
		run:    hex.EncodeToString(token),
		wake:   make(chan struct{}, 1),
		write:  make(chan struct{}, 1),
		stop:   make(chan struct{}),
		prefix: jsstore.SubjectPrefix(opts.Bucket),
		sent:   map[uint64]time.Time{},
		peers:  map[string]time.Time{},
	}
	r.key = workerKeyPrefix + keyToken(opts.WorkerID) + "." + r.run
	if opts.JetStream != nil {
		r.nc = opts.JetStream.Conn()
	}
	return r, nil
}

// Run registers this worker, keeps its registration alive, watches the
// fleet and grants calls until ctx is done; then it stops granting (Wait
// returns ErrClosed), deletes its key so the others take over its share at
// once, and returns nil. Deleting is bounded by a heartbeat's time. With
// no Limit it just waits for ctx. Run may be called once; a second call
// returns an error at once.
func (r *Rate) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("guard: rate: Run called twice")
	}
	r.started = true
	r.mu.Unlock()
	if r.opts.Limit == 0 {
		<-ctx.Done()
		r.close()
		return nil
	}
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){r.watch, r.heartbeats, r.dispatch, r.writeThrottles} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	<-ctx.Done()
	r.close()
	wg.Wait()
	r.leave()
	return nil
}

// close stops granting and releases every waiter.
func (r *Rate) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
}

// leave deletes this worker's key: a delete marker that expires by itself,
// so a registry of short-lived workers does not fill with markers.
func (r *Rate) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Heartbeat)
	defer cancel()
	msg := &nats.Msg{Subject: r.prefix + r.key, Header: nats.Header{"KV-Operation": {"DEL"}}}
	_, _ = r.opts.JetStream.PublishMsg(ctx, msg, jetstream.WithMsgTTL(r.opts.TTL))
}

// Wait blocks until this worker may make one API call, and returns nil; it
// returns ErrClosed once Run has ended, and ctx's error (saying why the
// call could not go, when it was held back) when ctx ends first. Waiters
// are served in order. With no Limit it returns nil at once.
func (r *Rate) Wait(ctx context.Context) error {
	if r.opts.Limit == 0 {
		return nil
	}
	g := &rateGrant{ch: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.queue = append(r.queue, g)
	r.mu.Unlock()
	r.poke()
	select {
	case <-g.ch:
		return nil
	case <-ctx.Done():
	case <-r.stop:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if g.granted {
		return nil
	}
	if i := slices.Index(r.queue, g); i >= 0 {
		r.queue = slices.Delete(r.queue, i, i+1)
	}
	if r.closed {
		return ErrClosed
	}
	if why := r.blockedLocked(r.opts.Now()); why != nil {
		return fmt.Errorf("guard: rate: %w (%v)", ctx.Err(), why)
	}
	return fmt.Errorf("guard: rate: %w", ctx.Err())
}

// Ready returns nil while this worker can make calls (perhaps after waiting
// its turn, or a fleet-wide Retry-After hold), else why not, wrapping
// ErrNotReady or ErrClosed: not running, disconnected from NATS, not yet
// registered or past its join wait, registration lapsed, or a stale view
// of the fleet. With no Limit it is always nil.
func (r *Rate) Ready() error {
	if r.opts.Limit == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blockedLocked(r.opts.Now())
}

// Throttled tells the fleet that the API answered a call with a throttling
// answer (429, 503), with the Retry-After it gave (0 when none). This
// worker slows down at once; the fleet's record is written in the
// background, and every worker follows it: the fleet's rate factor is
// halved (not below MinFactor), every worker holds its calls until
// Retry-After has passed (at most MaxHold), and the factor grows back to
// 1 over Recovery. Answers within 2 seconds of the last halving are the
// same episode: they can lengthen the hold but do not halve again. It does
// not block.
func (r *Rate) Throttled(retryAfter time.Duration) {
	if r.opts.Limit == 0 {
		return
	}
	now := r.opts.Now()
	hold := min(max(retryAfter, 0), r.opts.MaxHold)
	r.mu.Lock()
	rec, changed := r.nextRecord(r.currentLocked(), now, hold)
	if changed {
		r.local = &rec
	}
	r.mu.Unlock()
	if changed {
		select {
		case r.write <- struct{}{}:
		default:
		}
		r.poke()
	}
}

// RateSnapshot is what a Rate knows at one moment, for metrics and status.
type RateSnapshot struct {
	// Limit is the fleet's calls per second (0: no limit).
	Limit float64
	// Workers is the number of live workers this one counts, itself
	// included.
	Workers int
	// Share is the calls per second this worker grants now (0 while
	// held or not ready).
	Share float64
	// Factor is the fleet's rate factor after throttling answers, 1 when
	// none is in force.
	Factor float64
	// HoldUntil is the end of a fleet-wide Retry-After hold; zero when none.
	HoldUntil time.Time
	// Waiting is the number of calls waiting for their turn here.
	Waiting int
	// Registered reports whether this worker's key is known to exist.
	Registered bool
	// NotReady says why no call can be granted now; "" when calls can go.
	NotReady string
	// BadRecords counts registry values this worker could not read (an
	// unknown version): each was taken at its most cautious meaning.
	BadRecords int
}

// Snapshot returns the Rate's state now.
func (r *Rate) Snapshot() RateSnapshot {
	s := RateSnapshot{Limit: r.opts.Limit, Factor: 1, Workers: 1}
	if r.opts.Limit == 0 {
		return s
	}
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Workers = r.workersLocked(now)
	if rec := r.currentLocked(); rec != nil {
		s.Factor = rec.factorAt(now)
		if rec.HoldUntil.After(now) {
			s.HoldUntil = rec.HoldUntil
		}
	}
	s.Waiting, s.Registered, s.BadRecords = len(r.queue), r.registered, r.badRecords
	if err := r.blockedLocked(now); err != nil {
		s.NotReady = err.Error()
	} else if s.HoldUntil.IsZero() {
		s.Share = r.shareLocked(now)
	}
	return s
}

func (r *Rate) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// blockedLocked says why no call may be granted now, apart from pacing
// and holds; nil when calls may go.
func (r *Rate) blockedLocked(now time.Time) error {
	switch {
	case r.closed:
		return ErrClosed
	case !r.started:
		return notReady("rate limiter not running")
	case r.nc != nil && !r.nc.IsConnected():
		return notReady("NATS connection is %s: the fleet's share cannot be known", r.nc.Status())
	case !r.synced:
		return notReady("worker registry %s not read yet%s", r.opts.Bucket, r.lastErrLocked())
	case !r.registered:
		return notReady("not registered in %s%s", r.opts.Bucket, r.lastErrLocked())
	case !now.Before(r.leaseUntil):
		// Frozen or cut off: the key may have expired and the others
		// taken this worker's share. It joins again with its next
		// acknowledged heartbeat (see heartbeat).
		return notReady("registration lapsed: the last acknowledged heartbeat was sent %s ago, the key may have expired (TTL %s)",
			now.Sub(r.leaseUntil.Add(-r.opts.TTL+r.opts.Heartbeat)).Round(time.Millisecond), r.opts.TTL)
	case now.Before(r.joinReadyAt):
		return notReady("joining: waiting %s so every worker has seen this one", r.joinReadyAt.Sub(now).Round(time.Millisecond))
	case r.seenOwn.IsZero():
		return notReady("joining: this worker's heartbeat has not come back through the watch yet")
	case now.Sub(r.seenOwn) > r.staleAfter():
		return notReady("view of the fleet may be stale: this worker's own heartbeat has not come back through the watch for %s",
			now.Sub(r.seenOwn).Round(time.Millisecond))
	}
	return nil
}

func (r *Rate) lastErrLocked() string {
	if r.lastErr == nil {
		return ""
	}
	return ": " + r.lastErr.Error()
}

// staleAfter is how old the newest own heartbeat seen through the watch
// may be. A worker that joined after that heartbeat waits JoinWait after
// its own registration, so every call granted on this (older) view
// happens before that worker's first call.
func (r *Rate) staleAfter() time.Duration { return r.opts.JoinWait * 9 / 10 }

// workersLocked counts the live workers, this one included.
func (r *Rate) workersLocked(now time.Time) int {
	n := 1
	for key, until := range r.peers {
		if now.Before(until) {
			n++
		} else {
			delete(r.peers, key)
		}
	}
	return n
}

// shareLocked is this worker's pace in calls per second: Limit × factor
// split among the live workers, rounded down to whole calls (a worker
// spacing its calls 1/k apart makes at most k in any half-open second, so
// the fleet's shares add up to at most the limit).
func (r *Rate) shareLocked(now time.Time) float64 {
	factor := 1.0
	if rec := r.currentLocked(); rec != nil {
		factor = rec.factorAt(now)
	}
	share := r.opts.Limit * factor / float64(r.workersLocked(now))
	if share >= 1 {
		return math.Floor(share)
	}
	return share
}

// dispatch hands out grants, one at a time, for as long as ctx lasts.
func (r *Rate) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		wait := r.grantLocked(r.opts.Now())
		r.mu.Unlock()
		if wait == 0 {
			continue
		}
		timer.Reset(wait) // (Go 1.23 timers: no stale tick survives a Reset)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

// spacingMargin widens the spacing of a worker's grants a little past
// 1/share: the limit holds where the API counts, at its end, and a call
// granted on time can be a few milliseconds later on its way than the next
// one (scheduling, a connection being set up), which with exact spacing
// would put share+1 calls of one worker in some sliding second there. 3%
// absorbs 30 ms of such jitter at 8 calls a second, for 3% of throughput.
const spacingMargin = 1.03

// grantLocked grants the first waiter if it may go now and returns 0, or
// returns how long to wait before looking again.
func (r *Rate) grantLocked(now time.Time) time.Duration {
	const recheck = 50 * time.Millisecond
	if r.closed || len(r.queue) == 0 {
		return time.Hour
	}
	if r.blockedLocked(now) != nil {
		return recheck
	}
	if rec := r.currentLocked(); rec != nil && now.Before(rec.HoldUntil) {
		return min(rec.HoldUntil.Sub(now), 250*time.Millisecond)
	}
	share := r.shareLocked(now)
	if share <= 0 {
		return recheck
	}
	interval := time.Duration(float64(time.Second) / share * spacingMargin)
	if next := r.lastGrant.Add(interval); now.Before(next) {
		// Looked at again within 100ms at most: a share rising during
		// recovery shortens the interval.
		return min(next.Sub(now), 100*time.Millisecond)
	}
	g := r.queue[0]
	r.queue = r.queue[1:]
	g.granted = true
	close(g.ch)
	r.lastGrant = now
	return 0
}

// heartbeatValue is the registry value of a worker's key.
type heartbeatValue struct {
	V          int    `json:"v"`
	Worker     string `json:"worker"`
	Run        string `json:"run"`
	Beat       uint64 `json:"beat"`
	TTLSeconds int64  `json:"ttlSeconds"`
}

// heartbeats renews this worker's key every Heartbeat.
func (r *Rate) heartbeats(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		r.heartbeat(ctx)
		timer.Reset(r.opts.Heartbeat)
	}
}

func (r *Rate) heartbeat(ctx context.Context) {
	r.mu.Lock()
	r.beat++
	beat, sentAt := r.beat, r.opts.Now()
	r.sent[beat] = sentAt
	for b := range r.sent {
		if b+16 < beat {
			delete(r.sent, b) // lost: never seen through the watch
		}
	}
	r.mu.Unlock()
	payload, _ := json.Marshal(heartbeatValue{V: 1, Worker: r.opts.WorkerID, Run: r.run, Beat: beat, TTLSeconds: int64(r.opts.TTL / time.Second)})
	pubCtx, cancel := context.WithTimeout(ctx, r.opts.Heartbeat)
	_, err := r.opts.JetStream.PublishMsg(pubCtx, &nats.Msg{Subject: r.prefix + r.key, Data: payload}, jetstream.WithMsgTTL(r.opts.TTL))
	cancel()
	ackAt := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.lastErr = fmt.Errorf("heartbeat: %w", err)
		return
	}
	r.lastErr = nil
	// The key stored by the previous heartbeat lives at least until
	// leaseUntil (its TTL counted from before it was sent, less a
	// heartbeat of margin). If this one was stored before then, the key
	// never went away; otherwise the others may have dropped this worker
	// and raised their shares, and it joins again.
	if !r.registered || !ackAt.Before(r.leaseUntil) {
		r.joinReadyAt = ackAt.Add(r.opts.JoinWait)
	}
	r.registered = true
	r.leaseUntil = sentAt.Add(r.opts.TTL - r.opts.Heartbeat)
}

// watch follows the registry bucket, restarting the watch when it ends.
func (r *Rate) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.watchOnce(ctx)
		r.mu.Lock()
		r.synced = false
		if err != nil {
			r.lastErr = err
		}
		r.mu.Unlock()
		sleep(ctx, r.opts.Heartbeat/2)
	}
}

func (r *Rate) watchOnce(ctx context.Context) error {
	kv, err := r.opts.JetStream.KeyValue(ctx, r.opts.Bucket)
	if err != nil {
		return fmt.Errorf("registry bucket %s: %w", r.opts.Bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", r.opts.Bucket, err)
	}
	// Stopping the watch deletes its consumer with a request of its own
	// (nats.go's legacy API, up to 5s while NATS is unreachable): done
	// aside, so Run's return is not held up by it.
	defer func() { go func() { _ = w.Stop() }() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch of %s ended", r.opts.Bucket)
			}
			r.mu.Lock()
			r.applyLocked(e, r.opts.Now())
			r.mu.Unlock()
			r.poke()
		}
	}
}

// applyLocked takes in one entry of the registry (nil: the initial values
// are all in).
func (r *Rate) applyLocked(e jetstream.KeyValueEntry, now time.Time) {
	if e == nil {
		r.synced = true
		return
	}
	deleted := e.Operation() != jetstream.KeyValuePut
	switch key := e.Key(); {
	case key == throttleKey:
		if deleted {
			r.fleet, r.fleetRev = nil, e.Revision()
			return
		}
		rec, err := decodeThrottle(e.Value())
		if err != nil {
			// Unreadable: taken as the most cautious record there is, a
			// throttle just now down to the floor.
			r.badRecords++
			rec = throttleRecord{V: 1, At: now, Factor: r.opts.MinFactor, RecoverySeconds: r.opts.Recovery.Seconds()}
		}
		r.fleet, r.fleetRev = &rec, e.Revision()
		if r.local != nil && !rec.At.Before(r.local.At) && !rec.HoldUntil.Before(r.local.HoldUntil) {
			r.local = nil // written, or superseded
		}
	case key == r.key:
		if deleted {
			// Someone deleted this worker's key: it joins again.
			r.registered = false
			return
		}
		var v heartbeatValue
		if json.Unmarshal(e.Value(), &v) == nil && v.Run == r.run {
			if sentAt, ok := r.sent[v.Beat]; ok {
				if sentAt.After(r.seenOwn) {
					r.seenOwn = sentAt
				}
				for b := range r.sent {
					if b <= v.Beat {
						delete(r.sent, b)
					}
				}
			}
		}
	case len(key) > len(workerKeyPrefix) && key[:len(workerKeyPrefix)] == workerKeyPrefix:
		if deleted {
			delete(r.peers, key)
			return
		}
		ttl := r.opts.TTL
		var v heartbeatValue
		if err := json.Unmarshal(e.Value(), &v); err != nil || v.V != 1 {
			r.badRecords++ // still a worker: it counts, with our TTL
		} else if v.TTLSeconds > 0 {
			ttl = time.Duration(v.TTLSeconds) * time.Second
		}
		// Counted from when the heartbeat reached us, which is after it
		// was stored: this worker stops counting a peer only after the
		// server has expired its key.
		r.peers[key] = now.Add(ttl)
	}
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
