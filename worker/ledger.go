package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// The ledger remembers, per command identity, which command the identity
// names (its content and fingerprint), whether a worker is attempting it
// and, once decided, its result event. It lives in a JetStream KeyValue
// bucket (see internal/jsstore) with no bucket-wide TTL: an entry of a
// command not yet concluded (attempting, retrying, waiting for Stopped)
// never expires, however long the fleet is paused. Nor does the record of
// a decided outcome while the message that decided it is not acknowledged:
// it is written without a TTL, and only once the acknowledgement has been
// sent is it written again, settled, with a per-message TTL
// (Options.LedgerTTL), after which a repeat is a new command (see
// ledger.settle). So a redelivery of a concluded message, however late
// (its ack lost, then the fleet paused for a weekend), is answered from
// the record, never attempted again. Writes are compare-and-set, so two
// workers never call the API for one command at once, and an identity,
// once used, names one command only.
//
// Entries are versioned. Layout 1 (the releases before ledgerVersion 2)
// wrote plain JSON objects; this release writes ledgerMagic followed by the
// JSON, which the earlier releases cannot decode: they hand such a command
// back rather than act on an entry they do not understand, and so does this
// release for an entry of a later version (errUnknownLedgerEntry).

// Ledger entry states.
const (
	stateAttempting = "attempting" // a worker owns the command and may be calling the API
	stateRetrying   = "retrying"   // the last attempt failed transiently; anyone may take over
	stateWaiting    = "waiting"    // the stop went through; waiting for the instance to be Stopped (see wait.go)
	stateDone       = "done"       // the outcome is decided; Event holds the result
)

// ledgerMagic starts every entry this release writes; the JSON follows.
// ledgerVersionPrefix starts the entries of every release from layout 2 on.
const (
	ledgerMagic         = layout.LedgerMagic
	ledgerVersionPrefix = layout.LedgerVersionPrefix
)

// errUnknownLedgerEntry means an entry was written by a release this one
// does not know (a later version): the command is handed back, never
// acted on by guessing what the entry means.
var errUnknownLedgerEntry = errors.New("ledger entry of an unknown version (written by a newer bccstop?)")

// decodeLedgerEntry reads an entry of this release or of layout 1.
func decodeLedgerEntry(raw []byte) (ledgerEntry, error) {
	var e ledgerEntry
	switch {
	case bytes.HasPrefix(raw, []byte(ledgerMagic)):
		raw = raw[len(ledgerMagic):]
	case bytes.HasPrefix(raw, []byte(ledgerVersionPrefix)):
		version, _, _ := bytes.Cut(raw[len(ledgerVersionPrefix):], []byte(" "))
		return e, fmt.Errorf("%w: version %q", errUnknownLedgerEntry, printable(string(version), 20))
	case len(raw) > 0 && raw[0] == '{':
		// Layout 1: the same fields, plain JSON.
	default:
		return e, errors.New("ledger entry is not one bccstop wrote")
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return e, err
	}
	switch e.State {
	case stateAttempting, stateRetrying, stateWaiting, stateDone:
	default:
		return e, fmt.Errorf("%w: state %q", errUnknownLedgerEntry, printable(e.State, 40))
	}
	return e, nil
}

// ledgerEntry is the stored value.
type ledgerEntry struct {
	State    string `json:"state"`
	Owner    string `json:"owner"`
	Seq      uint64 `json:"seq"`      // stream sequence of the owning delivery
	Delivery uint64 `json:"delivery"` // its delivery count
	// Fingerprint and Content name the command this identity stands for
	// (see messages.StopCommand.Content); a command with the same identity
	// and other content is a conflict, never acted on.
	Fingerprint string `json:"fingerprint"`
	Content     string `json:"content"`
	// Calls counts the stop calls made for the command (counted by the
	// delivery that makes one, recorded with its next write).
	Calls int `json:"calls"`
	// Unsure: an earlier attempt's fate is unknown (timeout, broken
	// connection, 5xx): it may have stopped the instance.
	Unsure bool `json:"unsure,omitempty"`
	// Charged: the command's stop is counted in the blast-radius budget
	// (recorded before the first stop call; charged again only while no
	// call is recorded, see chargeBudget).
	Charged bool `json:"charged,omitempty"`
	// Settled: a done record whose command has been acknowledged (written
	// again, with the TTL, after the ack; see ledger.settle).
	Settled bool `json:"settled,omitempty"`
	// Updated is when the entry was last written; for a done record, when
	// the outcome was decided, or when its result was first stored if that
	// was earlier (see Worker.concludeSucceeded).
	Updated time.Time `json:"updated"`
	// Last transient failure, reported if the budget runs out.
	LastStatus    int    `json:"lastStatus,omitempty"`
	LastCode      string `json:"lastCode,omitempty"`
	LastRequestID string `json:"lastRequestId,omitempty"`
	// Wait is set once the stop went through for a command that waits
	// for the instance to be Stopped.
	Wait *waitState `json:"wait,omitempty"`
	// Subject and Event are the published result, once done.
	Subject string          `json:"subject,omitempty"`
	Event   json.RawMessage `json:"event,omitempty"`
}

// claimKind says what a claim found.
type claimKind int

const (
	claimAcquired claimKind = iota // this delivery owns the command now
	claimDone                      // the outcome was already decided
	claimBusy                      // another delivery owns it and may still be working
	claimConflict                  // the identity names a command with other content
)

// claim is the result of ledger.claim.
type claim struct {
	kind  claimKind
	key   string
	rev   uint64
	entry ledgerEntry // what is stored now (for claimDone: the result)
	// prev is the entry this claim took over, when there was one.
	prev *ledgerEntry
}

// ambiguous reports whether an earlier attempt may have reached the API and
// stopped the instance: its answer was a timeout, a broken connection or a
// 5xx, or its worker died while it was attempting.
func (c claim) ambiguous() bool {
	return c.prev != nil && (c.prev.Unsure || c.prev.State == stateAttempting)
}

// ownRecord is the done record a claimDone found, when it is still to be
// settled and d is the very message that decided it (only acknowledging
// that one lets the record expire; see ledger.settle).
func (c claim) ownRecord(d *delivery) *record {
	if c.kind != claimDone || c.entry.Settled || c.entry.Seq != d.seq {
		return nil
	}
	return &record{key: c.key, rev: c.rev, entry: c.entry}
}

// waiting reports whether the command's stop went through and it waits
// for the instance to be Stopped.
func (c claim) waiting() bool { return c.prev != nil && c.prev.Wait != nil }

// attempted reports whether the API may have been called for this command
// before this delivery.
func (c claim) attempted() bool {
	return c.prev != nil && (c.prev.Calls > 0 || c.ambiguous())
}

type ledger struct {
	kv jetstream.KeyValue
	// js and subjectPrefix ("$KV.<bucket>.") are for the writes, which go
	// through the connection's asynchronous publisher (see publishAndWait).
	js            jetstream.JetStream
	subjectPrefix string
	workerID      string
	// lease is how long an attempt by another message (not an earlier
	// delivery of this one) is presumed alive.
	lease time.Duration
	// ttl is how long the record of a decided outcome is kept.
	ttl time.Duration
	now func() time.Time
}

// ledgerTimeout bounds each synchronous ledger operation (a read, or a
// compare-and-set update): a stream leader lost with a NATS node should
// cost a retry soon, not a long wait. Writes through the asynchronous
// publisher wait at most publishTimeout.
const ledgerTimeout = 3 * time.Second

// errLedgerConflict means another delivery changed the entry first.
var errLedgerConflict = errors.New("ledger entry changed by another delivery")

// ledgerKey encodes an identity as a key (see layout.LedgerKey).
func ledgerKey(identity string) string { return layout.LedgerKey(identity) }

// claim makes this delivery the owner of its command, unless the outcome
// is already decided (claimDone), another live delivery owns it
// (claimBusy), or the identity names a command with other content
// (claimConflict).
func (l *ledger) claim(ctx context.Context, d *delivery) (claim, error) {
	return l.claimAs(ctx, d, false)
}

// claimAfterPanic is claim for a delivery whose handling panicked: the
// entry that very delivery wrote while attempting is dead, so it is taken
// over as a later delivery would take it (and the claim is ambiguous: the
// panic may have come after the stop call).
func (l *ledger) claimAfterPanic(ctx context.Context, d *delivery) (claim, error) {
	return l.claimAs(ctx, d, true)
}

func (l *ledger) claimAs(ctx context.Context, d *delivery, panicked bool) (claim, error) {
	key := ledgerKey(d.identity)
	mine := ledgerEntry{State: stateAttempting, Owner: l.workerID, Seq: d.seq, Delivery: d.delivered,
		Fingerprint: d.fingerprint, Content: d.content, Updated: l.now()}
	for range 5 {
		// Create: the write succeeds only if the key has no entry.
		ack, err := publishAndWait(l.js, &nats.Msg{Subject: l.subjectPrefix + key, Data: mine.encode()},
			jetstream.WithExpectLastSequencePerSubject(0))
		if err == nil {
			return claim{kind: claimAcquired, key: key, rev: ack.Sequence, entry: mine}, nil
		}
		if !isWrongLastSequence(err) {
			return claim{}, fmt.Errorf("ledger create: %w", err)
		}
		found, done, err := l.look(ctx, key, mine, d, panicked)
		if done || err != nil {
			return found, err
		}
	}
	return claim{}, fmt.Errorf("ledger entry %s: %w (5 times)", key, errLedgerConflict)
}

// look reads the entry a create found, and decides: the command is
// decided, busy, a conflict, or taken over by this delivery (done); or the
// entry changed meanwhile and the claim must start again (not done).
// panicked: this delivery panicked, and its own attempting entry is dead.
func (l *ledger) look(ctx context.Context, key string, mine ledgerEntry, d *delivery, panicked bool) (c claim, done bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, ledgerTimeout)
	defer cancel()
	kve, err := l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return claim{}, false, nil // expired or deleted in between: create again
	}
	if err != nil {
		return claim{}, true, fmt.Errorf("ledger get: %w", err)
	}
	prev, err := decodeLedgerEntry(kve.Value())
	if err != nil {
		return claim{}, true, fmt.Errorf("ledger entry %s is not readable: %w", key, err)
	}
	found := claim{key: key, rev: kve.Revision(), entry: prev}
	if l.forgotten(prev, d.seq) {
		// Decided longer ago than the TTL: the server removes such a record
		// a moment late, and the results stream has forgotten the result's
		// Nats-Msg-Id by now (its window is the TTL too), so answering with
		// it would store it twice. Forgotten: this is a new command.
		rev, err := l.kv.Update(ctx, key, mine.encode(), kve.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return claim{}, false, nil
		}
		if err != nil {
			return claim{}, true, fmt.Errorf("ledger update: %w", err)
		}
		return claim{kind: claimAcquired, key: key, rev: rev, entry: mine}, true, nil
	}
	switch {
	case prev.Fingerprint != "" && prev.Fingerprint != d.fingerprint:
		found.kind = claimConflict
		return found, true, nil
	case prev.State == stateDone:
		found.kind = claimDone
		return found, true, nil
	case prev.State == stateAttempting && !l.superseded(prev, d.seq, d.delivered) &&
		!(panicked && prev.Seq == d.seq && prev.Delivery == d.delivered):
		found.kind = claimBusy
		return found, true, nil
	}
	next := mine
	next.Calls, next.Unsure, next.Wait, next.Charged = prev.Calls, prev.Unsure, prev.Wait, prev.Charged
	next.LastStatus, next.LastCode, next.LastRequestID = prev.LastStatus, prev.LastCode, prev.LastRequestID
	rev, err := l.kv.Update(ctx, key, next.encode(), kve.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return claim{}, false, nil // someone else moved first: look again
	}
	if err != nil {
		return claim{}, true, fmt.Errorf("ledger update: %w", err)
	}
	return claim{kind: claimAcquired, key: key, rev: rev, entry: next, prev: &prev}, true, nil
}

// forgotten reports whether a record is of a decided outcome older than the
// TTL, which another message with the identity finds: that message is a
// new command. The very message that decided it, delivered again because
// its acknowledgement never arrived (the record is not settled), is never
// a new command, however late it comes back: it is answered from the
// record (see Worker.republish).
func (l *ledger) forgotten(prev ledgerEntry, seq uint64) bool {
	if prev.State != stateDone || l.now().Sub(prev.Updated) < l.ttl {
		return false
	}
	return prev.Settled || prev.Seq != seq
}

// superseded reports whether an attempting entry is dead: JetStream has
// redelivered the same message since (so the earlier delivery timed out or
// its worker died), or the lease of another message's attempt has run out.
func (l *ledger) superseded(prev ledgerEntry, seq, delivery uint64) bool {
	if prev.Seq == seq {
		return prev.Delivery < delivery
	}
	return l.now().Sub(prev.Updated) > l.lease
}

// release records a transient failure so any later delivery may take over.
// unsure says the attempt may have stopped the instance.
func (l *ledger) release(ctx context.Context, c claim, status int, code, requestID string, unsure bool) error {
	e := c.entry
	e.State, e.Updated = stateRetrying, l.now()
	e.Unsure = e.Unsure || unsure
	e.LastStatus, e.LastCode, e.LastRequestID = status, code, requestID
	_, err := l.update(ctx, c, e)
	return err
}

// markCharged records that the command's stop is counted in the budget,
// before the call; it returns the entry's new revision.
func (l *ledger) markCharged(ctx context.Context, c claim) (uint64, error) {
	e := c.entry
	e.Charged, e.Updated = true, l.now()
	return l.update(ctx, c, e)
}

// wait records that the command waits for its instance to be Stopped, so
// any later delivery may take it over.
func (l *ledger) wait(ctx context.Context, c claim, ws waitState) error {
	e := c.entry
	e.State, e.Updated, e.Wait = stateWaiting, l.now(), &ws
	_, err := l.update(ctx, c, e)
	return err
}

// record is a done record as stored: what settle rewrites once the
// command is acknowledged.
type record struct {
	key   string
	rev   uint64
	entry ledgerEntry
}

// complete records the decided result and waits for the write.
// errLedgerConflict means another delivery took the command over meanwhile.
func (l *ledger) complete(c claim, subject string, event []byte) (*record, error) {
	return l.completeAt(c, subject, event, time.Time{})
}

// completeAt is complete for a result the results stream first stored at
// stored (zero: now), which dates the record when that was earlier.
func (l *ledger) completeAt(c claim, subject string, event []byte, stored time.Time) (*record, error) {
	wait, err := l.completeAsync(c, subject, event, stored)
	if err != nil {
		return nil, err
	}
	return wait()
}

// completeAsync sends the record of the decided result; wait reports how
// the write went. It is the compare-and-set write KeyValue.Update makes, on
// the bucket's own subject, through the connection's asynchronous
// publisher, with no TTL: the record lasts until settle gives it one,
// after the command's acknowledgement.
func (l *ledger) completeAsync(c claim, subject string, event []byte, stored time.Time) (wait func() (*record, error), err error) {
	e := c.entry
	e.State, e.Updated, e.Subject, e.Event = stateDone, l.now(), subject, event
	if !stored.IsZero() && stored.Before(e.Updated) {
		e.Updated = stored
	}
	f, err := l.js.PublishMsgAsync(&nats.Msg{Subject: l.subjectPrefix + c.key, Data: e.encode()},
		jetstream.WithExpectLastSequencePerSubject(c.rev))
	if err != nil {
		return nil, fmt.Errorf("ledger update: %w", err)
	}
	return func() (*record, error) {
		ack, err := awaitAck(f)
		switch {
		case isWrongLastSequence(err):
			return nil, errLedgerConflict
		case err != nil:
			return nil, fmt.Errorf("ledger update: %w", err)
		}
		return &record{key: c.key, rev: ack.Sequence, entry: e}, nil
	}, nil
}

// settle writes a done record again, settled and with the ledger's TTL (the
// only entries that ever expire), once JetStream has confirmed its
// command's acknowledgement (see Worker.settle). No reply is asked for:
// the write is compare-and-set on the record's revision, so it never
// replaces a later entry, and should it be lost (the connection breaks
// just then, the worker dies), the record stays without a TTL, still
// answering repeats, until a command with the identity comes after the
// TTL and replaces it. That is the one way the bucket keeps what it need
// not, one record per such accident.
func (l *ledger) settle(r *record) error {
	e := r.entry
	e.Settled = true
	return l.js.Conn().PublishMsg(&nats.Msg{Subject: l.subjectPrefix + r.key, Data: e.encode(), Header: nats.Header{
		jetstream.ExpectedLastSubjSeqHeader: []string{strconv.FormatUint(r.rev, 10)},
		jetstream.MsgTTLHeader:              []string{l.ttl.String()},
	}})
}

// isWrongLastSequence reports a failed compare-and-set (10164 on replicated streams).
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func (l *ledger) update(ctx context.Context, c claim, e ledgerEntry) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, ledgerTimeout)
	defer cancel()
	rev, err := l.kv.Update(ctx, c.key, e.encode(), c.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errLedgerConflict
	}
	if err != nil {
		return 0, fmt.Errorf("ledger update: %w", err)
	}
	return rev, nil
}

// encode is the stored form of the entry: ledgerMagic and its JSON, in a
// buffer sized for it.
func (e *ledgerEntry) encode() []byte {
	return e.appendJSON(append(make([]byte, 0, 512+len(e.Event)), ledgerMagic...))
}

// appendJSON appends the entry as JSON, as encoding/json would write it
// (the test TestLedgerEntryJSON holds it to that), without reflection and
// without re-checking the embedded result event, which the worker made.
func (e *ledgerEntry) appendJSON(b []byte) []byte {
	b = append(b, `{"state":`...)
	b = messages.AppendJSONString(b, e.State)
	b = append(b, `,"owner":`...)
	b = messages.AppendJSONString(b, e.Owner)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"delivery":`...)
	b = strconv.AppendUint(b, e.Delivery, 10)
	b = append(b, `,"fingerprint":`...)
	b = messages.AppendJSONString(b, e.Fingerprint)
	b = append(b, `,"content":`...)
	b = messages.AppendJSONString(b, e.Content)
	b = append(b, `,"calls":`...)
	b = strconv.AppendInt(b, int64(e.Calls), 10)
	if e.Unsure {
		b = append(b, `,"unsure":true`...)
	}
	if e.Charged {
		b = append(b, `,"charged":true`...)
	}
	if e.Settled {
		b = append(b, `,"settled":true`...)
	}
	b = append(b, `,"updated":"`...)
	b = e.Updated.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.LastStatus != 0 {
		b = append(b, `,"lastStatus":`...)
		b = strconv.AppendInt(b, int64(e.LastStatus), 10)
	}
	if e.LastCode != "" {
		b = append(b, `,"lastCode":`...)
		b = messages.AppendJSONString(b, e.LastCode)
	}
	if e.LastRequestID != "" {
		b = append(b, `,"lastRequestId":`...)
		b = messages.AppendJSONString(b, e.LastRequestID)
	}
	if e.Wait != nil {
		b = append(b, `,"wait":`...)
		b = append(b, mustJSON(e.Wait)...)
	}
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = messages.AppendJSONString(b, e.Subject)
	}
	if len(e.Event) > 0 {
		b = append(b, `,"event":`...)
		b = append(b, e.Event...)
	}
	return append(b, '}')
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("worker: marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return b
}
