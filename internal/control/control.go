// Package control holds the fleet of workers: it pauses and resumes the
// durable consumer they share (JetStream consumer pause, NATS server 2.11
// or later), reports where the fleet stands, and publishes the control
// events that say when and why automation was held.
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

	"github.com/bccstop/bccstop/messages"
)

// Target names what the workers share.
type Target struct {
	CommandsStream, Consumer, ResultsStream, ControlStream string
}

// Metadata keys on the consumer that say why it is paused.
const (
	metaReason = "bccstop.pause.reason"
	metaBy     = "bccstop.pause.by"
	metaAt     = "bccstop.pause.at"
)

// Indefinitely is the pause deadline of a pause without --for: far enough
// that only a resume ends it.
var Indefinitely = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// ErrServerTooOld means the NATS server cannot pause a consumer.
var ErrServerTooOld = errors.New("the NATS server is older than 2.11 and cannot pause a consumer")

// Pause pauses the shared consumer until until (Indefinitely for no end):
// every worker stops taking commands at once; commands wait in the stream.
// The reason, who asked and when are kept on the consumer, and a paused
// event is published.
func Pause(ctx context.Context, nc *nats.Conn, t Target, until time.Time, reason, by string) (*State, error) {
	js, cons, err := pausable(ctx, nc, t)
	if err != nil {
		return nil, err
	}
	cfg := cons.CachedInfo().Config
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	now := time.Now().UTC()
	cfg.Metadata[metaReason], cfg.Metadata[metaBy], cfg.Metadata[metaAt] = reason, by, now.Format(time.RFC3339)
	// Why first, then the pause itself (a consumer update does not change
	// its pause; only the pause API does).
	if _, err := js.UpdateConsumer(ctx, t.CommandsStream, cfg); err != nil {
		return nil, fmt.Errorf("record the pause's reason on consumer %s: %w", t.Consumer, err)
	}
	until = until.UTC()
	if _, err := js.PauseConsumer(ctx, t.CommandsStream, t.Consumer, until); err != nil {
		return nil, fmt.Errorf("pause consumer %s: %w", t.Consumer, err)
	}
	pausedUntil := until.Format(time.RFC3339)
	if until.Equal(Indefinitely) {
		pausedUntil = ""
	}
	ev := messages.ControlData{Action: messages.ControlPaused, Stream: t.CommandsStream, Consumer: t.Consumer,
		PausedUntil: pausedUntil, Reason: reason, RequestedBy: by}
	if err := PublishEvent(ctx, js, "bccstop/cli", ev, "paused-"+until.Format(time.RFC3339Nano)+"-"+now.Format(time.RFC3339Nano)); err != nil {
		return nil, fmt.Errorf("the consumer is paused, but the paused event was not published: %w", err)
	}
	return Status(ctx, nc, t, 0)
}

// Resume resumes the shared consumer and publishes a resumed event.
func Resume(ctx context.Context, nc *nats.Conn, t Target, reason, by string) (*State, error) {
	js, cons, err := pausable(ctx, nc, t)
	if err != nil {
		return nil, err
	}
	cfg := cons.CachedInfo().Config
	var was time.Time
	if cfg.PauseUntil != nil {
		was = *cfg.PauseUntil
	}
	if _, err := js.ResumeConsumer(ctx, t.CommandsStream, t.Consumer); err != nil {
		return nil, fmt.Errorf("resume consumer %s: %w", t.Consumer, err)
	}
	for _, k := range []string{metaReason, metaBy, metaAt} {
		delete(cfg.Metadata, k)
	}
	if _, err := js.UpdateConsumer(ctx, t.CommandsStream, cfg); err != nil {
		return nil, fmt.Errorf("the consumer is resumed, but its pause's reason could not be cleared: %w", err)
	}
	ev := messages.ControlData{Action: messages.ControlResumed, Stream: t.CommandsStream, Consumer: t.Consumer, Reason: reason, RequestedBy: by}
	if err := PublishEvent(ctx, js, "bccstop/cli", ev, ResumedEventID(was)); err != nil {
		return nil, fmt.Errorf("the consumer is resumed, but the resumed event was not published: %w", err)
	}
	return Status(ctx, nc, t, 0)
}

// pausable finds the shared consumer on a server that can pause it.
func pausable(ctx context.Context, nc *nats.Conn, t Target) (jetstream.JetStream, jetstream.Consumer, error) {
	if err := checkServer(nc); err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	cons, err := js.Consumer(ctx, t.CommandsStream, t.Consumer)
	if err != nil {
		return nil, nil, fmt.Errorf("consumer %s on %s: %w (has a worker run yet?)", t.Consumer, t.CommandsStream, err)
	}
	return js, cons, nil
}

// ResumedEventID is the Nats-Msg-Id of the event for the end of the pause
// that was to last until until: the same whoever notices it (a resume, or
// every worker seeing the pause run out), so the control stream keeps one.
func ResumedEventID(until time.Time) string {
	return "resumed-" + until.UTC().Format(time.RFC3339Nano)
}

// PublishEvent publishes a control event, stored by the control stream
// when there is one (de-duplicated by msgID), on its subject in any case.
func PublishEvent(ctx context.Context, js jetstream.JetStream, source string, data messages.ControlData, msgID string) error {
	sum := sha256.Sum256([]byte(msgID))
	ev := messages.NewControlEvent(hex.EncodeToString(sum[:16]), source, time.Now(), data)
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: messages.ControlSubject(data.Action), Data: payload,
		Header: nats.Header{"Content-Type": []string{messages.ContentTypeCloudEvents}}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// No control stream (workers not provisioning): the event still
		// goes to live subscribers.
		return js.Conn().PublishMsg(msg)
	}
	return err
}

// State is where the fleet stands.
type State struct {
	Stream, Consumer string
	Paused           bool
	// PausedUntil is when the pause ends by itself (zero: until resumed).
	PausedUntil time.Time
	// Reason, By and Since say why, who and when it was paused.
	Reason, By string
	Since      time.Time
	// Waiting: stored, not yet delivered to a worker. InFlight: delivered,
	// not yet acknowledged (handled now, waiting for a retry, or waiting for
	// an instance to be Stopped). Redelivered: of those, the ones delivered
	// more than once. PullRequests: pull requests the workers have open.
	Waiting, InFlight, Redelivered, PullRequests int
	// Outcomes counts the results stored in the last Window.
	Window   time.Duration
	Outcomes map[messages.Outcome]int
}

// Status reads the consumer and, when window is positive, counts the
// outcomes stored over the last window.
func Status(ctx context.Context, nc *nats.Conn, t Target, window time.Duration) (*State, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.Consumer(ctx, t.CommandsStream, t.Consumer)
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", t.Consumer, t.CommandsStream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	s := &State{Stream: t.CommandsStream, Consumer: t.Consumer, Paused: info.Paused,
		Waiting: int(info.NumPending), InFlight: info.NumAckPending, Redelivered: info.NumRedelivered, PullRequests: info.NumWaiting,
		Window: window, Outcomes: map[messages.Outcome]int{}}
	if info.Paused {
		if info.Config.PauseUntil != nil && !info.Config.PauseUntil.Equal(Indefinitely) {
			s.PausedUntil = *info.Config.PauseUntil
		}
		s.Reason, s.By = info.Config.Metadata[metaReason], info.Config.Metadata[metaBy]
		s.Since, _ = time.Parse(time.RFC3339, info.Config.Metadata[metaAt])
	}
	if window > 0 {
		if err := countOutcomes(ctx, js, t.ResultsStream, time.Now().Add(-window), s.Outcomes); err != nil {
			return nil, fmt.Errorf("count results in %s: %w", t.ResultsStream, err)
		}
	}
	return s, nil
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
