package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/messages"
)

// Holds limits and defaults.
const (
	// HoldsBucket is the name of the holds bucket.
	HoldsBucket = "bccstop-holds"
	// MaxHoldDuration is the longest a hold may last.
	MaxHoldDuration = 90 * 24 * time.Hour
	// holdTTLMargin keeps a hold's key a little past its end, so the
	// watchers end it at its until, never the server before them.
	holdTTLMargin = 10 * time.Second
)

// HoldsStream is the configuration of the holds bucket HoldsBucket: one
// key per held instance (its id), each with a per-key TTL a little past
// the hold's end, no roll-ups or purges.
func HoldsStream(replicas int) jetstream.StreamConfig {
	return jsstore.BucketStream(jsstore.BucketOptions{
		Bucket:       HoldsBucket,
		Description:  "bccstop: time-limited holds on instances (bccstop hold), one key per instance",
		Replicas:     replicas,
		History:      1,
		PerKeyTTL:    true,
		MaxValueSize: 4 << 10,
	})
}

// Hold is a time-limited hold on one instance: until it ends, the
// instance is not stopped. Stored as versioned JSON under the instance id.
type Hold struct {
	// Version is the value's format ("v"); this package writes 1.
	Version    int       `json:"v"`
	InstanceID string    `json:"instanceId"`
	Until      time.Time `json:"until"`
	Reason     string    `json:"reason"`
	By         string    `json:"by"`
	Since      time.Time `json:"since"`
	// Revision is the key's revision that holds this value.
	Revision uint64 `json:"-"`
	// Unreadable says why the stored value could not be read (an unknown
	// version, say), "" when it could. Such a value still holds its
	// instance (fail closed): until its "until" when it has a readable
	// one, else until it is replaced or released.
	Unreadable string `json:"-"`
	// Replaced is the hold in force this one replaced when it was written
	// (the holder's own, or another's with force); nil when there was none.
	Replaced *Hold `json:"-"`
}

// String says who holds the instance, why and until when, for messages.
func (h Hold) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s is held", h.InstanceID)
	if h.By != "" {
		fmt.Fprintf(&b, " by %s", h.By)
	}
	if !h.Until.IsZero() {
		fmt.Fprintf(&b, " until %s", h.Until.UTC().Format(time.RFC3339))
	}
	if h.Reason != "" {
		fmt.Fprintf(&b, ": %s", h.Reason)
	}
	if h.Unreadable != "" {
		fmt.Fprintf(&b, " (stored hold not understood: %s; held to be safe)", h.Unreadable)
	}
	return b.String()
}

// active reports whether the hold is in force at now.
func (h Hold) active(now time.Time) bool { return h.Until.IsZero() || now.Before(h.Until) }

// decodeHold reads a stored hold. A hold record it cannot read (another
// version, inconsistent fields) still holds the instance (see
// Hold.Unreadable); a value that is no hold record at all (not JSON, or
// without a version: what no release of bccstop writes, and what a NATS
// server may be made to deliver into the bucket, see docs/operations.md)
// holds nothing, and is reported.
func decodeHold(key string, data []byte, rev uint64) Hold {
	var h Hold
	err := json.Unmarshal(data, &h)
	h.Revision = rev
	switch {
	case err != nil || h.Version == 0:
		why := "no version"
		if err != nil {
			why = err.Error()
		}
		return Hold{InstanceID: key, Until: time.Unix(0, 0), Revision: rev, Unreadable: "not a hold record, ignored: " + why}
	case h.Version != 1:
		return Hold{InstanceID: key, Version: h.Version, Until: h.Until, Reason: h.Reason, By: h.By, Since: h.Since, Revision: rev,
			Unreadable: fmt.Sprintf("version %d", h.Version)}
	case h.InstanceID != key || h.Until.IsZero():
		h.InstanceID = key
		h.Unreadable = "inconsistent hold (instance id or until)"
	}
	return h
}

// HeldError is a hold that PutHolds did not replace: the instance is held
// by someone else. It matches ErrHeld.
type HeldError struct{ Hold Hold }

func (e *HeldError) Error() string {
	return e.Hold.String() + " (since " + e.Hold.Since.UTC().Format(time.RFC3339) + "); not replaced without force"
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// PutHolds holds each instance of ids until until, for reason, by by. An
// instance already held by someone else (another by) is not shortened or
// replaced: unless force, PutHolds writes nothing and returns an error
// joining a *HeldError (matching ErrHeld) for each such instance. A hold of
// the same by is changed (its since kept); an ended one is replaced. It
// returns the holds written, each with the hold in force it replaced. Each is stored with a TTL a little past until.
// Invalid ids, times or texts are an error wrapping ErrInvalidHold, before
// anything is written. A hold that changed meanwhile (another operator
// racing this one) is read again and checked again.
func PutHolds(ctx context.Context, js jetstream.JetStream, ids []string, until time.Time, reason, by string, force bool) ([]Hold, error) {
	now := time.Now()
	if err := checkHoldIDs(ids); err != nil {
		return nil, err
	}
	switch {
	case !until.After(now.Add(time.Second)):
		return nil, fmt.Errorf("%w: until %s is not in the future", ErrInvalidHold, until.UTC().Format(time.RFC3339))
	case until.Sub(now) > MaxHoldDuration:
		return nil, fmt.Errorf("%w: until %s is more than %s away", ErrInvalidHold, until.UTC().Format(time.RFC3339), MaxHoldDuration)
	case by == "":
		return nil, fmt.Errorf("%w: who holds the instances (by) is required", ErrInvalidHold)
	case len([]rune(by)) > messages.MaxRequestedBy || !messages.Printable(by):
		return nil, fmt.Errorf("%w: by must be at most %d printable characters", ErrInvalidHold, messages.MaxRequestedBy)
	case len([]rune(reason)) > messages.MaxReason || !messages.Printable(reason):
		return nil, fmt.Errorf("%w: reason must be at most %d printable characters", ErrInvalidHold, messages.MaxReason)
	}
	kv, err := js.KeyValue(ctx, HoldsBucket)
	if err != nil {
		return nil, fmt.Errorf("holds bucket %s: %w", HoldsBucket, err)
	}
	current := make(map[string]*Hold, len(ids))
	var conflicts []error
	for _, id := range ids {
		h, err := getHold(ctx, kv, id)
		if err != nil {
			return nil, err
		}
		current[id] = h
		if h != nil && h.active(now) && h.By != by && !force {
			conflicts = append(conflicts, &HeldError{Hold: *h})
		}
	}
	if len(conflicts) > 0 {
		return nil, errors.Join(conflicts...)
	}
	written := make([]Hold, 0, len(ids))
	for _, id := range ids {
		h, err := putHold(ctx, js, kv, current[id], Hold{Version: 1, InstanceID: id, Until: until.UTC(), Reason: reason, By: by, Since: now.UTC()}, force)
		if err != nil {
			return written, err
		}
		written = append(written, h)
	}
	return written, nil
}

// putHold writes one hold over prev (nil: none), compare-and-set on prev's
// revision; when it changed meanwhile, it is read and checked again.
func putHold(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, prev *Hold, h Hold, force bool) (Hold, error) {
	for attempt := 0; ; attempt++ {
		now := time.Now()
		if prev != nil && prev.active(now) {
			if prev.By != h.By && !force {
				return Hold{}, &HeldError{Hold: *prev}
			}
			if prev.By == h.By && !prev.Since.IsZero() {
				h.Since = prev.Since
			}
		}
		payload, _ := json.Marshal(h)
		ttl := wholeSeconds(h.Until.Sub(now) + holdTTLMargin)
		var rev uint64
		var err error
		if prev == nil {
			rev, err = kv.Create(ctx, h.InstanceID, payload, jetstream.KeyTTL(ttl))
		} else {
			var ack *jetstream.PubAck
			ack, err = js.PublishMsg(ctx, &nats.Msg{Subject: jsstore.SubjectPrefix(HoldsBucket) + h.InstanceID, Data: payload},
				jetstream.WithMsgTTL(ttl), jetstream.WithExpectLastSequencePerSubject(prev.Revision))
			if err == nil {
				rev = ack.Sequence
			}
		}
		if err == nil {
			h.Revision = rev
			if prev != nil && prev.active(now) {
				replaced := *prev
				h.Replaced = &replaced
			}
			return h, nil
		}
		var apiErr *jetstream.APIError
		changed := errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
		if !changed || attempt == 3 {
			return Hold{}, fmt.Errorf("hold %s: %w", h.InstanceID, err)
		}
		if prev, err = getHold(ctx, kv, h.InstanceID); err != nil {
			return Hold{}, err
		}
	}
}

// getHold reads the stored hold of id, nil when there is none (never
// held, released, or expired and gone).
func getHold(ctx context.Context, kv jetstream.KeyValue, id string) (*Hold, error) {
	e, err := kv.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("hold %s: %w", id, err)
	}
	h := decodeHold(id, e.Value(), e.Revision())
	return &h, nil
}

func checkHoldIDs(ids []string) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: no instance ids", ErrInvalidHold)
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !messages.ValidInstanceID(id) {
			return fmt.Errorf("%w: %q is not an instance id (%s)", ErrInvalidHold, truncate(id, 80), messages.InstanceIDForm)
		}
		if seen[id] {
			return fmt.Errorf("%w: %s given twice", ErrInvalidHold, id)
		}
		seen[id] = true
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ReleaseHolds ends the holds of ids now and returns the ids that were not
// held (never, or no longer). A hold changed meanwhile is read again and
// released all the same.
func ReleaseHolds(ctx context.Context, js jetstream.JetStream, ids []string) (notHeld []string, err error) {
	if err := checkHoldIDs(ids); err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, HoldsBucket)
	if err != nil {
		return nil, fmt.Errorf("holds bucket %s: %w", HoldsBucket, err)
	}
	for _, id := range ids {
		for attempt := 0; ; attempt++ {
			h, err := getHold(ctx, kv, id)
			if err != nil {
				return notHeld, err
			}
			if h == nil || !h.active(time.Now()) {
				notHeld = append(notHeld, id)
				break
			}
			err = kv.Delete(ctx, id, jetstream.LastRevision(h.Revision))
			var apiErr *jetstream.APIError
			if err == nil {
				break
			}
			if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence || attempt == 3 {
				return notHeld, fmt.Errorf("release %s: %w", id, err)
			}
		}
	}
	return notHeld, nil
}

// ListHolds returns the holds in force, sorted by instance id, unreadable
// ones included (they hold their instances). It reads without a consumer
// of its own (the stream's subjects, then each key), so a role that may
// only read single values of the bucket can list it.
func ListHolds(ctx context.Context, js jetstream.JetStream) ([]Hold, error) {
	st, err := js.Stream(ctx, jsstore.StreamName(HoldsBucket))
	if err != nil {
		return nil, fmt.Errorf("holds bucket %s: %w", HoldsBucket, err)
	}
	prefix := jsstore.SubjectPrefix(HoldsBucket)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("holds bucket %s: %w", HoldsBucket, err)
	}
	kv, err := js.KeyValue(ctx, HoldsBucket)
	if err != nil {
		return nil, fmt.Errorf("holds bucket %s: %w", HoldsBucket, err)
	}
	now := time.Now()
	var holds []Hold
	for subject := range info.State.Subjects {
		h, err := getHold(ctx, kv, strings.TrimPrefix(subject, prefix))
		if err != nil {
			return nil, err
		}
		if h != nil && h.active(now) {
			holds = append(holds, *h)
		}
	}
	slices.SortFunc(holds, func(a, b Hold) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	return holds, nil
}

// HoldEventKind says how a hold changed.
type HoldEventKind string

// The changes a HoldWatcher reports.
const (
	HoldPlaced   HoldEventKind = "held"     // placed or changed
	HoldReleased HoldEventKind = "released" // ended early (ReleaseHolds)
	HoldExpired  HoldEventKind = "expired"  // its until passed
)

// HoldEvent is one change of a hold, as a HoldWatcher saw it.
type HoldEvent struct {
	Kind HoldEventKind
	Hold Hold
	// Revision identifies the change: the hold's revision when placed or
	// expired, the delete's when released. Every watcher reports the same
	// change with the same kind and revision, so what is derived from an
	// event can be deduplicated on them.
	Revision uint64
	// Initial: found when the watcher read the bucket (at start, or again
	// after a reconnect), not seen as it happened.
	Initial bool
}

// HoldWatcherOptions configure a HoldWatcher; JetStream is required.
type HoldWatcherOptions struct {
	JetStream jetstream.JetStream
	// Bucket is the holds bucket; default HoldsBucket.
	Bucket string
	// OnChange, when set, is called for every change, in order, from the
	// watcher's goroutine: it must not block for long.
	OnChange func(HoldEvent)
	// ProbeInterval is how often the bucket's stream is looked up, to
	// notice it deleted or re-created (a watch of a deleted stream just
	// goes quiet); default 2s.
	ProbeInterval time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// HoldWatcher keeps the holds in force in memory for the worker: it
// watches the holds bucket, ends each hold at its until by itself (a key
// expiring by its TTL leaves no marker to see), and answers Check without
// I/O. Create it with NewHoldWatcher and run it with Run; it is safe for
// concurrent use.
//
// It fails closed: Ready is an error before the bucket's current values
// are in, while the connection is down, after a reconnect until the bucket
// has been read again, and when the bucket cannot be found. Callers check
// Ready before trusting a Check that says "not held".
type HoldWatcher struct {
	opts HoldWatcherOptions
	nc   *nats.Conn

	mu         sync.RWMutex
	holds      map[string]Hold // in force, or ended but not yet expired by the timer
	started    bool
	closed     bool
	synced     bool
	reconnects uint64 // the connection's reconnect count when the synced watch began
	err        error  // why the bucket cannot be read or probed
}

// NewHoldWatcher checks opts and returns a HoldWatcher; it does no I/O.
func NewHoldWatcher(opts HoldWatcherOptions) (*HoldWatcher, error) {
	switch {
	case opts.JetStream == nil:
		return nil, invalidOption("JetStream", "is required")
	case opts.ProbeInterval < 0:
		return nil, invalidOption("ProbeInterval", "must not be negative, got %s", opts.ProbeInterval)
	}
	setDefault(&opts.Bucket, HoldsBucket)
	setDefault(&opts.ProbeInterval, 2*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &HoldWatcher{opts: opts, nc: opts.JetStream.Conn(), holds: map[string]Hold{}}, nil
}

// Check returns the hold on instanceID and true while one is in force. It
// reads memory only; see Ready.
func (w *HoldWatcher) Check(instanceID string) (Hold, bool) {
	now := w.opts.Now()
	w.mu.RLock()
	h, ok := w.holds[instanceID]
	w.mu.RUnlock()
	if !ok || !h.active(now) {
		return Hold{}, false
	}
	return h, true
}

// Holds returns the holds in force, sorted by instance id.
func (w *HoldWatcher) Holds() []Hold {
	now := w.opts.Now()
	w.mu.RLock()
	holds := make([]Hold, 0, len(w.holds))
	for _, h := range w.holds {
		if h.active(now) {
			holds = append(holds, h)
		}
	}
	w.mu.RUnlock()
	slices.SortFunc(holds, func(a, b Hold) int { return strings.Compare(a.InstanceID, b.InstanceID) })
	return holds
}

// Ready returns nil while Check's answers are current, else why not
// (wrapping ErrNotReady, or ErrClosed once Run has returned).
func (w *HoldWatcher) Ready() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	switch {
	case w.closed:
		return ErrClosed
	case !w.started:
		return notReady("holds watcher not running")
	case !w.nc.IsConnected():
		return notReady("NATS connection is %s: holds may have changed unseen", w.nc.Status())
	case w.err != nil:
		return notReady("holds bucket %s: %v", w.opts.Bucket, w.err)
	case !w.synced:
		return notReady("holds bucket %s not read yet", w.opts.Bucket)
	case w.nc.Stats().Reconnects != w.reconnects:
		return notReady("reconnected to NATS: reading the holds bucket %s again", w.opts.Bucket)
	}
	return nil
}

// Run watches the holds bucket until ctx is done, then returns nil. It
// starts the watch again whenever it ends, the connection reconnects, or
// the bucket's stream is re-created. Run may be called once.
func (w *HoldWatcher) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("guard: holds: Run called twice")
	}
	w.started = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	}()
	initial := true
	for ctx.Err() == nil {
		err := w.watch(ctx, initial)
		initial = false
		w.mu.Lock()
		w.synced = false
		if err != nil && ctx.Err() == nil {
			w.err = err
		}
		w.mu.Unlock()
		sleep(ctx, min(w.opts.ProbeInterval, 500*time.Millisecond))
	}
	return nil
}

// errReconnected ends a watch after the connection reconnected: the
// watch resumes by itself, but a hold written meanwhile could be missed
// for a moment, so the bucket is read again from scratch.
var errReconnected = errors.New("reconnected")

// watch reads the bucket and follows it until the watch must start again.
func (w *HoldWatcher) watch(ctx context.Context, initial bool) error {
	reconnects := w.nc.Stats().Reconnects
	created, err := w.probe(ctx)
	if err != nil {
		return err
	}
	kv, err := w.opts.JetStream.KeyValue(ctx, w.opts.Bucket)
	if err != nil {
		return err
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	kw, err := kv.WatchAll(watchCtx)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	// Stopping deletes the watch's consumer with a request of its own,
	// which can take seconds while NATS is unreachable: done aside.
	defer func() { go func() { _ = kw.Stop() }() }()
	snapshot := map[string]Hold{}
	deleted := map[string]uint64{} // key → revision of its delete marker
	reading := true
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	probe := time.NewTicker(w.opts.ProbeInterval)
	defer probe.Stop()
	conn := time.NewTicker(100 * time.Millisecond)
	defer conn.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			switch {
			case !ok:
				return errors.New("the watch ended")
			case reading && e == nil:
				reading = false
				w.emit(w.replace(snapshot, deleted, reconnects, initial))
			case reading && e.Operation() == jetstream.KeyValuePut:
				snapshot[e.Key()] = decodeHold(e.Key(), e.Value(), e.Revision())
				delete(deleted, e.Key())
			case reading:
				delete(snapshot, e.Key())
				deleted[e.Key()] = e.Revision()
			default:
				w.emit(w.apply(e))
			}
		case <-expiry.C:
		case <-conn.C:
			if w.nc.Stats().Reconnects != reconnects {
				return errReconnected
			}
			continue
		case <-probe.C:
			c, err := w.probe(ctx)
			if err == nil && !c.Equal(created) {
				return errors.New("the bucket's stream was created again")
			}
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return err
			}
		}
		if !reading {
			w.emit(w.expire())
			w.mu.RLock()
			next := time.Hour
			now := w.opts.Now()
			for _, h := range w.holds {
				if !h.Until.IsZero() {
					next = min(next, max(h.Until.Sub(now), time.Millisecond))
				}
			}
			w.mu.RUnlock()
			expiry.Reset(next)
		}
	}
}

// probe looks the bucket's stream up and returns when it was created.
func (w *HoldWatcher) probe(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, max(w.opts.ProbeInterval, time.Second))
	defer cancel()
	st, err := w.opts.JetStream.Stream(ctx, jsstore.StreamName(w.opts.Bucket))
	if err != nil {
		return time.Time{}, err
	}
	return st.CachedInfo().Created, nil
}

func (w *HoldWatcher) emit(events []HoldEvent) {
	if w.opts.OnChange == nil {
		return
	}
	for _, e := range events {
		w.opts.OnChange(e)
	}
}

// replace installs a fresh reading of the bucket and returns how it
// differs from what was known. A hold released meanwhile is reported with
// its delete's revision, as the watchers that saw the delete report it.
func (w *HoldWatcher) replace(snapshot map[string]Hold, deleted map[string]uint64, reconnects uint64, initial bool) []HoldEvent {
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var events []HoldEvent
	for id, h := range snapshot {
		if prev, ok := w.holds[id]; ok && prev.Revision == h.Revision {
			continue
		}
		if h.active(now) {
			events = append(events, HoldEvent{Kind: HoldPlaced, Hold: h, Revision: h.Revision, Initial: true})
		} else if _, known := w.holds[id]; known || initial {
			events = append(events, HoldEvent{Kind: HoldExpired, Hold: h, Revision: h.Revision, Initial: true})
		}
	}
	for id, prev := range w.holds {
		if _, ok := snapshot[id]; ok {
			continue
		}
		switch rev, ok := deleted[id]; {
		case ok:
			events = append(events, HoldEvent{Kind: HoldReleased, Hold: prev, Revision: rev, Initial: true})
		case !prev.active(now):
			events = append(events, HoldEvent{Kind: HoldExpired, Hold: prev, Revision: prev.Revision, Initial: true})
		default: // gone without a trace: the bucket was emptied under it
			events = append(events, HoldEvent{Kind: HoldReleased, Hold: prev, Revision: prev.Revision, Initial: true})
		}
	}
	w.holds = map[string]Hold{}
	for id, h := range snapshot {
		if h.active(now) {
			w.holds[id] = h
		}
	}
	w.synced, w.reconnects, w.err = true, reconnects, nil
	sortEvents(events)
	return events
}

// apply takes in one change seen on the watch.
func (w *HoldWatcher) apply(e jetstream.KeyValueEntry) []HoldEvent {
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	id := e.Key()
	prev, had := w.holds[id]
	if e.Operation() != jetstream.KeyValuePut {
		delete(w.holds, id)
		if had && prev.active(now) {
			return []HoldEvent{{Kind: HoldReleased, Hold: prev, Revision: e.Revision()}}
		}
		return nil
	}
	h := decodeHold(id, e.Value(), e.Revision())
	if !h.active(now) {
		delete(w.holds, id)
		return []HoldEvent{{Kind: HoldExpired, Hold: h, Revision: h.Revision}}
	}
	w.holds[id] = h
	return []HoldEvent{{Kind: HoldPlaced, Hold: h, Revision: h.Revision}}
}

// expire ends the holds whose until has passed.
func (w *HoldWatcher) expire() []HoldEvent {
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var events []HoldEvent
	for id, h := range w.holds {
		if !h.active(now) {
			delete(w.holds, id)
			events = append(events, HoldEvent{Kind: HoldExpired, Hold: h, Revision: h.Revision})
		}
	}
	sortEvents(events)
	return events
}

func sortEvents(events []HoldEvent) {
	slices.SortFunc(events, func(a, b HoldEvent) int { return strings.Compare(a.Hold.InstanceID, b.Hold.InstanceID) })
}
