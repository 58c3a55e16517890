package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// Announcer is what each worker runs to announce the fleet's pauses: it
// compares the consumer's pause state with the pause record and publishes
// the paused event of each new set of terms, and exactly one resumed event
// per span once the fleet really runs again, however the span ended. Every
// worker runs one; they agree through the record (compare-and-set) and the
// control stream's de-duplication (one event id per change), so a change
// is announced once whichever worker sees it first, or later by a worker
// that starts after it happened. Create it with NewAnnouncer; Step is safe
// to call from one goroutine at a time.
type Announcer struct {
	f      *fleet
	source string // bccstop/<worker id>
	now    func() time.Time
}

// Observation is what one Step saw.
type Observation struct {
	// Paused is the consumer's state; Span the pause in force as recorded
	// (nil when running or not recorded yet).
	Paused bool
	Until  time.Time
	Span   *Span
	Info   *jetstream.ConsumerInfo
}

// NewAnnouncer binds to the fleet of t; source names the worker in events.
func NewAnnouncer(ctx context.Context, js jetstream.JetStream, t Target, source string, now func() time.Time) (*Announcer, error) {
	f, err := openWith(ctx, js, t)
	if err != nil {
		return nil, err
	}
	if _, err := f.records(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Announcer{f: f, source: source, now: now}, nil
}

// Step looks once and announces what is due. An error leaves the record as
// it was; the next Step tries again.
func (a *Announcer) Step(ctx context.Context) (Observation, error) {
	// The record first, then the consumer: whoever pauses records the span
	// before pausing the consumer and marks it applied only after, so a
	// consumer read later than the record never sees an applied span's
	// consumer running unless it really runs again. Read the other way
	// round, a trip between the two reads looked like its own end (a
	// resumed event while the fleet stayed paused).
	rec, rev, err := readPause(ctx, a.f.kv)
	if err != nil {
		return Observation{}, err
	}
	if a.f.betweenReads != nil {
		a.f.betweenReads()
	}
	info, paused, until, err := a.f.consumerPause(ctx)
	if err != nil {
		return Observation{}, err
	}
	obs := Observation{Paused: paused, Until: until, Info: info}
	now := a.now().UTC()
	// Each ended span: its one resumed event, then it is forgotten. A span
	// paused and resumed between two looks (within one poll) was never
	// announced: its paused event goes first (late, but the terms it
	// held), so no resumed event comes without one.
	for len(rec.Ended) > 0 {
		if s := rec.Ended[0]; s.Announced < s.Terms {
			if err := a.announcePaused(ctx, s); err != nil {
				return obs, err
			}
		}
		if err := a.announceResumed(ctx, rec.Ended[0]); err != nil {
			return obs, err
		}
		rec.Ended = rec.Ended[1:]
		if rev, err = writePause(ctx, a.f.kv, rec, rev); err != nil {
			return obs, ignoreChanged(err)
		}
	}
	switch {
	case paused && rec.Current == nil:
		// Paused outside bccstop (the JetStream API, the nats CLI): a span
		// all the same, so its end is announced too.
		rec.Current = &Span{ID: newPauseID(now), Terms: 1, Since: now, Changed: now, Applied: true, Automatic: true,
			Reason: "paused outside bccstop (the JetStream API)"}
		if !until.Equal(Indefinitely) && !until.IsZero() {
			u := until.UTC()
			rec.Current.Until = &u
		}
		if _, err := writePause(ctx, a.f.kv, rec, rev); err != nil {
			return obs, ignoreChanged(err)
		}
	case paused && rec.Current.Announced < rec.Current.Terms:
		if err := a.announcePaused(ctx, *rec.Current); err != nil {
			return obs, err
		}
		rec.Current.Announced, rec.Current.Applied = rec.Current.Terms, true
		if _, err := writePause(ctx, a.f.kv, rec, rev); err != nil {
			return obs, ignoreChanged(err)
		}
	case !paused && rec.Current != nil && !inForce(rec.Current, false, now):
		// The fleet runs again: by bccstop resume, at the pause's deadline,
		// or resumed outside bccstop. Announced on the next step.
		rec.endCurrent(now)
		if _, err := writePause(ctx, a.f.kv, rec, rev); err != nil {
			return obs, ignoreChanged(err)
		}
	}
	if paused {
		obs.Span = rec.Current
	}
	return obs, nil
}

func ignoreChanged(err error) error {
	if errors.Is(err, errRecordChanged) {
		return nil // another worker moved first; the next step sees what it did
	}
	return err
}

func (a *Announcer) baseData(action string, s Span) messages.ControlData {
	return messages.ControlData{Action: action, Stream: a.f.t.CommandsStream, Consumer: a.f.t.Consumer, PauseID: s.ID,
		Budget: s.Budget, BudgetUsed: s.BudgetUsed, InstanceIDs: []string{}}
}

func (a *Announcer) announcePaused(ctx context.Context, s Span) error {
	d := a.baseData(messages.ControlPaused, s)
	if s.Until != nil {
		d.PausedUntil = s.Until.UTC().Format(time.RFC3339)
	}
	d.Reason, d.RequestedBy, d.Automatic = s.Reason, s.By, s.Automatic
	if err := PublishEvent(ctx, a.f.js, a.source, d, fmt.Sprintf("paused-%s-%d", s.ID, s.Terms), a.now()); err != nil {
		return fmt.Errorf("publish the paused event: %w", err)
	}
	return nil
}

func (a *Announcer) announceResumed(ctx context.Context, s Span) error {
	d := a.baseData(messages.ControlResumed, s)
	if s.EndAutomatic {
		d.Automatic, d.RequestedBy = true, a.source
		d.Reason = "the pause ran out"
		if s.Until == nil || s.EndedAt != nil && s.EndedAt.Before(*s.Until) {
			d.Reason = "resumed outside bccstop (the JetStream API)"
		}
	} else {
		d.Reason, d.RequestedBy = s.ResumeReason, s.ResumeBy
	}
	if err := PublishEvent(ctx, a.f.js, a.source, d, "resumed-"+s.ID, a.now()); err != nil {
		return fmt.Errorf("publish the resumed event: %w", err)
	}
	return nil
}

// AnnounceTripped publishes the tripped event of a span Trip began.
func (a *Announcer) AnnounceTripped(ctx context.Context, s Span) error {
	d := a.baseData(messages.ControlTripped, s)
	d.Reason, d.RequestedBy, d.Automatic = s.Reason, s.By, true
	return PublishEvent(ctx, a.f.js, a.source, d, "tripped-"+s.ID, a.now())
}

// Publish publishes a control event that is not about a pause (holds), under
// msgID, as this worker.
func (a *Announcer) Publish(ctx context.Context, d messages.ControlData, msgID string) error {
	d.Stream, d.Consumer = a.f.t.CommandsStream, a.f.t.Consumer
	return PublishEvent(ctx, a.f.js, a.source, d, msgID, a.now())
}
