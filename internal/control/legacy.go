package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Layout 1 (the releases before layout 2) paused the fleet by pausing the
// one shared consumer, with the pause's terms in its metadata under these
// keys, and kept no record. A store carried over while so paused must stay
// paused: the commands that now arrive on layout 2's consumer would
// otherwise run while the operator's pause still holds the old ones.
const (
	legacyMetaReason = "bccstop.pause.reason"
	legacyMetaBy     = "bccstop.pause.by"
	legacyMetaAt     = "bccstop.pause.at"
)

// LegacyPause is the pause of a layout 1 consumer.
type LegacyPause struct {
	Until       time.Time // when JetStream resumes it (Indefinitely: never)
	Reason, By  string
	Since       time.Time // zero when the consumer does not say
	ConsumerSet bool      // the consumer was paused (else the rest is zero)
}

// ReadLegacyPause reads whether the legacy consumer (t.LegacyCommandsStream,
// t.Consumer) is paused now, and its terms. A missing stream or consumer is
// not paused.
func ReadLegacyPause(ctx context.Context, js jetstream.JetStream, t Target) (LegacyPause, error) {
	if t.LegacyCommandsStream == "" {
		return LegacyPause{}, nil
	}
	c, err := js.Consumer(ctx, t.LegacyCommandsStream, t.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return LegacyPause{}, nil
	}
	if err != nil {
		return LegacyPause{}, fmt.Errorf("consumer %s on %s: %w", t.Consumer, t.LegacyCommandsStream, err)
	}
	info := c.CachedInfo()
	if !info.Paused || info.Config.PauseUntil == nil {
		return LegacyPause{}, nil
	}
	md := info.Config.Metadata
	p := LegacyPause{Until: info.Config.PauseUntil.UTC(), Reason: md[legacyMetaReason], By: md[legacyMetaBy], ConsumerSet: true}
	p.Since, _ = time.Parse(time.RFC3339, md[legacyMetaAt])
	return p, nil
}

// CarryLegacyPause carries a pause of layout 1 over (see ReadLegacyPause):
// when the legacy consumer is paused and the fleet's record holds no pause,
// it pauses layout 2's consumer until the same time, then records the
// pause with its terms (as applied and announced: the release that paused
// published the paused event). It is idempotent: killed between the two,
// the next call finds the legacy consumer still paused and no record, and
// does both again. A pause the record holds already is left alone (it is
// layout 2's own, and may be being resumed). It returns the span it
// recorded, nil when there was none to carry.
func CarryLegacyPause(ctx context.Context, js jetstream.JetStream, t Target, p LegacyPause, now time.Time) (*Span, error) {
	if !p.ConsumerSet {
		return nil, nil
	}
	f, err := openWith(ctx, js, t)
	if err != nil {
		return nil, err
	}
	if _, err := f.records(); err != nil {
		return nil, err
	}
	for range 5 {
		rec, rev, err := readPause(ctx, f.kv)
		if err != nil {
			return nil, err
		}
		if rec.Current != nil {
			return nil, nil
		}
		if err := f.pauseConsumers(ctx, p.Until); err != nil {
			return nil, err
		}
		now := now.UTC()
		since := p.Since
		if since.IsZero() {
			since = now
		}
		span := Span{ID: newPauseID(now), Terms: 1, Reason: p.Reason, By: p.By, Since: since, Changed: now,
			Applied: true, Announced: 1}
		if !p.Until.Equal(Indefinitely) {
			u := p.Until
			span.Until = &u
		}
		rec.Current = &span
		if _, err := writePause(ctx, f.kv, rec, rev); errors.Is(err, errRecordChanged) {
			continue
		} else if err != nil {
			return nil, err
		}
		return &span, nil
	}
	return nil, errors.New("the pause record kept changing while a pause of an earlier release was carried over")
}
