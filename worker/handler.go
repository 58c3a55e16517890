package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/messages"
)

// handlerFunc handles one delivery and says how to settle it. It does not
// ack, nak or term: settle does, in one place.
type handlerFunc func(ctx context.Context, d *delivery) result

// action is how a delivery is settled.
type action int

const (
	actAck     action = iota // the result is stored: acknowledge
	actRetry                 // try again after delay (NakWithDelay)
	actTerm                  // never redeliver (rejected commands)
	actAbandon               // shutdown cut it short: hand it back now (Nak)
)

func (a action) String() string {
	return [...]string{"ack", "retry", "term", "abandon"}[a]
}

// result is what handling one delivery decided.
type result struct {
	action action
	delay  time.Duration
	reason string
	// data is the outcome published, when one was.
	data *messages.ResultData
	// ledgerHit: the outcome had been decided by an earlier delivery and
	// was published again, with no API call.
	ledgerHit bool
	// busy: another delivery owns the command.
	busy bool
	// err says why a delivery is retried or abandoned.
	err error
}

// handle is the flow of one command: decode, check, claim, call, decide,
// record, publish.
func (w *Worker) handle(ctx context.Context, d *delivery) result {
	cmd, env, err := messages.DecodeCommandMessage(d.msg.Data(), d.header)
	d.cmd = cmd
	commandID := ""
	if messages.ValidCommandID(cmd.CommandID) {
		commandID = cmd.CommandID
	}
	d.identity = messages.Identity(commandID, env.EventID, d.msgID, d.stream, d.seq)
	switch {
	case err != nil:
		return w.reject(ctx, d, messages.CodeInvalidCommand, err.Error())
	case w.protected[cmd.InstanceID]:
		return w.reject(ctx, d, messages.CodeInstanceProtected,
			fmt.Sprintf("instance %s is listed in BCCSTOP_PROTECTED_INSTANCES and is never stopped", cmd.InstanceID))
	case !w.opts.API.HasRegion(cmd.Region):
		return w.reject(ctx, d, messages.CodeUnknownRegion,
			fmt.Sprintf("invalid command: region: %q is not configured in BCC_ENDPOINTS", cmd.Region))
	}

	c, err := w.ledger.claim(ctx, d.identity, d.seq, d.delivered)
	if err != nil {
		return w.retryLater(d, fmt.Errorf("claim %s: %w", d.identity, err))
	}
	switch c.kind {
	case claimDone:
		return w.republish(ctx, d, c)
	case claimBusy:
		return result{action: actRetry, delay: w.backoff(d.delivered, 0), busy: true,
			err: fmt.Errorf("command %s is being handled by %s (delivery %d of message %d)", d.identity, c.entry.Owner, c.entry.Delivery, c.entry.Seq)}
	}

	resp, callErr := w.opts.API.StopInstance(ctx, bcc.StopRequest{
		InstanceID: cmd.InstanceID, ForceStop: cmd.ForceStop, StopWithNoCharge: cmd.StopWithNoCharge, Region: cmd.Region,
	})
	if callErr != nil && ctx.Err() != nil {
		return result{action: actAbandon, err: fmt.Errorf("shutdown interrupted the call: %w", callErr)}
	}
	data := w.baseData(d)
	data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
	var apiErr *bcc.APIError
	if errors.As(callErr, &apiErr) {
		data.HTTPStatus, data.RequestID = apiErr.StatusCode, apiErr.RequestID
	}

	switch transient, retryAfter := bcc.Classify(callErr); {
	case callErr == nil:
		data.Outcome = messages.Succeeded
	case bcc.IsForbidden(callErr) && c.ambiguous:
		if r, retry := w.reconcile(ctx, d, c, &data, apiErr); retry {
			return r
		}
	case bcc.IsForbidden(callErr):
		data.Outcome, data.Code, data.Message = messages.Forbidden, apiErr.Code, apiErr.Message
	case transient && d.delivered < uint64(w.opts.MaxDeliver):
		code := transportCode(callErr)
		if err := w.ledger.release(ctx, c, data.HTTPStatus, code, data.RequestID); err != nil {
			w.log.WarnContext(ctx, "could not record the failed attempt in the ledger", "command_id", d.identity, "error", err)
		}
		return result{action: actRetry, delay: w.backoff(d.delivered, retryAfter), err: callErr}
	case transient:
		data.Outcome, data.Code, data.LastCode = messages.Failed, messages.CodeRetriesExhausted, transportCode(callErr)
		data.Message = fmt.Sprintf("gave up after %d deliveries; last error: %s", d.delivered, describeErr(callErr))
	default:
		data.Outcome, data.Code, data.Message = messages.Failed, transportCode(callErr), describeErr(callErr)
	}
	return w.conclude(ctx, d, c, data)
}

// reconcile settles a 409 after an attempt that may have reached the API
// (its worker died mid-call, or it timed out): if the instance is Stopping
// or Stopped, our earlier stop went through and the outcome is succeeded;
// otherwise the instance really was not Running and it is forbidden.
// retry is true when the describe call itself failed transiently.
func (w *Worker) reconcile(ctx context.Context, d *delivery, c claim, data *messages.ResultData, stopErr *bcc.APIError) (r result, retry bool) {
	inst, resp, err := w.opts.API.DescribeInstance(ctx, d.cmd.Region, d.cmd.InstanceID)
	if err != nil {
		transient, after := bcc.Classify(err)
		switch {
		case ctx.Err() != nil:
			return result{action: actAbandon, err: err}, true
		case transient && d.delivered < uint64(w.opts.MaxDeliver):
			return result{action: actRetry, delay: w.backoff(d.delivered, after), err: fmt.Errorf("reconcile after 409: %w", err)}, true
		case transient:
			data.Outcome, data.Code, data.LastCode = messages.Failed, messages.CodeRetriesExhausted, transportCode(err)
			data.Message = fmt.Sprintf("gave up after %d deliveries: the stop was answered 409 and the instance could not be described to tell whether an earlier attempt stopped it: %s",
				d.delivered, describeErr(err))
			return result{}, false
		}
		data.Outcome, data.Code = messages.Forbidden, stopErr.Code
		data.Message = fmt.Sprintf("%s (the instance could not be described to tell whether an earlier attempt stopped it: %s)", stopErr.Message, describeErr(err))
		return result{}, false
	}
	data.InstanceStatus = inst.Status
	switch inst.Status {
	case "Stopping", "Stopped":
		data.Outcome, data.Reconciled = messages.Succeeded, true
		data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
		data.Message = "an earlier attempt stopped the instance: the retry was answered 409 and the instance is " + inst.Status
	default:
		data.Outcome, data.Code = messages.Forbidden, stopErr.Code
		data.Message = fmt.Sprintf("%s (instance is %s)", stopErr.Message, inst.Status)
	}
	return result{}, false
}

// baseData fills what every result of this delivery carries.
func (w *Worker) baseData(d *delivery) messages.ResultData {
	return messages.ResultData{
		CommandID:        d.identity,
		InstanceID:       d.cmd.InstanceID,
		ForceStop:        d.cmd.ForceStop,
		StopWithNoCharge: d.cmd.StopWithNoCharge,
		Region:           d.cmd.Region,
		Attempts:         int(d.delivered),
	}
}

// reject publishes a rejected result for an invalid command and terminates
// it: it never reaches the API and is never redelivered. Rejection is
// deterministic, so it needs no ledger entry.
func (w *Worker) reject(ctx context.Context, d *delivery, code, message string) result {
	data := w.baseData(d)
	data.Outcome, data.Code, data.Message = messages.Rejected, code, message
	// Echo what the sender gave, made safe to print: it may be anything.
	data.InstanceID, data.Region = printable(d.cmd.InstanceID, 80), printable(d.cmd.Region, 40)
	payload, subject := w.encodeResult(data)
	if err := w.publish(ctx, d, subject, payload, data.Outcome); err != nil {
		return w.retryLater(d, err)
	}
	return result{action: actTerm, reason: "rejected: " + code, data: &data}
}

// conclude records the decided outcome in the ledger, publishes it and acks.
func (w *Worker) conclude(ctx context.Context, d *delivery, c claim, data messages.ResultData) result {
	payload, subject := w.encodeResult(data)
	if data.Outcome == messages.Succeeded {
		return w.concludeSucceeded(ctx, d, c, data, subject, payload)
	}
	// Any other outcome is published only once the ledger's compare-and-set
	// has won: a delivery that lost the command to a takeover (its worker
	// looked dead to JetStream, then was not) must not store its own
	// outcome, which may differ from the one the new owner will find.
	switch err := w.ledger.complete(c, subject, payload); {
	case errors.Is(err, errLedgerConflict):
		return w.retryLater(d, fmt.Errorf("command %s was taken over by another delivery: %w", d.identity, err))
	case err != nil:
		// The redelivery finds this attempt in the ledger and reconciles.
		return w.retryLater(d, err)
	}
	if err := w.publish(ctx, d, subject, payload, data.Outcome); err != nil {
		// The outcome is in the ledger: the redelivery publishes it
		// without calling the API again.
		return w.retryLater(d, err)
	}
	return result{action: actAck, data: &data}
}

// concludeSucceeded writes the ledger record and publishes the result at
// the same time, saving a round trip on the common path. That is safe for a
// success only: this call stopped the instance, so any delivery that took
// the command over meanwhile gets a 409 and, its claim being ambiguous,
// finds the instance Stopping or Stopped and decides succeeded too. The
// command is acked only once both writes are stored.
func (w *Worker) concludeSucceeded(ctx context.Context, d *delivery, c claim, data messages.ResultData, subject string, payload []byte) result {
	recorded, err := w.ledger.completeAsync(c, subject, payload)
	if err != nil {
		return w.retryLater(d, err)
	}
	pubErr := w.publish(ctx, d, subject, payload, data.Outcome)
	switch ledgerErr := recorded(); {
	case errors.Is(ledgerErr, errLedgerConflict):
		return w.retryLater(d, fmt.Errorf("command %s was taken over by another delivery: %w", d.identity, ledgerErr))
	case ledgerErr != nil:
		return w.retryLater(d, ledgerErr)
	case pubErr != nil:
		return w.retryLater(d, pubErr)
	}
	return result{action: actAck, data: &data}
}

// republish publishes the result an earlier delivery decided, unchanged (same
// event, same Nats-Msg-Id), so the results stream keeps one copy while any
// live subscriber (such as `bccstop stop --wait`) sees it.
func (w *Worker) republish(ctx context.Context, d *delivery, c claim) result {
	ev, err := messages.DecodeResultEvent(c.entry.Event)
	if err != nil {
		return w.retryLater(d, fmt.Errorf("ledger entry of %s: %w", d.identity, err))
	}
	if err := w.publish(ctx, d, c.entry.Subject, c.entry.Event, ev.Data.Outcome); err != nil {
		return w.retryLater(d, err)
	}
	return result{action: actAck, data: &ev.Data, ledgerHit: true}
}

// retryLater is for infrastructure failures (ledger, publish): the command
// is retried with backoff for as long as it takes, since nothing about the
// command itself is wrong and nothing may be acked without its result.
func (w *Worker) retryLater(d *delivery, err error) result {
	return result{action: actRetry, delay: w.backoff(d.delivered, 0), err: err}
}

// transportCode is the code reported for an error with no BCE code.
func transportCode(err error) string {
	var apiErr *bcc.APIError
	if errors.As(err, &apiErr) {
		if apiErr.Code != "" {
			return apiErr.Code
		}
		if text := http.StatusText(apiErr.StatusCode); text != "" {
			return strings.ReplaceAll(text, " ", "")
		}
		return "HTTP" + strconv.Itoa(apiErr.StatusCode)
	}
	var te *bcc.TransportError
	if errors.As(err, &te) {
		return messages.CodeTransportError
	}
	return messages.CodeInternalError
}

func describeErr(err error) string { return printable(err.Error(), 300) }

// printable cuts s to n bytes and replaces control characters, for text that
// came from outside and goes into an event or a log line.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, s)
}
