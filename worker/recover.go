package worker

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/bccstop/bccstop/messages"
)

// recovered turns a panic in next into a result instead of a crash. A panic
// is a bug, so it is logged with its stack; the command is retried with
// backoff until its delivery budget is spent, then concluded through the
// ledger like any other outcome (see concludeAfterPanic), so a poison
// command cannot loop forever and its one outcome stays true.
func (w *Worker) recovered(next handlerFunc) handlerFunc {
	return func(ctx context.Context, d *delivery) (r result) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			err := fmt.Errorf("panic: %v", p)
			w.log.ErrorContext(ctx, "bug: handling a command panicked", "command_id", d.identity, "error", err, "stack", string(debug.Stack()))
			if d.delivered < uint64(w.opts.MaxDeliver) {
				r = result{action: actRetry, delay: w.backoff(d.delivered, 0), err: err}
				return
			}
			r = w.safely(ctx, d, err)
		}()
		return next(ctx, d)
	}
}

// safely runs concludeAfterPanic so that nothing in it can panic out of
// the deferred recover and crash the worker. Should it panic anyway, the
// command is retried after the longest backoff (no jitter: that is code
// too), and after three delivery budgets it is given up, with no result and
// a loud log line, rather than loop for ever on every worker.
func (w *Worker) safely(ctx context.Context, d *delivery, cause error) (r result) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if d.delivered < 3*uint64(w.opts.MaxDeliver) {
			r = result{action: actRetry, delay: w.opts.Backoff[len(w.opts.Backoff)-1], err: fmt.Errorf("%w; concluding it panicked too: %v", cause, p)}
			return
		}
		w.log.ErrorContext(ctx, "bug: giving up on a command: handling and concluding it panicked on every delivery; it has no result",
			"command_id", d.identity, "delivery", d.delivered, "error", fmt.Errorf("panic: %v", p), "stack", string(debug.Stack()))
		r = result{action: actTerm, reason: "internal error", err: cause}
	}()
	return w.concludeAfterPanic(ctx, d, cause)
}

// concludeAfterPanic decides a command whose handling panicked on its last
// delivery as any outcome is decided: through the ledger. An outcome
// decided before the panic is published again. Otherwise the outcome is
// failed InternalError, recorded so a repeat of the command gets it too,
// and never while the instance may be stopping because of this command:
// when the panicking delivery may have called the API, the instance is
// described first (see concludeFailed), and a stop that went through is
// reported succeeded, reconciled, with InternalError as its last code. A
// command already waiting for Stopped waits on (see panicWhileWaiting).
//
// Should deciding panic too (the bug is in describing, say), the outcome
// recorded is failed OutcomeUnknown: nothing could be checked. Should the
// ledger itself panic, the command is retried for another delivery budget,
// then that is published without it (see answerWithoutLedger).
func (w *Worker) concludeAfterPanic(ctx context.Context, d *delivery, cause error) result {
	if d.fingerprint == "" {
		// The panic came before the command was read: its content is its
		// payload, as for a command that cannot be read.
		d.content = "payload sha256 " + messages.Fingerprint(string(d.msg.Data))
		d.fingerprint = messages.Fingerprint(d.content)
	}
	var c claim
	var claimErr error
	if !w.try(ctx, d, func() { c, claimErr = w.bound().ledger.claimAfterPanic(ctx, d) }) {
		// The ledger itself panics: perhaps only this once.
		if d.delivered < 2*uint64(w.opts.MaxDeliver) {
			return w.retryLater(d, cause)
		}
		return w.answerWithoutLedger(ctx, d, cause)
	}
	if claimErr != nil {
		return w.retryLater(d, fmt.Errorf("claim %s after a panic: %w", d.identity, claimErr))
	}
	var r result
	switch c.kind {
	case claimDone:
		// Decided before: publish it again. Should that panic (decoding
		// it, say), publish the stored event as it is; should that panic
		// too, try again for a while (the deciding delivery may have
		// panicked before publishing it), then give up: the ledger keeps
		// the outcome for any repeat.
		if w.try(ctx, d, func() { r = w.republish(ctx, d, c) }) ||
			w.try(ctx, d, func() { r = w.republishRaw(ctx, d, c) }) {
			return r
		}
		if d.delivered < 2*uint64(w.opts.MaxDeliver) {
			return w.retryLater(d, cause)
		}
		w.log.ErrorContext(ctx, "bug: giving up publishing a decided result again; the ledger keeps it", "command_id", d.identity)
		return result{action: actTerm, reason: "internal error", err: cause}
	case claimConflict:
		// The identity is another command's: this one is never acted on,
		// and never retried (after the ledger's TTL it could claim the
		// identity). Should answering it panic, it ends with no result.
		if w.try(ctx, d, func() { r = w.conflict(ctx, d, c) }) {
			return r
		}
		w.log.ErrorContext(ctx, "bug: a command whose identity names another command could not be answered; dropped, never acted on", "command_id", d.identity)
		return result{action: actTerm, reason: "rejected: " + messages.CodeCommandIDConflict, err: cause}
	case claimBusy:
		return w.busy(d, c)
	}
	// This delivery owns the command (claimAcquired).
	if c.waiting() {
		return w.panicWhileWaiting(ctx, d, c, cause)
	}
	data := w.baseData(d)
	data.Outcome, data.Code = messages.Failed, messages.CodeInternalError
	data.Message = "the worker failed while handling this command (" + printable(cause.Error(), 200) + "); see its logs"
	if w.try(ctx, d, func() { r = w.concludeFailed(ctx, d, c, data, false) }) ||
		w.try(ctx, d, func() { r = w.conclude(ctx, d, c, unknownAfterPanic(w.baseData(d), cause)) }) {
		return r
	}
	return w.answerWithoutLedger(ctx, d, cause)
}

// republishRaw publishes the result an earlier delivery decided exactly as
// the ledger holds it. It is read only for the log line, and only if
// reading it does not panic.
func (w *Worker) republishRaw(ctx context.Context, d *delivery, c claim) result {
	if _, err := w.publish(ctx, d, d.identity, c.entry.Subject, c.entry.Event, ""); err != nil {
		return w.retryLater(d, err)
	}
	data := w.baseData(d)
	w.try(ctx, d, func() {
		if ev, err := messages.DecodeResultEvent(c.entry.Event); err == nil {
			data = ev.Data
		}
	})
	return result{action: actAck, data: &data, ledgerHit: true, settles: c.ownRecord(d)}
}

// try runs f and reports whether it returned; a panic in it is logged with
// its stack.
func (w *Worker) try(ctx context.Context, d *delivery, f func()) (returned bool) {
	defer func() {
		if p := recover(); p != nil {
			w.log.ErrorContext(ctx, "bug: concluding a command that panicked panicked too", "command_id", d.identity,
				"error", fmt.Errorf("panic: %v", p), "stack", string(debug.Stack()))
			returned = false
		}
	}()
	f()
	return true
}

// unknownAfterPanic is the outcome of a command whose handling and whose
// concluding both panicked: nothing was checked, so the stop may have taken
// effect.
func unknownAfterPanic(data messages.ResultData, cause error) messages.ResultData {
	data.Outcome, data.Code, data.LastCode = messages.Failed, messages.CodeOutcomeUnknown, messages.CodeInternalError
	data.Message = "the stop may have taken effect: the worker failed while handling this command (" + printable(cause.Error(), 200) +
		") and again while concluding it, so it could not check; see its logs"
	return data
}

// panicWhileWaiting handles a panic while a command waits for Stopped (its
// stop went through). Looks use up deliveries, so the delivery budget says
// nothing here: the wait goes on, as after a look that failed, until
// StopWaitTimeout. Then it ends as the wait would: succeeded if the instance
// is Stopped, otherwise failed, InternalError, with the last status seen
// (not described again if describing panics too).
func (w *Worker) panicWhileWaiting(ctx context.Context, d *delivery, c claim, cause error) (r result) {
	ws := *c.prev.Wait
	now := w.opts.Now()
	if now.Sub(ws.Since) < w.opts.StopWaitTimeout {
		// The wait's own bookkeeping may be what panics: then it ends now.
		waitsOn := w.try(ctx, d, func() {
			next := ws
			next.Describes++
			if err := w.bound().ledger.wait(ctx, c, next); err != nil {
				r = w.retryLater(d, fmt.Errorf("record the wait for Stopped: %w", err))
				return
			}
			r = result{action: actRetry, delay: w.waitInterval(next.Describes, next.Since, now), waiting: true,
				err: fmt.Errorf("waiting for %s to be Stopped; the last look failed: %w", d.cmd.InstanceID, cause)}
		})
		if waitsOn {
			return r
		}
	}
	data := ws.Decided
	data.Attempts = int(d.delivered)
	data.Outcome, data.Code, data.Reconciled = messages.Failed, messages.CodeInternalError, false
	failed := func() result {
		data.InstanceStatus = ws.Status
		data.Message = fmt.Sprintf("the stop went through at %s, but the worker failed while waiting for the instance to be Stopped (%s); last status seen: %s; see its logs",
			ws.Since.UTC().Format(time.RFC3339), printable(cause.Error(), 200), ws.Status)
		return w.conclude(ctx, d, c, data)
	}
	looked := w.try(ctx, d, func() {
		inst, resp, err := w.looks.describe(ctx, d.cmd.Region, d.cmd.InstanceID)
		switch {
		case err == nil && inst.Status == "Stopped":
			done := ws.Decided
			done.Attempts, done.HTTPStatus, done.RequestID = int(d.delivered), resp.StatusCode, resp.RequestID
			done.InstanceStatus, done.StoppedAt = "Stopped", now.UTC().Format(time.RFC3339Nano)
			r = w.conclude(ctx, d, c, done)
			return
		case err == nil:
			ws.Status = inst.Status
		case ctx.Err() != nil:
			r = result{action: actAbandon, err: err}
			return
		}
		r = failed()
	})
	if looked || w.try(ctx, d, func() { r = failed() }) {
		return r
	}
	return w.answerWithoutLedger(ctx, d, cause)
}

// answerWithoutLedger publishes failed OutcomeUnknown and terminates the
// command, for when the ledger itself panics; should that panic too, the
// command is retried later. Its ledger entry stays as it was, so a later
// repeat of the command may still act on it: this is the last resort.
func (w *Worker) answerWithoutLedger(ctx context.Context, d *delivery, cause error) result {
	r := w.retryLater(d, cause)
	w.try(ctx, d, func() {
		data := unknownAfterPanic(w.baseData(d), cause)
		payload, subject, _ := w.encodeResult(d, data)
		// No event id: should the results stream hold a result for this
		// identity already, that one stands and this is dropped as a
		// duplicate (live subscribers still see it go by).
		ack, err := w.publish(ctx, d, d.identity, subject, payload, "")
		switch {
		case err != nil:
			r = w.retryLater(d, err)
		case ack.Duplicate:
			w.log.ErrorContext(ctx, "bug: after a panic, the results stream already held a result for this command; it stands", "command_id", d.identity)
			r = result{action: actTerm, reason: "internal error", err: cause}
		default:
			r = result{action: actTerm, reason: "internal error", data: &data, err: cause}
		}
	})
	return r
}
