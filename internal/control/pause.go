package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/layout"
)

// A fleet pause is two things: the durable consumer every worker shares
// paused in JetStream (what holds the workers), and a record in the fleet
// bucket (layout.PauseKey) of its terms: who, why, until when. The record
// is written compare-and-set, so two operators never silently replace each
// other's pause, and it remembers every paused span until a worker has
// announced its end, so each span ends with exactly one resumed event
// however it ends (by hand, at its deadline, with no worker running at the
// time). Only workers announce (see Announcer); the command line records.

// PauseRecordVersion is the version of PauseRecord this release writes.
// A record of another version is never overwritten: Pause and Resume
// refuse, and a worker reports it and keeps the fleet as JetStream says.
const PauseRecordVersion = 1

// PauseRecord is the stored record.
type PauseRecord struct {
	V int `json:"v"`
	// Current is the span in force; nil while the fleet runs.
	Current *Span `json:"current,omitempty"`
	// Ended are spans that ended and wait for a worker to announce it.
	Ended []Span `json:"ended,omitempty"`
}

// Span is one paused span, from a pause until the fleet runs again. A
// pause --force changes the terms of the span in force (Terms counts the
// changes); it does not end it.
type Span struct {
	ID    string `json:"id"`
	Terms int    `json:"terms"`
	// Until is when the pause ends by itself; nil for a pause until resumed.
	Until  *time.Time `json:"until,omitempty"`
	Reason string     `json:"reason"`
	By     string     `json:"by"`
	// Since is when the span began; Changed when its terms were last set.
	Since   time.Time `json:"since"`
	Changed time.Time `json:"changed"`
	// Applied: the consumer was paused for these terms.
	Applied bool `json:"applied"`
	// Automatic: no one asked for it (the blast-radius budget tripped, or
	// it was found paused outside bccstop); Budget and BudgetUsed say which
	// budget and how much of it was used.
	Automatic  bool   `json:"automatic"`
	Budget     string `json:"budget,omitempty"`
	BudgetUsed int    `json:"budgetUsed,omitempty"`
	// Announced is the Terms a paused event was published for (0: none yet).
	Announced int `json:"announced"`
	// ResumeBy, ResumeReason: bccstop resume was asked, by whom and why.
	ResumeBy     string `json:"resumeBy,omitempty"`
	ResumeReason string `json:"resumeReason,omitempty"`
	// EndedAt, and whether the end was automatic (the pause ran out, or
	// the consumer was resumed outside bccstop), once it ended.
	EndedAt      *time.Time `json:"endedAt,omitempty"`
	EndAutomatic bool       `json:"endAutomatic,omitempty"`
}

// UntilResumed reports whether the span lasts until bccstop resume.
func (s *Span) UntilResumed() bool { return s.Until == nil }

// unappliedGrace is how long a span recorded but not yet applied (the
// command line records, then pauses the consumer) counts as in force.
const unappliedGrace = 30 * time.Second

// maxEnded bounds the ended spans a record keeps for announcing: past it
// the oldest is dropped (a fleet without a worker for that many pauses).
const maxEnded = 32

// ErrUnknownRecord means the pause record was written by a release that
// writes a newer version; it is left alone.
var ErrUnknownRecord = errors.New("the fleet's pause record was written by a newer bccstop; use that release to change it")

// AlreadyPausedError is returned by Pause when the fleet is paused already
// and Force was not given: a pause never silently replaces another.
type AlreadyPausedError struct {
	// Span is the pause in force; nil when the consumer was paused
	// outside bccstop and no worker has recorded it yet.
	Span *Span
	// Until is when JetStream will resume the consumer (zero: never).
	Until time.Time
}

func (e *AlreadyPausedError) Error() string {
	if e.Span == nil {
		return "the fleet is paused already (not by bccstop pause)" + untilText(e.Until) + "; change it with --force"
	}
	s := e.Span
	who := s.By
	if who == "" {
		who = "someone"
	}
	why := ""
	if s.Reason != "" {
		why = " (" + strconv.Quote(s.Reason) + ")"
	}
	return fmt.Sprintf("the fleet is paused already, by %s%s since %s%s; change it with --force",
		who, why, s.Since.UTC().Format(time.RFC3339), untilText(e.Until))
}

func untilText(until time.Time) string {
	if until.IsZero() || until.Equal(Indefinitely) {
		return ", until resumed"
	}
	return ", until " + until.UTC().Format(time.RFC3339)
}

// ErrNotPaused is returned by Resume when the fleet is running: nothing is
// changed and no event is published.
var ErrNotPaused = errors.New("the fleet is not paused; nothing to resume")

// readPause reads the record and its revision (0 when there is none).
func readPause(ctx context.Context, kv jetstream.KeyValue) (*PauseRecord, uint64, error) {
	e, err := kv.Get(ctx, layout.PauseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		rev := uint64(0)
		if e != nil {
			rev = e.Revision()
		}
		return &PauseRecord{V: PauseRecordVersion}, rev, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the pause record: %w", err)
	}
	var rec PauseRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, 0, fmt.Errorf("the pause record is not readable: %w", err)
	}
	if rec.V != PauseRecordVersion {
		return &rec, e.Revision(), fmt.Errorf("%w (version %d)", ErrUnknownRecord, rec.V)
	}
	return &rec, e.Revision(), nil
}

// errRecordChanged means another writer changed the record first.
var errRecordChanged = errors.New("the pause record changed meanwhile")

// writePause stores rec if the record is still at rev (0: absent).
func writePause(ctx context.Context, kv jetstream.KeyValue, rec *PauseRecord, rev uint64) (uint64, error) {
	if len(rec.Ended) > maxEnded {
		rec.Ended = rec.Ended[len(rec.Ended)-maxEnded:]
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = kv.Create(ctx, layout.PauseKey, b)
	} else {
		next, err = kv.Update(ctx, layout.PauseKey, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errRecordChanged
	}
	if err != nil {
		return 0, fmt.Errorf("write the pause record: %w", err)
	}
	return next, nil
}

// inForce reports whether span holds the fleet: the consumer is paused, or
// the span was just recorded and its pause is being applied.
func inForce(span *Span, consumerPaused bool, now time.Time) bool {
	if consumerPaused {
		return true
	}
	return span != nil && !span.Applied && now.Sub(span.Changed) < unappliedGrace
}

// endCurrent moves the span in force to the ended ones, for a worker to
// announce (if it ever held the fleet).
func (r *PauseRecord) endCurrent(now time.Time) {
	s := r.Current
	r.Current = nil
	if s == nil || !(s.Applied || s.Announced > 0) {
		return // recorded, never applied: nothing to announce
	}
	t := now.UTC()
	s.EndedAt = &t
	s.EndAutomatic = s.ResumeBy == ""
	r.Ended = append(r.Ended, *s)
}

// newPauseID names a new span.
func newPauseID(now time.Time) string { return "p-" + strconv.FormatInt(now.UnixNano(), 10) }
