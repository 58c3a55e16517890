package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// encodeResult builds and encodes the event for data. Its id is derived
// from the command identity and outcome, so any repeat of this result
// carries the same id.
func (w *Worker) encodeResult(data messages.ResultData) ([]byte, string) {
	ev := messages.NewResultEvent(eventID(data.CommandID, data.Outcome), w.opts.WorkerID, w.opts.Now(), data)
	payload, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("worker: marshal result event: %v", err)) // plain struct: cannot fail
	}
	return payload, messages.ResultSubject(data.Outcome)
}

func eventID(identity string, o messages.Outcome) string {
	sum := sha256.Sum256([]byte("bccstop\x00" + identity + "\x00" + string(o)))
	h := hex.EncodeToString(sum[:16])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// publishAttempts and publishTimeout bound how long one delivery keeps
// trying to store its result before it is retried as a whole.
const (
	publishAttempts = 3
	publishTimeout  = 5 * time.Second
)

// publish stores the result in the results stream, with the command
// identity as Nats-Msg-Id and the trace context in the headers, and waits
// for JetStream's acknowledgement.
func (w *Worker) publish(ctx context.Context, d *delivery, subject string, payload []byte, o messages.Outcome) error {
	ctx, span := w.tel.startProducer(ctx, subject, d.identity, len(payload))
	defer span.End()
	msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
	w.tel.inject(ctx, msg.Header)
	var err error
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		var ack *jetstream.PubAck
		ack, err = publishAndWait(w.js, msg, publishTimeout, jetstream.WithMsgID(d.identity))
		if err == nil {
			w.tel.published(ctx, span, ack)
			return nil
		}
		if ctx.Err() != nil || attempt == publishAttempts {
			break
		}
		sleep(ctx, time.Duration(attempt)*200*time.Millisecond)
	}
	w.tel.failed(span, err)
	return fmt.Errorf("publish %s result of %s: %w", o, d.identity, err)
}

// publishAndWait stores msg through the connection's asynchronous publisher
// and waits for JetStream's acknowledgement, at most timeout. It does what
// a synchronous publish does without a request (reply inbox, context,
// timer) of its own per message.
func publishAndWait(js jetstream.JetStream, msg *nats.Msg, timeout time.Duration, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f, err := js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, err
	}
	return awaitAck(f, timeout)
}

// awaitAck waits for an asynchronous publish to be acknowledged, at most timeout.
func awaitAck(f jetstream.PubAckFuture, timeout time.Duration) (*jetstream.PubAck, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-t.C:
		return nil, fmt.Errorf("no acknowledgement from JetStream within %v", timeout)
	}
}
