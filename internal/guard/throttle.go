package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The fleet's throttle record: how a throttling answer to one worker slows
// every worker, and how the fleet comes back (see Rate.Throttled).

// throttleRecord is the fleet's throttle record (registry key "throttle").
type throttleRecord struct {
	V int `json:"v"`
	// At is when the throttling answer came; the episode starts then.
	At time.Time `json:"at"`
	// Factor is the fleet's rate factor right after it.
	Factor float64 `json:"factor"`
	// HoldUntil is the end of the Retry-After hold, if any.
	HoldUntil time.Time `json:"holdUntil,omitzero"`
	// RecoverySeconds is how long the factor takes to grow back to 1
	// once the hold is over.
	RecoverySeconds float64 `json:"recoverySeconds"`
	// By is the worker that got the answer.
	By string `json:"by"`
}

func decodeThrottle(data []byte) (throttleRecord, error) {
	var rec throttleRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, err
	}
	if rec.V != 1 || rec.At.IsZero() || math.IsNaN(rec.Factor) || rec.Factor <= 0 || rec.Factor > 1 || math.IsNaN(rec.RecoverySeconds) || rec.RecoverySeconds < 0 {
		return rec, fmt.Errorf("throttle record version %d not understood", rec.V)
	}
	return rec, nil
}

// factorAt is the fleet's rate factor at now: Factor until the hold is
// over, then growing back to 1 over the recovery period along
// 1 − (1 − Factor)(1 − τ)³, the rising half of the cubic of the AWS SDK's
// adaptive retry mode: quick at first, gentle near the full rate.
func (t *throttleRecord) factorAt(now time.Time) float64 {
	start := t.At
	if t.HoldUntil.After(start) {
		start = t.HoldUntil
	}
	if !now.After(start) {
		return t.Factor
	}
	if t.RecoverySeconds <= 0 {
		return 1
	}
	tau := now.Sub(start).Seconds() / t.RecoverySeconds
	if tau >= 1 {
		return 1
	}
	gap := 1 - tau
	return 1 - (1-t.Factor)*gap*gap*gap
}

// sameEpisode is how soon after a halving another throttling answer is
// taken as part of the same burst (answers to calls already in flight).
const sameEpisode = 2 * time.Second

// currentLocked is the record in force: the newer of the fleet's and
// this worker's own, not yet seen in the bucket.
func (r *Rate) currentLocked() *throttleRecord {
	switch {
	case r.local == nil:
		return r.fleet
	case r.fleet == nil || !r.fleet.At.After(r.local.At):
		return r.local
	}
	return r.fleet
}

// nextRecord is the record after a throttling answer at now asking for a
// hold, given the one in force (nil when none), and whether it changed.
func (r *Rate) nextRecord(cur *throttleRecord, now time.Time, hold time.Duration) (throttleRecord, bool) {
	var until time.Time
	if hold > 0 {
		until = now.Add(hold)
	}
	if cur != nil && now.Sub(cur.At) < sameEpisode {
		if !until.After(cur.HoldUntil) {
			return *cur, false
		}
		next := *cur
		next.HoldUntil = until
		return next, true
	}
	factor := 1.0
	if cur != nil {
		factor = cur.factorAt(now)
	}
	return throttleRecord{V: 1, At: now, Factor: max(r.opts.MinFactor, factor/2), HoldUntil: until,
		RecoverySeconds: r.opts.Recovery.Seconds(), By: r.opts.WorkerID}, true
}

// writeThrottles writes this worker's pending throttle record into the
// registry, compare-and-set on the record's revision, merging with any
// record another worker wrote meanwhile.
func (r *Rate) writeThrottles(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.write:
		}
		for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
			done, err := r.writeThrottle(ctx)
			if done {
				break
			}
			if err != nil {
				r.mu.Lock()
				r.lastErr = fmt.Errorf("throttle record: %w", err)
				r.mu.Unlock()
				sleep(ctx, r.opts.Heartbeat/4)
			}
		}
	}
}

func (r *Rate) writeThrottle(ctx context.Context) (done bool, err error) {
	r.mu.Lock()
	if r.local == nil {
		r.mu.Unlock()
		return true, nil
	}
	rec, rev := *r.local, r.fleetRev
	if r.fleet == nil {
		rev = 0
	}
	r.mu.Unlock()
	payload, _ := json.Marshal(rec)
	now := r.opts.Now()
	ttl := wholeSeconds(max(rec.HoldUntil.Sub(now), 0) + time.Duration(rec.RecoverySeconds*float64(time.Second)) + 5*time.Second)
	wctx, cancel := context.WithTimeout(ctx, r.opts.Heartbeat)
	defer cancel()
	_, err = r.opts.JetStream.PublishMsg(wctx, &nats.Msg{Subject: r.prefix + throttleKey, Data: payload},
		jetstream.WithMsgTTL(ttl), jetstream.WithExpectLastSequencePerSubject(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		// Another worker wrote first: read its record and fold ours in.
		entry, gerr := r.latestThrottle(wctx)
		if gerr != nil {
			return false, gerr
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.fleet, r.fleetRev = entry.rec, entry.rev
		if r.local != nil {
			own := *r.local
			if next, changed := r.nextRecord(r.fleet, own.At, max(own.HoldUntil.Sub(own.At), 0)); changed {
				r.local = &next
			} else {
				r.local = nil
			}
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

type throttleEntry struct {
	rec *throttleRecord
	rev uint64
}

// latestThrottle reads the stored record and its revision (nil and 0 when
// there is none).
func (r *Rate) latestThrottle(ctx context.Context) (throttleEntry, error) {
	kv, err := r.opts.JetStream.KeyValue(ctx, r.opts.Bucket)
	if err != nil {
		return throttleEntry{}, err
	}
	e, err := kv.Get(ctx, throttleKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return throttleEntry{}, nil
	case err != nil:
		return throttleEntry{}, err
	}
	rec, derr := decodeThrottle(e.Value())
	if derr != nil {
		rec = throttleRecord{V: 1, At: r.opts.Now(), Factor: r.opts.MinFactor, RecoverySeconds: r.opts.Recovery.Seconds()}
	}
	return throttleEntry{rec: &rec, rev: e.Revision()}, nil
}
