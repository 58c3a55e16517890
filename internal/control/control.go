// Package control holds the fleet of workers: it pauses and resumes the
// durable consumer they share (JetStream consumer pause, NATS server 2.11
// or later), keeps the record of each pause (pause.go), reports where the
// fleet stands, and lets the workers announce every change as a control
// event (announce.go). The command line changes the fleet; only workers
// publish control events.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// Target names what the workers share.
type Target struct {
	CommandsStream, LegacyCommandsStream, Consumer string
	ResultsStream, ControlStream                   string
	FleetBucket                                    string
}

// Indefinitely is the consumer's pause deadline for a pause without --for:
// far enough that only a resume ends it.
var Indefinitely = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// ErrServerTooOld means the NATS server cannot pause a consumer.
var ErrServerTooOld = errors.New("the NATS server is older than 2.11 and cannot pause a consumer")

// PauseRequest is what bccstop pause asks for.
type PauseRequest struct {
	// Until is when the pause ends by itself; zero for a pause until resumed.
	Until       time.Time
	Reason, By  string
	Force       bool
	Now         func() time.Time // time.Now when nil
	automatic   bool
	budget      string
	budgetUsed  int
	onlyIfFresh bool // Trip: never touch a pause in force, even with a stale record
}

// fleet is the consumer, its legacy twin and the fleet bucket.
type fleet struct {
	js     jetstream.JetStream
	t      Target
	cons   jetstream.Consumer
	legacy jetstream.Consumer // nil when there is none
	kv     jetstream.KeyValue
	// betweenReads, when set (tests), runs between a decision's two reads
	// of the fleet: what another writer may do in that instant.
	betweenReads func()
}

// open finds the shared consumer on a server that can pause it, the legacy
// consumer when there is one, and the fleet bucket.
func open(ctx context.Context, nc *nats.Conn, t Target) (*fleet, error) {
	if err := checkServer(nc); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return openWith(ctx, js, t)
}

func openWith(ctx context.Context, js jetstream.JetStream, t Target) (*fleet, error) {
	f := &fleet{js: js, t: t}
	var err error
	if f.cons, err = js.Consumer(ctx, t.CommandsStream, t.Consumer); err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w (has a worker run yet?)", t.Consumer, t.CommandsStream, err)
	}
	switch f.kv, err = js.KeyValue(ctx, t.FleetBucket); {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		f.kv = nil // status can do without; pausing cannot (see records)
	case err != nil:
		return nil, fmt.Errorf("fleet bucket %s: %w", t.FleetBucket, err)
	}
	if t.LegacyCommandsStream != "" {
		if c, err := js.Consumer(ctx, t.LegacyCommandsStream, t.Consumer); err == nil {
			f.legacy = c
		}
	}
	return f, nil
}

// records returns the fleet bucket, which changing the fleet needs.
func (f *fleet) records() (jetstream.KeyValue, error) {
	if f.kv == nil {
		return nil, fmt.Errorf("fleet bucket %s: %w (has a worker of this release run yet?)", f.t.FleetBucket, jetstream.ErrBucketNotFound)
	}
	return f.kv, nil
}

// pauseConsumers pauses the shared consumer (and the legacy one) until until.
func (f *fleet) pauseConsumers(ctx context.Context, until time.Time) error {
	if _, err := f.js.PauseConsumer(ctx, f.t.CommandsStream, f.t.Consumer, until.UTC()); err != nil {
		return fmt.Errorf("pause consumer %s: %w", f.t.Consumer, err)
	}
	if f.legacy != nil {
		if _, err := f.js.PauseConsumer(ctx, f.t.LegacyCommandsStream, f.t.Consumer, until.UTC()); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("pause consumer %s on the retired stream %s: %w", f.t.Consumer, f.t.LegacyCommandsStream, err)
		}
	}
	return nil
}

func (f *fleet) resumeConsumers(ctx context.Context) error {
	if _, err := f.js.ResumeConsumer(ctx, f.t.CommandsStream, f.t.Consumer); err != nil {
		return fmt.Errorf("resume consumer %s: %w", f.t.Consumer, err)
	}
	if f.legacy != nil {
		if _, err := f.js.ResumeConsumer(ctx, f.t.LegacyCommandsStream, f.t.Consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("resume consumer %s on the retired stream %s: %w", f.t.Consumer, f.t.LegacyCommandsStream, err)
		}
	}
	return nil
}

// consumerPause reads whether the shared consumer is paused, and until when.
func (f *fleet) consumerPause(ctx context.Context) (*jetstream.ConsumerInfo, bool, time.Time, error) {
	info, err := f.cons.Info(ctx)
	if err != nil {
		return nil, false, time.Time{}, fmt.Errorf("consumer %s: %w", f.t.Consumer, err)
	}
	var until time.Time
	if info.Config.PauseUntil != nil {
		until = *info.Config.PauseUntil
	}
	return info, info.Paused, until, nil
}

// Pause pauses the fleet: every worker stops taking commands at once;
// commands wait in the stream. The terms are recorded; the workers announce
// the pause. A pause in force is changed only with Force (same span, new
// terms); otherwise an *AlreadyPausedError says whose pause holds.
func Pause(ctx context.Context, nc *nats.Conn, t Target, req PauseRequest) (*State, error) {
	f, err := open(ctx, nc, t)
	if err != nil {
		return nil, err
	}
	if _, err := f.pause(ctx, req); err != nil {
		return nil, err
	}
	return Status(ctx, nc, t, 0)
}

// pause records and applies a pause; it returns the span in force after it.
func (f *fleet) pause(ctx context.Context, req PauseRequest) (*Span, error) {
	clock := req.Now
	if clock == nil {
		clock = time.Now
	}
	if _, err := f.records(); err != nil {
		return nil, err
	}
	for range 5 {
		// The record, then the consumer (see Announcer.Step): a consumer
		// read after the record sees the pause of any span it holds.
		rec, rev, err := readPause(ctx, f.kv)
		if err != nil {
			return nil, err
		}
		if f.betweenReads != nil {
			f.betweenReads()
		}
		_, paused, until, err := f.consumerPause(ctx)
		if err != nil {
			return nil, err
		}
		now := clock().UTC()
		active := inForce(rec.Current, paused, now)
		if active && (!req.Force || req.onlyIfFresh) {
			return nil, &AlreadyPausedError{Span: rec.Current, Until: until}
		}
		next := Span{Terms: 1, Reason: req.Reason, By: req.By, Since: now, Changed: now,
			Automatic: req.automatic, Budget: req.budget, BudgetUsed: req.budgetUsed}
		if !req.Until.IsZero() {
			u := req.Until.UTC()
			next.Until = &u
		}
		switch {
		case active && rec.Current != nil:
			// --force: the same span, new terms.
			next.ID, next.Terms, next.Since, next.Announced = rec.Current.ID, rec.Current.Terms+1, rec.Current.Since, rec.Current.Announced
		default:
			// A span recorded earlier and over by now waits for its announcement.
			rec.endCurrent(now)
			next.ID = newPauseID(now)
		}
		rec.Current = &next
		newRev, err := writePause(ctx, f.kv, rec, rev)
		if errors.Is(err, errRecordChanged) {
			continue // someone else moved first: look again
		}
		if err != nil {
			return nil, err
		}
		deadline := Indefinitely
		if next.Until != nil {
			deadline = *next.Until
		}
		if err := f.pauseConsumers(ctx, deadline); err != nil {
			return nil, err
		}
		next.Applied = true
		rec.Current = &next
		// Losing this write to a worker that saw the consumer paused first
		// is fine: it marks the span applied too.
		_, _ = writePause(ctx, f.kv, rec, newRev)
		return &next, nil
	}
	return nil, errors.New("the pause record kept changing under this pause; try again")
}

// Resume resumes the fleet. The workers announce it. ErrNotPaused when the
// fleet is running: nothing changes and nothing is announced.
func Resume(ctx context.Context, nc *nats.Conn, t Target, reason, by string) (*State, error) {
	f, err := open(ctx, nc, t)
	if err != nil {
		return nil, err
	}
	if _, err := f.records(); err != nil {
		return nil, err
	}
	for range 5 {
		_, paused, _, err := f.consumerPause(ctx)
		if err != nil {
			return nil, err
		}
		if !paused {
			return nil, ErrNotPaused
		}
		rec, rev, err := readPause(ctx, f.kv)
		if err != nil {
			return nil, err
		}
		if rec.Current == nil {
			// Paused outside bccstop and not recorded yet.
			now := time.Now().UTC()
			rec.Current = &Span{ID: newPauseID(now), Terms: 1, Since: now, Changed: now, Applied: true, Automatic: true,
				Reason: "paused outside bccstop"}
		}
		rec.Current.ResumeBy, rec.Current.ResumeReason = by, reason
		if by == "" {
			rec.Current.ResumeBy = "unknown"
		}
		if _, err := writePause(ctx, f.kv, rec, rev); errors.Is(err, errRecordChanged) {
			continue
		} else if err != nil {
			return nil, err
		}
		if err := f.resumeConsumers(ctx); err != nil {
			return nil, err
		}
		return Status(ctx, nc, t, 0)
	}
	return nil, errors.New("the pause record kept changing under this resume; try again")
}

// Trip pauses the fleet for the blast-radius budget, unless it is paused
// already (a pause in force is never replaced by a trip). It returns the
// new span, or nil when the fleet was paused already.
func Trip(ctx context.Context, js jetstream.JetStream, t Target, budget string, used int, by string) (*Span, error) {
	f, err := openWith(ctx, js, t)
	if err != nil {
		return nil, err
	}
	span, err := f.pause(ctx, PauseRequest{Reason: fmt.Sprintf("blast-radius budget: %s reached", budgetText(budget)), By: by,
		automatic: true, budget: budget, budgetUsed: used, onlyIfFresh: true})
	var already *AlreadyPausedError
	if errors.As(err, &already) {
		return nil, nil
	}
	return span, err
}

// budgetText writes "50/1m" as "50 stops in 1m".
func budgetText(budget string) string {
	n, d, ok := strings.Cut(budget, "/")
	if !ok {
		return budget
	}
	return n + " stops in " + d
}

// PublishEvent publishes a control event, stored by the control stream
// (de-duplicated by msgID). Only workers may publish control events.
func PublishEvent(ctx context.Context, js jetstream.JetStream, source string, data messages.ControlData, msgID string, now time.Time) error {
	sum := sha256.Sum256([]byte(msgID))
	ev := messages.NewControlEvent(hex.EncodeToString(sum[:16]), source, now, data)
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: messages.ControlSubject(data.Action), Data: payload,
		Header: nats.Header{"Content-Type": []string{messages.ContentTypeCloudEvents}}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	return err
}

// State is where the fleet stands.
type State struct {
	Stream, Consumer string
	Paused           bool
	// PausedUntil is when the pause ends by itself (zero: until resumed).
	PausedUntil time.Time
	// Span is the pause in force, as recorded (nil when running, or when
	// the consumer was paused outside bccstop and no worker recorded it).
	Span *Span
	// Reason, By and Since say why, who and when it was paused.
	Reason, By string
	Since      time.Time
	// Waiting: stored, not yet delivered to a worker. InFlight: delivered,
	// not yet acknowledged (handled now, waiting for a retry, or waiting for
	// an instance to be Stopped). Redelivered: of those, the ones delivered
	// more than once. PullRequests: pull requests the workers have open.
	// The legacy stream's, while one is being drained, are included.
	Waiting, InFlight, Redelivered, PullRequests int
	// LegacyLeft counts the commands still in the retired stream of an
	// earlier release (-1: there is none).
	LegacyLeft int
	// Budget is the blast-radius budget the workers run with ("" for
	// none), BudgetUsed the stop calls counted in its window now.
	Budget     string
	BudgetUsed int
	// Holds are the holds in force.
	Holds []guard.Hold
	// Outcomes counts the results stored in the last Window.
	Window   time.Duration
	Outcomes map[messages.Outcome]int
}

// Status reads the consumer and the pause record and, when window is
// positive, counts the outcomes stored over the last window.
func Status(ctx context.Context, nc *nats.Conn, t Target, window time.Duration) (*State, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	f, err := openWith(ctx, js, t)
	if err != nil {
		return nil, err
	}
	info, paused, until, err := f.consumerPause(ctx)
	if err != nil {
		return nil, err
	}
	s := &State{Stream: t.CommandsStream, Consumer: t.Consumer, Paused: paused, LegacyLeft: -1,
		Waiting: int(info.NumPending), InFlight: info.NumAckPending, Redelivered: info.NumRedelivered, PullRequests: info.NumWaiting,
		Window: window, Outcomes: map[messages.Outcome]int{}}
	if f.legacy != nil {
		if li, err := f.legacy.Info(ctx); err == nil {
			s.Waiting += int(li.NumPending)
			s.InFlight += li.NumAckPending
			s.Redelivered += li.NumRedelivered
			s.LegacyLeft = int(li.NumPending) + li.NumAckPending
		}
	}
	if paused {
		if !until.Equal(Indefinitely) {
			s.PausedUntil = until
		}
		if f.kv == nil {
			return s, nil
		}
		s.recordTerms(ctx, f.kv)
	}
	if f.kv != nil {
		if s.Budget, s.BudgetUsed, err = budgetUse(ctx, js, f.kv); err != nil {
			return nil, err
		}
	}
	if s.Holds, err = guard.ListHolds(ctx, js); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("read the holds: %w", err)
	}
	if window > 0 {
		if err := countOutcomes(ctx, js, t.ResultsStream, time.Now().Add(-window), s.Outcomes); err != nil {
			return nil, fmt.Errorf("count results in %s: %w", t.ResultsStream, err)
		}
	}
	return s, nil
}

// ReadPause reads whether the fleet is paused and, when it is, until when
// and the recorded terms (who, why, since when); it changes nothing. It
// reads only the workers' consumer and the fleet bucket's pause record,
// which a publisher may read (section 7 of the contract). It fails when
// the consumer cannot be read (no worker has run yet, say).
func ReadPause(ctx context.Context, js jetstream.JetStream, t Target) (*State, error) {
	cons, err := js.Consumer(ctx, t.CommandsStream, t.Consumer)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", t.Consumer, t.CommandsStream, err)
	}
	info := cons.CachedInfo()
	s := &State{Stream: t.CommandsStream, Consumer: t.Consumer, Paused: info.Paused, LegacyLeft: -1}
	if !s.Paused {
		return s, nil
	}
	if info.Config.PauseUntil != nil && !info.Config.PauseUntil.Equal(Indefinitely) {
		s.PausedUntil = *info.Config.PauseUntil
	}
	kv, err := js.KeyValue(ctx, t.FleetBucket)
	if err != nil {
		return s, nil // paused, by whom unknown
	}
	s.recordTerms(ctx, kv)
	return s, nil
}

// recordTerms fills in the terms of the pause in force from its record,
// when there is one.
func (s *State) recordTerms(ctx context.Context, kv jetstream.KeyValue) {
	if rec, _, err := readPause(ctx, kv); err == nil && rec.Current != nil {
		s.Span = rec.Current
		s.Reason, s.By, s.Since = rec.Current.Reason, rec.Current.By, rec.Current.Since
	}
}

// budgetUse reads the budget the workers recorded and how much of it the
// fleet's counters hold now.
func budgetUse(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (string, int, error) {
	e, err := kv.Get(ctx, layout.BudgetKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("read the budget: %w", err)
	}
	var rec struct {
		V    int    `json:"v"`
		Spec string `json:"spec"`
	}
	if json.Unmarshal(e.Value(), &rec) != nil || rec.V != 1 || rec.Spec == "" {
		return "", 0, nil
	}
	n, window, err := guard.ParseBudget(rec.Spec)
	if err != nil {
		return "", 0, nil
	}
	b, err := guard.NewBudget(guard.BudgetOptions{JetStream: js, Limit: n, Window: window})
	if err != nil {
		return rec.Spec, 0, err
	}
	used, err := b.Used(ctx)
	if err != nil {
		return rec.Spec, 0, fmt.Errorf("read the budget's use: %w", err)
	}
	return rec.Spec, used, nil
}

// countOutcomes counts the results stored since since, by outcome.
func countOutcomes(ctx context.Context, js jetstream.JetStream, stream string, since time.Time, into map[messages.Outcome]int) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since, FilterSubjects: []string{messages.ResultSubjects},
	})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return err
		}
		n := 0
		var last jetstream.Msg
		for m := range batch.Messages() {
			n++
			last = m
			if o := messages.Outcome(strings.TrimPrefix(m.Subject(), messages.ResultSubjectPrefix)); o.Valid() {
				into[o]++
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if meta, err := last.Metadata(); err != nil || meta.NumPending == 0 {
			return nil
		}
	}
}

// checkServer refuses servers that cannot pause a consumer (before 2.11),
// where a pause would be silently ignored.
func checkServer(nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("%w (it says it is %q)", ErrServerTooOld, v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || major < 2 || major == 2 && minor < 11 {
		return fmt.Errorf("%w (it is %s)", ErrServerTooOld, v)
	}
	return nil
}
