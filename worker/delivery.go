package worker

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/telemetry"
	"github.com/bccstop/bccstop/messages"
)

// delivery is one delivery of a command message, with what the handler
// learns about it along the way.
type delivery struct {
	msg       *nats.Msg
	stream    string
	seq       uint64 // stream sequence: stable across redeliveries
	delivered uint64 // deliveries so far, 1 on the first
	msgID     string // Nats-Msg-Id header
	stored    time.Time
	received  time.Time
	// scheduler and scheduleNext are set by JetStream on a command a
	// schedule fired (Nats-Scheduler: the schedule's subject;
	// Nats-Schedule-Next: "purge" for a one-shot).
	scheduler, scheduleNext string

	cmd      messages.StopCommand
	identity string
	// content and fingerprint name what the command asks for (see
	// messages.StopCommand.Content); for a payload that is no command at
	// all, they stand for the payload's bytes.
	content, fingerprint string
}

func newDelivery(msg *nats.Msg, now time.Time) (*delivery, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	d := &delivery{
		msg:       msg,
		stream:    meta.Stream,
		seq:       meta.Sequence.Stream,
		delivered: meta.NumDelivered,
		stored:    meta.Timestamp,
		received:  now,
	}
	if h := msg.Header; h != nil {
		d.msgID = h.Get(messages.HeaderMsgID)
		d.scheduler, d.scheduleNext = h.Get(messages.HeaderScheduler), h.Get(messages.HeaderScheduleNext)
	}
	// Until the payload is decoded, the identity is the stored message's;
	// handle replaces it with the one the command gives, if any.
	d.identity = messages.FallbackIdentity(d.stream, d.seq, d.stored)
	return d, nil
}

// header returns a header of the command, matching its name case-insensitively.
func (d *delivery) header(name string) string {
	h := d.msg.Header
	if h == nil {
		return ""
	}
	return telemetry.HeaderCarrier(h).Get(name)
}
