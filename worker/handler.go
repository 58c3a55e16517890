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
	// waiting: the stop went through; the command is handed back until the
	// instance is Stopped.
	waiting bool
	// err says why a delivery is retried or abandoned.
	err error
	// settles is the done record this delivery's outcome is in, to be
	// settled (given its TTL) once the delivery is acknowledged; nil when
	// there is none, or it is another message's.
	settles *record
}

// verdict is a reason to refuse a command without calling the API.
type verdict struct{ code, message string }

// handle is the flow of one command: decode, check, claim, call, decide,
// record, publish.
func (w *Worker) handle(ctx context.Context, d *delivery) result {
	if err := w.guardsReady(); err != nil {
		// Fail closed: handed back unclaimed, for a worker that can see
		// the guardrails (or for this one, once it can again).
		return result{action: actRetry, delay: time.Second, busy: true, err: err}
	}
	refused := w.admit(ctx, d)
	c, err := w.bound().ledger.claim(ctx, d)
	if err != nil {
		return w.retryLater(d, fmt.Errorf("claim %s: %w", d.identity, err))
	}
	switch c.kind {
	case claimDone:
		return w.republish(ctx, d, c)
	case claimConflict:
		return w.conflict(ctx, d, c)
	case claimBusy:
		return w.busy(d, c)
	}
	if c.waiting() {
		return w.keepWaiting(ctx, d, c)
	}
	if refused != nil {
		return w.refuse(ctx, d, c, *refused)
	}
	if r, expired := w.expire(ctx, d, c); expired {
		return r
	}
	return w.attempt(ctx, d, c)
}

// admit decodes the command, settles its identity and content, and checks
// what can be checked without the ledger or the API. A refusal is returned,
// not acted on: it too is recorded against the identity first.
func (w *Worker) admit(ctx context.Context, d *delivery) *verdict {
	cmd, env, decodeErr := messages.DecodeCommandMessage(d.msg.Data, d.header)
	d.cmd = cmd
	identity, idErr := messages.Identity(cmd, env, d.msgID)
	fired := w.firedBy(ctx, d)
	if identity == "" && idErr == nil && fired.id != "" {
		identity = fired.id // a schedule's command is named by the schedule
	}
	if identity != "" {
		d.identity = identity
	}
	if decodeErr != nil || idErr != nil {
		// No command to compare: the payload itself is the content.
		d.content = "payload sha256 " + messages.Fingerprint(string(d.msg.Data))
		d.fingerprint = messages.Fingerprint(d.content)
		return &verdict{messages.CodeInvalidCommand, errors.Join(decodeErr, idErr).Error()}
	}
	d.content = cmd.Content()
	d.fingerprint = messages.Fingerprint(d.content)
	switch {
	case fired.refusal != "":
		return &verdict{messages.CodeInvalidSchedule, fired.refusal}
	case w.protected[cmd.InstanceID]:
		return &verdict{messages.CodeInstanceProtected,
			fmt.Sprintf("instance %s is listed in BCCSTOP_PROTECTED_INSTANCES and is never stopped", cmd.InstanceID)}
	case w.heldVerdict(cmd.InstanceID) != nil:
		return w.heldVerdict(cmd.InstanceID)
	case !w.opts.API.HasRegion(cmd.Region):
		return &verdict{messages.CodeUnknownRegion,
			fmt.Sprintf("invalid command: region: %q is not configured in BCC_ENDPOINTS", cmd.Region)}
	}
	return nil
}

// fired says what fired a command, when a schedule did.
type fired struct {
	// id names a schedule of this layout ("" otherwise).
	id string
	// refusal says why a fired command is never acted on ("" when it may be).
	refusal string
}

// firedBy looks at the headers JetStream sets on what a schedule fired
// (which no publisher can set on the commands stream). Only a one-shot may
// be acted on: a command fired by a repeating schedule (left by an earlier
// release, or planted in its stream) is refused, and the schedule removed.
func (w *Worker) firedBy(ctx context.Context, d *delivery) fired {
	if d.scheduler == "" {
		return fired{}
	}
	f := fired{}
	if d.stream != w.opts.LegacyCommandsStream {
		f.id = firedScheduleID(d.scheduler)
	}
	if d.scheduleNext != "purge" {
		f.refusal = fmt.Sprintf("fired by the repeating schedule %s (next %s): only one-shot \"@at\" schedules are acted on; the schedule is removed",
			printable(d.scheduler, 140), printable(d.scheduleNext, 40))
		if d.stream == w.opts.LegacyCommandsStream {
			w.removeLegacySchedule(ctx, d.scheduler)
		}
	}
	return f
}

// refuse concludes a command admit refused. Normally that is a rejected
// outcome: no API call was made. If an earlier delivery of the same command
// got as far as the API (the worker's settings changed in between, say the
// instance was protected meanwhile), the truth is no longer "never called":
// the outcome is failed, with the same code, after checking whether the
// earlier attempt stopped the instance.
func (w *Worker) refuse(ctx context.Context, d *delivery, c claim, v verdict) result {
	data := w.baseData(d)
	if !c.attempted() {
		data.Outcome, data.Code, data.Message = messages.Rejected, v.code, v.message
		// Echo what the sender gave, made safe to print: it may be anything.
		data.InstanceID, data.Region = printable(d.cmd.InstanceID, 80), printable(d.cmd.Region, 40)
		data.Reason, data.RequestedBy = printable(d.cmd.Reason, messages.MaxReason), printable(d.cmd.RequestedBy, messages.MaxRequestedBy)
		data.NotAfter = printable(d.cmd.NotAfter, 64)
		return w.conclude(ctx, d, c, data)
	}
	data.Outcome, data.Code = messages.Failed, v.code
	data.Message = v.message + " (refused on a later delivery; an earlier one reached the API)"
	return w.concludeFailed(ctx, d, c, data, false)
}

// expire refuses a command whose time is up: taken after its notAfter, or
// first taken after waiting longer than MaxCommandAge in the stream. Before
// any attempt that is a rejection; after one (a retry past the deadline)
// the outcome is failed, once it is known whether an attempt stopped the
// instance.
func (w *Worker) expire(ctx context.Context, d *delivery, c claim) (result, bool) {
	now := w.opts.Now()
	why := ""
	if deadline, ok := d.cmd.Deadline(); ok && now.After(deadline) {
		why = fmt.Sprintf("taken at %s, after its notAfter %s", now.UTC().Format(time.RFC3339), d.cmd.NotAfter)
	} else if age := now.Sub(d.stored); w.opts.MaxCommandAge > 0 && !c.attempted() && age > w.opts.MaxCommandAge {
		why = fmt.Sprintf("stored %s before a worker took it, longer than BCCSTOP_MAX_COMMAND_AGE (%s)", age.Round(time.Second), w.opts.MaxCommandAge)
	}
	if why == "" {
		return result{}, false
	}
	data := w.baseData(d)
	if !c.attempted() {
		data.Outcome, data.Code, data.Message = messages.Rejected, messages.CodeExpired, "expired: "+why+"; the API was not called"
		return w.conclude(ctx, d, c, data), true
	}
	data.Outcome, data.Code, data.LastCode = messages.Failed, messages.CodeExpired, c.entry.LastCode
	data.HTTPStatus, data.RequestID = c.entry.LastStatus, c.entry.LastRequestID
	data.Message = "expired: " + why + "; no retry is sent after it"
	return w.concludeFailed(ctx, d, c, data, false), true
}

// attempt makes the stop call and decides what its answer means.
func (w *Worker) attempt(ctx context.Context, d *delivery, c claim) result {
	data := w.baseData(d)
	if c.ambiguous() {
		// An earlier attempt's fate is unknown: look before stopping again,
		// so a stop that went through is not sent a second time.
		if r, done := w.lookFirst(ctx, d, c, &data); done {
			return r
		}
	}
	// The budget is charged when the call has its turn under the fleet's
	// rate, right before it is sent (see chargeBudget); when the charge
	// decides otherwise, the call is not sent and that decision stands.
	var charged *result
	resp, callErr := w.opts.API.StopInstance(ctx, bcc.StopRequest{
		InstanceID: d.cmd.InstanceID, ForceStop: d.cmd.ForceStop, StopWithNoCharge: d.cmd.StopWithNoCharge, Region: d.cmd.Region,
		OnTurn: func(ctx context.Context) error {
			if r, done := w.chargeBudget(ctx, d, &c); done {
				charged = &r
				return errNotCharged
			}
			return nil
		},
	})
	if charged != nil {
		return *charged
	}
	if callErr != nil && ctx.Err() != nil {
		return result{action: actAbandon, err: fmt.Errorf("shutdown interrupted the call: %w", callErr)}
	}
	if bcc.IsCredentialError(callErr) {
		// Refused for the worker's credentials, not for the command: the
		// stop was not made, and the command goes back untouched.
		return w.credentialsRefused(ctx, d, c, callErr)
	}
	data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
	var apiErr *bcc.APIError
	if errors.As(callErr, &apiErr) {
		data.HTTPStatus, data.RequestID = apiErr.StatusCode, apiErr.RequestID
	}
	c.entry.Calls++

	switch transient, retryAfter := bcc.Classify(callErr); {
	case callErr == nil:
		data.Outcome = messages.Succeeded
		return w.conclude(ctx, d, c, data)
	case bcc.IsForbidden(callErr) && c.ambiguous():
		return w.reconcile(ctx, d, c, data, apiErr)
	case bcc.IsForbidden(callErr):
		data.Outcome, data.Code, data.Message = messages.Forbidden, apiErr.Code, apiErr.Message
		return w.conclude(ctx, d, c, data)
	case transient && d.delivered < uint64(w.opts.MaxDeliver):
		code := transportCode(callErr)
		if err := w.bound().ledger.release(ctx, c, data.HTTPStatus, code, data.RequestID, bcc.MayHaveApplied(callErr)); err != nil {
			w.log.WarnContext(ctx, "could not record the failed attempt in the ledger", "command_id", d.identity, "error", err)
		}
		return result{action: actRetry, delay: w.backoff(d.delivered, retryAfter), err: callErr}
	case transient:
		data.Outcome, data.Code, data.LastCode = messages.Failed, messages.CodeRetriesExhausted, transportCode(callErr)
		data.Message = fmt.Sprintf("gave up after %d deliveries; last error: %s", d.delivered, describeErr(callErr))
	case bcc.IsNoChargeRefusal(callErr):
		data.Outcome, data.Code = messages.Failed, apiErr.Code
		data.Message = fmt.Sprintf("%s: the API refuses to stop this instance with stopWithNoCharge; to stop it (charged as it runs now), send the command again without stopWithNoCharge, under a new commandId",
			describeErr(callErr))
	default:
		// A refusal of this command (NoSuchObject, AccessDenied, the
		// instance's type, a malformed request, …): failed at once, with
		// the API's own code, never retried.
		data.Outcome, data.Code, data.Message = messages.Failed, transportCode(callErr), describeErr(callErr)
	}
	return w.concludeFailed(ctx, d, c, data, bcc.MayHaveApplied(callErr))
}

// lookFirst describes the instance before a stop is sent again after an
// attempt whose fate is unknown. Stopping or Stopped: the earlier attempt
// (or something else) stopped it, and the outcome is succeeded, reconciled,
// with no second stop call. Otherwise the stop call goes ahead (done is
// false), unless describing failed transiently and the command can be
// retried later.
func (w *Worker) lookFirst(ctx context.Context, d *delivery, c claim, data *messages.ResultData) (r result, done bool) {
	inst, resp, err := w.looks.describe(ctx, d.cmd.Region, d.cmd.InstanceID)
	switch transient, after := bcc.Classify(err); {
	case err == nil && stopping(inst.Status):
		data.Outcome, data.Reconciled, data.InstanceStatus = messages.Succeeded, true, inst.Status
		data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
		data.Message = "an earlier attempt's answer was lost; the instance is " + inst.Status + ", so no second stop was sent"
		return w.conclude(ctx, d, c, *data), true
	case err == nil:
		data.InstanceStatus = inst.Status
	case ctx.Err() != nil:
		return result{action: actAbandon, err: err}, true
	case bcc.IsCredentialError(err):
		return w.credentialsRefused(ctx, d, c, err), true
	case transient && d.delivered < uint64(w.opts.MaxDeliver):
		if lerr := w.bound().ledger.release(ctx, c, c.entry.LastStatus, c.entry.LastCode, c.entry.LastRequestID, true); lerr != nil {
			w.log.WarnContext(ctx, "could not record the failed attempt in the ledger", "command_id", d.identity, "error", lerr)
		}
		return result{action: actRetry, delay: w.backoff(d.delivered, after), err: fmt.Errorf("describe before a second stop: %w", err)}, true
	}
	return result{}, false
}

// reconcile settles a 409 after an attempt whose fate is unknown: if the
// instance is Stopping or Stopped, the stop went through and the outcome is
// succeeded; otherwise the instance really was not Running and it is
// forbidden.
func (w *Worker) reconcile(ctx context.Context, d *delivery, c claim, data messages.ResultData, stopErr *bcc.APIError) result {
	inst, resp, err := w.looks.describe(ctx, d.cmd.Region, d.cmd.InstanceID)
	if err != nil {
		transient, after := bcc.Classify(err)
		switch {
		case ctx.Err() != nil:
			return result{action: actAbandon, err: err}
		case bcc.IsCredentialError(err):
			return w.credentialsRefused(ctx, d, c, err)
		case transient && d.delivered < uint64(w.opts.MaxDeliver):
			if lerr := w.bound().ledger.release(ctx, c, data.HTTPStatus, stopErr.Code, data.RequestID, false); lerr != nil {
				w.log.WarnContext(ctx, "could not record the failed attempt in the ledger", "command_id", d.identity, "error", lerr)
			}
			return result{action: actRetry, delay: w.backoff(d.delivered, after), err: fmt.Errorf("reconcile after 409: %w", err)}
		}
		data.Outcome, data.Code, data.LastCode = messages.Failed, messages.CodeOutcomeUnknown, stopErr.Code
		data.Message = fmt.Sprintf("the stop may have taken effect: an earlier attempt's answer was lost, the retry was answered 409, and the instance could not be described to tell: %s",
			describeErr(err))
		return w.conclude(ctx, d, c, data)
	}
	data.InstanceStatus = inst.Status
	if stopping(inst.Status) {
		data.Outcome, data.Reconciled = messages.Succeeded, true
		data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
		data.Message = "an earlier attempt stopped the instance: the retry was answered 409 and the instance is " + inst.Status
		return w.conclude(ctx, d, c, data)
	}
	data.Outcome, data.Code = messages.Forbidden, stopErr.Code
	data.Message = fmt.Sprintf("%s (instance is %s)", stopErr.Message, inst.Status)
	return w.conclude(ctx, d, c, data)
}

// concludeFailed concludes a failed outcome, but never while the instance
// may be stopping because of this command: when this attempt or an earlier
// one may have stopped it (mayHaveApplied, or the claim is ambiguous), the
// instance is described first. Stopping or Stopped: succeeded, reconciled.
// Running (or any other status): failed as decided. Not describable: failed
// OutcomeUnknown, saying the stop may have taken effect.
func (w *Worker) concludeFailed(ctx context.Context, d *delivery, c claim, data messages.ResultData, mayHaveApplied bool) result {
	if !mayHaveApplied && !c.ambiguous() {
		return w.conclude(ctx, d, c, data)
	}
	inst, resp, err := w.looks.describe(ctx, d.cmd.Region, d.cmd.InstanceID)
	switch {
	case err == nil && stopping(inst.Status):
		failure := data.Code
		data.Outcome, data.Reconciled, data.InstanceStatus = messages.Succeeded, true, inst.Status
		data.Code, data.LastCode = "", failure
		data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
		data.Message = fmt.Sprintf("the instance is %s: a stop whose answer was lost went through (last failure: %s)", inst.Status, data.Message)
	case err == nil:
		data.InstanceStatus = inst.Status
	case ctx.Err() != nil:
		return result{action: actAbandon, err: err}
	case bcc.IsCredentialError(err):
		return w.credentialsRefused(ctx, d, c, err)
	default:
		if data.LastCode == "" {
			data.LastCode = data.Code
		}
		data.Code = messages.CodeOutcomeUnknown
		data.Message = fmt.Sprintf("the stop may have taken effect: %s; the instance could not be described to tell: %s", data.Message, describeErr(err))
	}
	return w.conclude(ctx, d, c, data)
}

// stopping reports whether an instance status means a stop went through.
func stopping(status string) bool { return status == "Stopping" || status == "Stopped" }

// baseData fills what every result of this delivery carries.
func (w *Worker) baseData(d *delivery) messages.ResultData {
	return messages.ResultData{
		CommandID:        d.identity,
		InstanceID:       d.cmd.InstanceID,
		ForceStop:        d.cmd.ForceStop,
		StopWithNoCharge: d.cmd.StopWithNoCharge,
		Region:           d.cmd.Region,
		NotAfter:         d.cmd.NotAfter,
		WaitUntilStopped: d.cmd.WaitUntilStopped,
		Reason:           d.cmd.Reason,
		RequestedBy:      d.cmd.RequestedBy,
		Attempts:         int(d.delivered),
	}
}

// conflict answers a command whose identity already names a command with
// other content: it is not acted on. Its result is published under a
// Nats-Msg-Id derived from the identity and the new content, so it is stored
// and seen while the first command's result stays untouched. It is not
// recorded in the ledger, whose entry belongs to the first command.
func (w *Worker) conflict(ctx context.Context, d *delivery, c claim) result {
	data := w.baseData(d)
	data.InstanceID, data.Region = printable(d.cmd.InstanceID, 80), printable(d.cmd.Region, 40)
	data.Reason, data.RequestedBy = printable(d.cmd.Reason, messages.MaxReason), printable(d.cmd.RequestedBy, messages.MaxRequestedBy)
	data.NotAfter = printable(d.cmd.NotAfter, 64)
	data.Outcome, data.Code = messages.Rejected, messages.CodeCommandIDConflict
	data.Message = fmt.Sprintf("identity %s already names another command (%s); this one (%s) is not acted on: give each command its own commandId",
		printable(d.identity, 140), c.entry.Content, d.content)
	payload, subject, eventID := w.encodeResult(d, data)
	if _, err := w.publish(ctx, d, conflictMsgID(d.identity, d.fingerprint), subject, payload, eventID); err != nil {
		return w.retryLater(d, err)
	}
	return result{action: actTerm, reason: "rejected: " + messages.CodeCommandIDConflict, data: &data}
}

// conflictMsgID is the Nats-Msg-Id of a CommandIdConflict result: the
// identity and the new content's fingerprint.
func conflictMsgID(identity, fingerprint string) string {
	return identity + "~conflict-" + fingerprint[:16]
}

// conclude records the decided outcome in the ledger, publishes it and
// settles the delivery: ack, or term for a rejection.
func (w *Worker) conclude(ctx context.Context, d *delivery, c claim, data messages.ResultData) result {
	if data.Outcome == messages.Succeeded && d.cmd.WaitUntilStopped && data.StoppedAt == "" {
		return w.startWaiting(ctx, d, c, data)
	}
	payload, subject, eventID := w.encodeResult(d, data)
	done := result{action: actAck, data: &data}
	if data.Outcome == messages.Rejected {
		done = result{action: actTerm, reason: "rejected: " + data.Code, data: &data}
	}
	if data.Outcome == messages.Succeeded {
		return w.concludeSucceeded(ctx, d, c, done, subject, payload, eventID)
	}
	// Any other outcome is published only once the ledger's compare-and-set
	// has won: a delivery that lost the command to a takeover (its worker
	// looked dead to JetStream, then was not) must not store its own
	// outcome, which may differ from the one the new owner will find.
	ledger := w.bound().ledger
	rec, err := ledger.complete(c, subject, payload)
	switch {
	case errors.Is(err, errLedgerConflict):
		return w.retryLater(d, fmt.Errorf("command %s was taken over by another delivery: %w", d.identity, err))
	case err != nil:
		// The redelivery finds this attempt in the ledger and reconciles.
		return w.retryLater(d, err)
	}
	if _, err := w.publish(ctx, d, d.identity, subject, payload, eventID); err != nil {
		// The outcome is in the ledger: the redelivery publishes it
		// without calling the API again.
		return w.retryLater(d, err)
	}
	done.settles = rec
	return done
}

// concludeSucceeded writes the ledger record and publishes the result at
// the same time, saving a round trip on the common path. That is safe for a
// success only: this call stopped the instance, so any delivery that took
// the command over meanwhile finds it Stopping or Stopped and decides
// succeeded too. The command is acked only once both writes are stored.
func (w *Worker) concludeSucceeded(ctx context.Context, d *delivery, c claim, done result, subject string, payload []byte, eventID string) result {
	var (
		rec               *record
		ledgerErr, pubErr error
	)
	if c.attempted() {
		// An earlier delivery may have stopped the instance and stored
		// this very result, then lost its record to this one. Its copy
		// started the results stream's duplicate window, so the record is
		// dated from it: the ledger must forget the outcome no later than
		// the stream forgets its Nats-Msg-Id, or a repeat answered from a
		// record younger than the stored copy stores the result twice.
		// One round trip more, on this rare path only.
		var storedAt time.Time
		if _, storedAt, pubErr = w.publishStored(ctx, d, d.identity, subject, payload, eventID); pubErr != nil {
			return w.retryLater(d, pubErr)
		}
		rec, ledgerErr = w.bound().ledger.completeAt(c, subject, payload, storedAt)
	} else {
		recorded, err := w.bound().ledger.completeAsync(c, subject, payload, time.Time{})
		if err != nil {
			return w.retryLater(d, err)
		}
		_, pubErr = w.publish(ctx, d, d.identity, subject, payload, eventID)
		rec, ledgerErr = recorded()
	}
	switch {
	case errors.Is(ledgerErr, errLedgerConflict):
		return w.retryLater(d, fmt.Errorf("command %s was taken over by another delivery: %w", d.identity, ledgerErr))
	case ledgerErr != nil:
		return w.retryLater(d, ledgerErr)
	case pubErr != nil:
		return w.retryLater(d, pubErr)
	}
	done.settles = rec
	return done
}

// republish publishes the result an earlier delivery decided, unchanged (same
// event, same Nats-Msg-Id), so the results stream keeps one copy while any
// live subscriber (such as `bccstop stop --wait`) sees it.
//
// The one exception is the message that decided it, delivered again
// longer than the TTL after (its acknowledgement was lost, then the fleet
// was paused or NATS away): the results stream's duplicate window is
// over, so publishing again would store a second copy. The stream is
// searched for the result first (see resultStored), and it is published
// only if it is not there.
func (w *Worker) republish(ctx context.Context, d *delivery, c claim) result {
	ev, err := messages.DecodeResultEvent(c.entry.Event)
	if err != nil {
		return w.retryLater(d, fmt.Errorf("ledger entry of %s: %w", d.identity, err))
	}
	stored := false
	if !c.entry.Settled && c.entry.Seq == d.seq && w.opts.Now().Sub(c.entry.Updated) >= w.opts.LedgerTTL {
		if stored, err = w.resultStored(ctx, d.identity, ev.ID, c.entry); err != nil {
			return w.retryLater(d, fmt.Errorf("looking for the stored result of %s: %w", d.identity, err))
		}
		w.log.InfoContext(ctx, "a concluded command came back after the ledger's TTL (its acknowledgement was lost); answered from the ledger, with no API call",
			"command_id", d.identity, "decided", c.entry.Updated.Format(time.RFC3339Nano), "result_stored", stored)
	}
	if !stored {
		if _, err := w.publish(ctx, d, d.identity, c.entry.Subject, c.entry.Event, ""); err != nil {
			return w.retryLater(d, err)
		}
	}
	r := result{action: actAck, data: &ev.Data, ledgerHit: true, settles: c.ownRecord(d)}
	if ev.Data.Outcome == messages.Rejected {
		r.action, r.reason = actTerm, "rejected: "+ev.Data.Code
	}
	return r
}

// busy retries a command another live delivery owns (claimBusy).
func (w *Worker) busy(d *delivery, c claim) result {
	return result{action: actRetry, delay: w.backoff(d.delivered, 0), busy: true,
		err: fmt.Errorf("command %s is being handled by %s (delivery %d of message %d)", d.identity, c.entry.Owner, c.entry.Delivery, c.entry.Seq)}
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
