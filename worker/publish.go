package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// encodeResult builds and encodes the event for data, and returns its id.
// The id is derived from the command identity, the outcome and the
// command's content, so any repeat of this result carries the same id.
func (w *Worker) encodeResult(d *delivery, data messages.ResultData) (payload []byte, subject, id string) {
	id = eventID(data.CommandID, data.Outcome, d.fingerprint)
	ev := messages.NewResultEvent(id, w.opts.WorkerID, w.opts.Now(), data)
	return ev.AppendJSON(make([]byte, 0, 1024)), messages.ResultSubject(data.Outcome), id
}

func eventID(identity string, o messages.Outcome, fingerprint string) string {
	sum := sha256.Sum256([]byte("bccstop\x00" + identity + "\x00" + string(o) + "\x00" + fingerprint))
	h := hex.EncodeToString(sum[:16])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// publishAttempts and publishTimeout bound how long one delivery keeps
// trying to store its result (or a ledger record, which waits at most
// publishTimeout too) before it is retried as a whole.
const (
	publishAttempts = 3
	publishTimeout  = 5 * time.Second
)

// contentTypeHeader marks a result as a structured-mode CloudEvent.
var contentTypeHeader = []string{messages.ContentTypeCloudEvents}

// publish stores a result in the results stream, with msgID as Nats-Msg-Id
// and the trace context in the headers, and waits for JetStream's
// acknowledgement.
//
// eventID is the id of a result decided by this delivery ("" for one
// published again from the ledger). For such a fresh decision an
// acknowledgement saying Duplicate is not taken at its word: the stored
// result is read back, and if it is another event (the results stream
// remembers an outcome for this identity that the ledger has lost), this
// one is stored under a derived Nats-Msg-Id and the discrepancy logged, so
// the decision is never silently dropped.
func (w *Worker) publish(ctx context.Context, d *delivery, msgID, subject string, payload []byte, eventID string) (*jetstream.PubAck, error) {
	ack, _, err := w.publishStored(ctx, d, msgID, subject, payload, eventID)
	return ack, err
}

// publishStored is publish that also says when the results stream stored
// the copy of this very decision an earlier delivery published (zero when
// this publish stored it): the stream's duplicate window for msgID counts
// from then.
func (w *Worker) publishStored(ctx context.Context, d *delivery, msgID, subject string, payload []byte, eventID string) (*jetstream.PubAck, time.Time, error) {
	ctx, span := w.tel.startProducer(ctx, subject, msgID, len(payload))
	defer span.End()
	msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{"Content-Type": contentTypeHeader}}
	w.tel.inject(ctx, msg.Header)
	var (
		ack *jetstream.PubAck
		err error
	)
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		ack, err = publishAndWait(w.js, msg, jetstream.WithMsgID(msgID))
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt == publishAttempts {
			w.tel.failed(span, err)
			return nil, time.Time{}, fmt.Errorf("publish result of %s on %s: %w", d.identity, subject, err)
		}
		sleep(ctx, time.Duration(attempt)*200*time.Millisecond)
	}
	w.tel.published(ctx, span, ack)
	if !ack.Duplicate || eventID == "" {
		return ack, time.Time{}, nil
	}
	stored, storedAt, err := w.storedEvent(ctx, ack.Sequence)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("publish result of %s: the results stream says it has one already; reading it back: %w", d.identity, err)
	}
	if stored == eventID {
		return ack, storedAt, nil // this very decision, stored by an earlier delivery
	}
	if age := w.opts.Now().Sub(storedAt); age > w.opts.LedgerTTL {
		// The ledger forgot that outcome when its TTL ran out, as it
		// should, a moment before the results stream forgot its
		// Nats-Msg-Id. This command came in between: a new one.
		w.log.InfoContext(ctx, "a result for this command identity was stored before the ledger's TTL, which has run out since; this command is a new one, and its result is stored under a derived Nats-Msg-Id",
			"command_id", d.identity, "stored_sequence", ack.Sequence, "stored_event_id", stored, "stored_age", age.Round(time.Millisecond).String(), "event_id", eventID)
	} else {
		w.tel.resultConflicts.Add(ctx, 1)
		w.log.ErrorContext(ctx, "the results stream already holds another result for this command identity, which the ledger did not know (was the ledger bucket purged or re-created?); storing this result under a derived Nats-Msg-Id",
			"command_id", d.identity, "stored_sequence", ack.Sequence, "stored_event_id", stored, "event_id", eventID)
	}
	ack, err = w.publish(ctx, d, msgID+"~"+eventID[:8], subject, payload, "")
	return ack, time.Time{}, err
}

// storedEvent reads the id of the result event stored at seq, and when it
// was stored.
func (w *Worker) storedEvent(ctx context.Context, seq uint64) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	raw, err := w.bound().results.GetMsg(ctx, seq)
	if err != nil {
		return "", time.Time{}, err
	}
	var ev struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw.Data, &ev); err != nil {
		return "", time.Time{}, fmt.Errorf("stored message %d: %w", seq, err)
	}
	return ev.ID, raw.Time, nil
}

// publishAndWait stores msg through the connection's asynchronous publisher
// and waits for JetStream's acknowledgement. It does what a synchronous
// publish does without a request (reply inbox, context, timer) of its own
// per message; the publisher's own timeout (publishTimeout, see New) ends
// a wait that gets no answer.
func publishAndWait(js jetstream.JetStream, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f, err := js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, err
	}
	return awaitAck(f)
}

// awaitAck waits for an asynchronous publish to be acknowledged or to fail
// (the publisher fails it after publishTimeout).
func awaitAck(f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	}
}

// The search for a result stored long ago (resultStored) looks on the
// result's subject from resultSearchBefore before its decision to
// resultSearchAfter after it (the publish attempts take at most about
// publishAttempts × publishTimeout; the rest allows for the worker's and
// the server's clocks to differ), and reads at most resultSearchMax
// results there.
const (
	resultSearchBefore = time.Minute
	resultSearchAfter  = 2 * time.Minute
	resultSearchMax    = 20000
)

// resultStored reports whether the results stream holds the result e
// records for identity (its Nats-Msg-Id the identity, or the identity and
// the event id's derived form; see publish). It is asked only for a
// concluded message delivered again after the stream's duplicate window,
// which is rare (its acknowledgement was lost, then the fleet was away for
// longer than the TTL): it reads the results stored about when the
// outcome was decided, one request each. A search that reaches
// resultSearchMax gives up and says not stored: a second copy of a result
// is better than none.
func (w *Worker) resultStored(ctx context.Context, identity, eventID string, e ledgerEntry) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	derived := identity + "~" + eventID[:min(8, len(eventID))]
	until := e.Updated.Add(resultSearchAfter)
	seq, ok, err := w.firstResultSince(ctx, e.Subject, e.Updated.Add(-resultSearchBefore))
	if err != nil || !ok {
		return false, err
	}
	results := w.bound().results
	for range resultSearchMax {
		m, err := results.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(e.Subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if m.Time.After(until) {
			return false, nil
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id == identity || id == derived {
			return true, nil
		}
		seq = m.Sequence + 1
	}
	w.log.WarnContext(ctx, "gave up looking for a result stored long ago; publishing it again, which may store a second copy",
		"command_id", identity, "searched", resultSearchMax)
	return false, nil
}

// firstResultSince is the sequence of the first result on subject stored
// at or after since (ok false: none), read with the stream's message-get
// request by start time, which the jetstream package does not offer.
func (w *Worker) firstResultSince(ctx context.Context, subject string, since time.Time) (seq uint64, ok bool, err error) {
	req, err := json.Marshal(struct {
		NextFor   string    `json:"next_by_subj"`
		StartTime time.Time `json:"start_time"`
		NoHeaders bool      `json:"no_hdr"`
	}{subject, since.UTC(), true})
	if err != nil {
		return 0, false, err
	}
	reply, err := w.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+w.opts.ResultsStream, req)
	if err != nil {
		return 0, false, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return 0, false, fmt.Errorf("message get on %s: %w", w.opts.ResultsStream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return 0, false, nil
	case resp.Error != nil:
		return 0, false, fmt.Errorf("message get on %s: %s (%d)", w.opts.ResultsStream, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, false, fmt.Errorf("message get on %s: an answer with no message", w.opts.ResultsStream)
	}
	return resp.Message.Seq, true, nil
}
