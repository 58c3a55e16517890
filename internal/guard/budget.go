package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// Budget limits and defaults.
const (
	// BudgetStreamName is the default name of the counter stream.
	BudgetStreamName = "BCCSTOP_COUNTERS"
	// BudgetSubjectPrefix starts the subject of every budget slot:
	// <prefix>.<slot width in seconds>.<slot start, Unix seconds>.
	BudgetSubjectPrefix = "bccstop.counter.stops"
	// CounterSubjects are the subjects the counter stream captures: the
	// fleet's counters, the budget's among them.
	CounterSubjects = "bccstop.counter.>"
	// MinBudgetWindow and MaxBudgetWindow bound a budget's window.
	MinBudgetWindow = time.Second
	MaxBudgetWindow = 7 * 24 * time.Hour
	// MaxBudgetStops bounds a budget's N.
	MaxBudgetStops = 1_000_000
	// budgetSlots is how many slots a window is cut into (fewer when
	// that would make them shorter than a second).
	budgetSlots = 60
)

// BudgetStream is the configuration of the counter stream that holds the
// budget's slots, for a budget whose window is window: counters (Nats-Incr)
// on one subject per slot, every increment kept for a little over two
// windows (the last one of a slot holds its total), and duplicate
// increments (same Nats-Msg-Id) dropped for as long. Direct gets are off, so every read goes to the stream's leader and
// sees every increment acknowledged before it.
func BudgetStream(replicas int, window time.Duration) jetstream.StreamConfig {
	window = min(max(window, MinBudgetWindow), MaxBudgetWindow)
	age := 2*window + 2*time.Minute
	return jetstream.StreamConfig{
		Name:              BudgetStreamName,
		Description:       "bccstop: the fleet's counters; the blast-radius budget's (BCCSTOP_MAX_STOPS) one subject per slot of its window",
		Subjects:          []string{CounterSubjects},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		MaxAge:            age,
		MaxMsgsPerSubject: -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        1 << 10,
		Discard:           jetstream.DiscardOld,
		Duplicates:        age,
		AllowMsgCounter:   true,
		AllowDirect:       false,
		AllowRollup:       false,
		DenyDelete:        true,
		DenyPurge:         true,
	}
}

// ParseBudget reads a budget written N/DURATION, for example "200/10m": at
// most N stop calls in any window of DURATION. N is a whole number from 1
// to MaxBudgetStops; DURATION is a Go duration from MinBudgetWindow to
// MaxBudgetWindow. Errors wrap ErrInvalidBudget and say what is wrong.
func ParseBudget(s string) (n int, d time.Duration, err error) {
	fail := func(format string, args ...any) (int, time.Duration, error) {
		return 0, 0, fmt.Errorf("%w %q: %s", ErrInvalidBudget, s, fmt.Sprintf(format, args...))
	}
	count, window, ok := strings.Cut(strings.TrimSpace(s), "/")
	count, window = strings.TrimSpace(count), strings.TrimSpace(window)
	switch {
	case !ok:
		return fail("want N/DURATION, for example 200/10m")
	case count == "":
		return fail("the number of stops before / is missing")
	case window == "":
		return fail("the duration after / is missing")
	case strings.Contains(window, "/"):
		return fail("want exactly one /")
	}
	n, err = strconv.Atoi(count)
	var numErr *strconv.NumError
	switch {
	case errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange):
		return fail("%s stops is out of range (at most %d)", count, MaxBudgetStops)
	case err != nil:
		return fail("%q is not a whole number of stops", count)
	case n <= 0:
		return fail("the number of stops must be at least 1, got %d", n)
	case n > MaxBudgetStops:
		return fail("at most %d stops, got %d", MaxBudgetStops, n)
	}
	d, err = time.ParseDuration(window)
	switch {
	case err != nil:
		return fail("%q is not a duration (for example 10m, 1h, 90s)", window)
	case d < MinBudgetWindow:
		return fail("the window must be at least %s, got %s", MinBudgetWindow, d)
	case d > MaxBudgetWindow:
		return fail("the window must be at most %s, got %s", MaxBudgetWindow, d)
	}
	return n, d, nil
}

// BudgetOptions configure a Budget. JetStream, Limit and Window are
// required.
type BudgetOptions struct {
	// JetStream reaches the counter stream, which must exist (BudgetStream).
	JetStream jetstream.JetStream
	// Stream is the counter stream's name; default BudgetStreamName.
	Stream string
	// Limit (N) is the most stop calls any window of length Window may hold.
	Limit int
	// Window (D) is the window's length, MinBudgetWindow to MaxBudgetWindow.
	Window time.Duration
	// MaxClockOffset is the most any worker's clock may differ from the
	// NATS server's (NTP keeps it to milliseconds); default 500ms.
	MaxClockOffset time.Duration
	// MaxChargeTime is the longest a charge may take from reading the
	// clock to the increment's acknowledgement; a slower one is taken
	// back and fails, since it could have landed in a slot others have
	// already settled. Default 1s.
	MaxChargeTime time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Budget counts the fleet's stop calls against a budget of at most Limit
// in any window of Window, exactly, across every worker: ask Charge before
// each stop call and make the call only when it is admitted. It is safe
// for concurrent use; create it with NewBudget.
//
// The window is cut into slots (Window/60, at least a second), each a
// JetStream counter. A charge adds one to the current slot; the
// acknowledgement carries the slot's new total, computed by the server
// atomically for every worker; then the charge reads the other slots a
// window can share with it, and is admitted only if all of them together
// stay within Limit. Every charge writes before it reads, and the reads
// go to the stream's leader, so of two racing charges at least one counts
// the other: the count never passes Limit. A refused charge is taken back
// at once, so only admitted calls stay counted (a charge racing a refused
// one may be refused too: the budget errs on the side of stopping less).
//
// Because slots are whole periods and clocks and charges take time, a
// charge counts the slots of a little more than Window (Window + 2 ×
// MaxClockOffset + MaxChargeTime, rounded out to whole slots) before it
// and the slots of that margin after it (a worker whose clock runs ahead
// may already be there). Any window of length Window then holds at most
// Limit admitted charges, timed by when their increments reached the
// server, as long as worker clocks are within MaxClockOffset of it.
type Budget struct {
	opts   BudgetOptions
	width  time.Duration // slot length, whole seconds
	back   int64         // slots counted before the current one
	ahead  int64         // slots counted after it
	settle time.Duration // how long after its end a slot can still change
	prefix string

	mu      sync.Mutex
	stream  jetstream.Stream
	settled map[int64]int64      // slot → total, read after it settled
	reads   map[int64]*slotReads // reads of unsettled slots, in flight or queued
}

// NewBudget checks opts and returns a Budget; it does no I/O. Invalid
// options are an error wrapping ErrInvalidOption that names the option.
func NewBudget(opts BudgetOptions) (*Budget, error) {
	switch {
	case opts.JetStream == nil:
		return nil, invalidOption("JetStream", "is required")
	case opts.Limit <= 0 || opts.Limit > MaxBudgetStops:
		return nil, invalidOption("Limit", "must be 1 to %d stops, got %d", MaxBudgetStops, opts.Limit)
	case opts.Window < MinBudgetWindow || opts.Window > MaxBudgetWindow:
		return nil, invalidOption("Window", "must be %s to %s, got %s", MinBudgetWindow, MaxBudgetWindow, opts.Window)
	case opts.MaxClockOffset < 0:
		return nil, invalidOption("MaxClockOffset", "must not be negative, got %s", opts.MaxClockOffset)
	case opts.MaxChargeTime < 0:
		return nil, invalidOption("MaxChargeTime", "must not be negative, got %s", opts.MaxChargeTime)
	}
	setDefault(&opts.Stream, BudgetStreamName)
	setDefault(&opts.MaxClockOffset, 500*time.Millisecond)
	setDefault(&opts.MaxChargeTime, time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	width := max(time.Second, (opts.Window / budgetSlots).Truncate(time.Second))
	settle := 2*opts.MaxClockOffset + opts.MaxChargeTime
	b := &Budget{
		opts:    opts,
		width:   width,
		back:    ceilDiv(opts.Window+settle, width),
		ahead:   ceilDiv(settle, width),
		settle:  settle,
		prefix:  fmt.Sprintf("%s.%d.", BudgetSubjectPrefix, width/time.Second),
		settled: map[int64]int64{},
		reads:   map[int64]*slotReads{},
	}
	return b, nil
}

func ceilDiv(a, b time.Duration) int64 { return int64((a + b - 1) / b) }

// Decision is the answer to a charge.
type Decision struct {
	// Admitted: the stop call may be made now.
	Admitted bool
	// Used is the number of stop calls counted in the window after this
	// decision: with this one when admitted, without it when refused
	// (unless it could not be taken back: then it counts, and Used is
	// above Limit).
	Used int
	// Limit and Window are the budget's N and D.
	Limit  int
	Window time.Duration
	// FreesAt is, at best effort, when the oldest call counted leaves the
	// window and one more call fits; zero when nothing is counted.
	FreesAt time.Time
	// At is when the charge was made; the call should follow at once.
	At time.Time
}

// Charge asks for one stop call. It is admitted when the fleet's calls in
// the window, with this one, stay within Limit; an admitted charge is never
// taken back. A refused one is taken back at once and does not count.
//
// nonce identifies this charge (printable, at most 200 bytes; a command
// identity with an attempt number, say) and makes its increment
// idempotent: a publish repeated by the client is counted once. Calling
// Charge again with the same nonce means "the earlier answer was lost and
// no call was made": the earlier increment, if it landed, is taken back and
// the charge is made afresh. So the caller records an admission before
// making the call, and never charges again for a call it may have made.
//
// An error (wrapping ErrNotReady when NATS could not be reached or the
// charge was too slow to be trusted) means no decision: make no call.
func (b *Budget) Charge(ctx context.Context, nonce string) (Decision, error) {
	if nonce == "" || len(nonce) > 200 || !messages.Printable(nonce) {
		return Decision{}, fmt.Errorf("guard: budget: nonce must be 1 to 200 printable bytes, got %q", nonce)
	}
	st, err := b.bind(ctx)
	if err != nil {
		return Decision{}, err
	}
	retries := 0
	for gen := 0; gen < 16; gen++ {
		d, outcome, err := b.try(ctx, st, nonce, gen)
		switch {
		case err != nil:
			return Decision{}, err
		case outcome == chargeDuplicate:
			// This generation's increment landed before (the answer was
			// lost): take it back, then charge with the next one.
			if err := b.undo(ctx, nonce, gen, d.subject); err != nil {
				return Decision{}, err
			}
			continue
		case outcome == chargeContended && retries < 2:
			retries++
			continue
		}
		return d.Decision, nil
	}
	return Decision{}, fmt.Errorf("guard: budget: charge %q: too many earlier attempts with this nonce", nonce)
}

type chargeOutcome int

const (
	chargeDecided   chargeOutcome = iota
	chargeDuplicate               // this generation's increment had landed before
	chargeContended               // refused, but the window was below Limit once the racing charges settled
)

type attempt struct {
	Decision
	subject string
}

func chargeID(nonce string, gen int) string { return "charge " + strconv.Itoa(gen) + " " + nonce }
func undoID(nonce string, gen int) string   { return "undo " + strconv.Itoa(gen) + " " + nonce }

// try makes one generation of a charge.
func (b *Budget) try(ctx context.Context, st jetstream.Stream, nonce string, gen int) (attempt, chargeOutcome, error) {
	start := b.opts.Now()
	slot := b.slotOf(start)
	subject := b.subject(slot)
	a := attempt{Decision: Decision{Limit: b.opts.Limit, Window: b.opts.Window, At: start}, subject: subject}
	if err := ctx.Err(); err != nil {
		return a, chargeDecided, fmt.Errorf("guard: budget: charge %q: %w", nonce, err)
	}
	// The increment's answer is awaited even when ctx ends meanwhile, so
	// that a charge given up is taken back, not left counting.
	ack, err := b.publish(context.WithoutCancel(ctx), subject, "+1", chargeID(nonce, gen))
	acked := b.opts.Now()
	if err != nil {
		return a, chargeDecided, notReady("budget: charge %q: %v (if the increment landed, charging again with this nonce takes it back)", nonce, err)
	}
	if ack.Duplicate {
		// The server answers a duplicate with the first increment's
		// sequence and no total. That increment (in an earlier slot,
		// perhaps) is found and taken back.
		if a.subject, err = b.subjectOfSeq(ctx, st, ack.Sequence); err != nil {
			return a, chargeDecided, notReady("budget: charge %q was made before and its answer lost; finding it to take it back: %v", nonce, err)
		}
		return a, chargeDuplicate, nil
	}
	own, err := counterValue(ack.Value)
	if err != nil {
		b.takeBack(ctx, nonce, gen, subject)
		return a, chargeDecided, fmt.Errorf("guard: budget: charge %q: acknowledgement: %w", nonce, err)
	}
	if err := ctx.Err(); err != nil {
		b.takeBack(ctx, nonce, gen, subject)
		return a, chargeDecided, fmt.Errorf("guard: budget: charge %q: %w (taken back)", nonce, err)
	}
	if took := acked.Sub(start); took > b.opts.MaxChargeTime {
		b.takeBack(ctx, nonce, gen, subject)
		return a, chargeDecided, notReady("budget: charge %q took %s, longer than %s: taken back, since others may have settled its slot already",
			nonce, took.Round(time.Millisecond), b.opts.MaxChargeTime)
	}
	used, frees, err := b.window(ctx, st, slot, own, acked)
	if err != nil {
		b.takeBack(ctx, nonce, gen, subject)
		return a, chargeDecided, notReady("budget: charge %q: %v", nonce, err)
	}
	if took := b.opts.Now().Sub(start); took > 2*b.opts.MaxChargeTime {
		// Stalled while reading (frozen, say): the call would come long
		// after the slot it was counted in.
		b.takeBack(ctx, nonce, gen, subject)
		return a, chargeDecided, notReady("budget: charge %q took %s: taken back", nonce, took.Round(time.Millisecond))
	}
	a.FreesAt = frees
	if used <= int64(b.opts.Limit) {
		a.Admitted, a.Used = true, int(used)
		return a, chargeDecided, nil
	}
	a.Used = int(used)
	if b.takeBack(ctx, nonce, gen, subject) {
		a.Used--
		// Racing charges that will be refused too may have made this one
		// look over the limit: look again once they had time to settle.
		if again, _, err := b.window(ctx, st, slot, -1, b.opts.Now()); err == nil && again < int64(b.opts.Limit) {
			return a, chargeContended, nil
		}
	}
	return a, chargeDecided, nil
}

// takeBack undoes a charge's increment and reports whether it was undone.
// It does so even when ctx has ended: a stray increment would count
// against the budget.
func (b *Budget) takeBack(ctx context.Context, nonce string, gen int, subject string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*b.opts.MaxChargeTime)
	defer cancel()
	return b.undo(ctx, nonce, gen, subject) == nil
}

// undo publishes a generation's decrement (idempotent: its own Nats-Msg-Id).
func (b *Budget) undo(ctx context.Context, nonce string, gen int, subject string) error {
	var err error
	for range 3 {
		if _, err = b.publish(ctx, subject, "-1", undoID(nonce, gen)); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return notReady("budget: taking back charge %q: %v", nonce, err)
	}
	return nil
}

// publish adds incr to a slot's counter with msgID as Nats-Msg-Id, through
// the asynchronous publisher (whose retries the Nats-Msg-Id makes safe).
func (b *Budget) publish(ctx context.Context, subject, incr, msgID string) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.MaxChargeTime)
	defer cancel()
	f, err := b.opts.JetStream.PublishMsgAsync(&nats.Msg{Subject: subject, Header: nats.Header{"Nats-Incr": {incr}}}, jetstream.WithMsgID(msgID))
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// subjectOfSeq finds the slot a duplicate increment landed in: perhaps an
// earlier slot than now. (The stream keeps every increment as long as it
// remembers their Nats-Msg-Id, so it is there.) An increment is taken back
// only in its own slot: elsewhere it would move a count between slots.
func (b *Budget) subjectOfSeq(ctx context.Context, st jetstream.Stream, seq uint64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.MaxChargeTime)
	defer cancel()
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return "", fmt.Errorf("increment %d: %w", seq, err)
	}
	return m.Subject, nil
}

// Used returns the number of stop calls counted in the window now, for
// status. It reads only.
func (b *Budget) Used(ctx context.Context) (int, error) {
	st, err := b.bind(ctx)
	if err != nil {
		return 0, err
	}
	now := b.opts.Now()
	used, _, err := b.window(ctx, st, b.slotOf(now), -1, now)
	if err != nil {
		return 0, notReady("budget: %v", err)
	}
	return int(used), nil
}

func (b *Budget) bind(ctx context.Context) (jetstream.Stream, error) {
	b.mu.Lock()
	st := b.stream
	b.mu.Unlock()
	if st != nil {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := b.opts.JetStream.Stream(ctx, b.opts.Stream)
	if err != nil {
		return nil, notReady("budget: counter stream %s: %v", b.opts.Stream, err)
	}
	b.mu.Lock()
	b.stream = st
	b.mu.Unlock()
	return st, nil
}

func (b *Budget) slotOf(t time.Time) int64 {
	ns, w := t.UnixNano(), int64(b.width)
	if ns < 0 {
		return (ns - w + 1) / w // floor, before 1970
	}
	return ns / w
}

func (b *Budget) subject(slot int64) string {
	return b.prefix + strconv.FormatInt(slot*int64(b.width/time.Second), 10)
}

func (b *Budget) slotStart(slot int64) time.Time { return time.Unix(0, slot*int64(b.width)) }

// window sums the slots a charge in slot counts: back before it, ahead
// after it, reading each slot that is not settled after the time after.
// own is the slot's own total from an acknowledgement, or -1 to read it.
// It also returns when the oldest counted call leaves the window.
func (b *Budget) window(ctx context.Context, st jetstream.Stream, slot, own int64, after time.Time) (used int64, frees time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*b.opts.MaxChargeTime)
	defer cancel()
	from, to := slot-b.back, slot+b.ahead
	counts := make(map[int64]int64, to-from+1)
	var reads []*slotRead
	b.mu.Lock()
	for s := from; s <= to; s++ {
		if s == slot && own >= 0 {
			counts[s] = own
			continue
		}
		if v, ok := b.settled[s]; ok {
			counts[s] = v
			continue
		}
		reads = append(reads, b.readLocked(st, s, after))
	}
	for s := range b.settled {
		if s < from-1 {
			delete(b.settled, s)
		}
	}
	b.mu.Unlock()
	for _, r := range reads {
		select {
		case <-r.done:
		case <-ctx.Done():
			return 0, time.Time{}, fmt.Errorf("reading slot %s: %w", b.subject(r.slot), ctx.Err())
		}
		if r.err != nil {
			return 0, time.Time{}, fmt.Errorf("reading slot %s: %w", b.subject(r.slot), r.err)
		}
		counts[r.slot] = r.value
	}
	oldest := int64(math.MaxInt64)
	for s, v := range counts {
		used += max(v, 0) // a slot below zero (never made so) counts nothing, not less
		if v > 0 && s < oldest {
			oldest = s
		}
	}
	if oldest != math.MaxInt64 {
		// A charge in slot oldest+back+1 no longer counts it.
		frees = b.slotStart(oldest + b.back + 1)
	}
	return used, frees, nil
}

// slotRead is one read of a slot's total, shared by the charges that need
// it at the same time.
type slotRead struct {
	slot    int64
	issued  time.Time // when it was sent
	settled bool      // sent after the slot settled
	done    chan struct{}
	value   int64
	err     error
}

// slotReads are a slot's read in flight and the one queued behind it: a
// slot has at most one read outstanding and one waiting, however many
// charges race, so a storm of charges costs a read per slot per round trip.
type slotReads struct{ current, next *slotRead }

// readLocked returns a read of a slot's total that is good for a charge
// whose increment was acknowledged at after. A charge must count every
// increment that landed before its own, so it may share a read only if
// that was sent after its acknowledgement, or after the slot had settled;
// otherwise it waits for the next read, sent when the current one is
// answered. A slot settles MaxChargeTime past its end on the clock of the
// worker charging in it (a slower charge is taken back), which is within
// the settle margin of every other clock: a read sent after that is kept
// for good.
func (b *Budget) readLocked(st jetstream.Stream, slot int64, after time.Time) *slotRead {
	sr := b.reads[slot]
	if sr == nil {
		sr = &slotReads{}
		b.reads[slot] = sr
	}
	if c := sr.current; c != nil && (c.settled || !c.issued.Before(after)) {
		return c
	}
	if sr.next != nil {
		return sr.next
	}
	r := &slotRead{slot: slot, done: make(chan struct{})}
	if sr.current == nil {
		b.sendLocked(st, sr, r)
	} else {
		sr.next = r
	}
	return r
}

// sendLocked sends r, and when it is answered the read queued behind it.
func (b *Budget) sendLocked(st jetstream.Stream, sr *slotReads, r *slotRead) {
	r.issued = b.opts.Now()
	r.settled = !r.issued.Before(b.slotStart(r.slot + 1).Add(b.settle))
	sr.current = r
	go func() {
		// Shared by several charges, a read is bounded on its own.
		ctx, cancel := context.WithTimeout(context.Background(), 2*b.opts.MaxChargeTime)
		r.value, r.err = b.readSlot(ctx, st, r.slot)
		cancel()
		b.mu.Lock()
		if r.settled && r.err == nil {
			b.settled[r.slot] = r.value
		}
		if next := sr.next; next != nil {
			sr.next = nil
			b.sendLocked(st, sr, next)
		} else {
			sr.current = nil
			delete(b.reads, r.slot)
		}
		b.mu.Unlock()
		close(r.done)
	}()
}

// readSlot reads a slot's total from the stream's leader (0 when the slot
// has no increment).
func (b *Budget) readSlot(ctx context.Context, st jetstream.Stream, slot int64) (int64, error) {
	m, err := st.GetLastMsgForSubject(ctx, b.subject(slot))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	var v struct {
		Val string `json:"val"`
	}
	if err := json.Unmarshal(m.Data, &v); err != nil {
		return 0, fmt.Errorf("counter value %q: %w", m.Data, err)
	}
	return counterValue(v.Val)
}

// counterValue reads a counter total as the server writes it.
func counterValue(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter total %q: %w", s, err)
	}
	return v, nil
}
