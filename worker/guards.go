package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/messages"
)

// The guardrails of the fleet (internal/guard), as one worker applies them:
// the fleet-wide API rate paces every call (it is the API client's limiter,
// run here); holds on instances are watched, and a command for a held
// instance is refused with no I/O; the blast-radius budget is charged once
// per command, before its first stop call, and when it is spent the fleet
// pauses itself. A worker that cannot see the holds or pace its calls is
// not ready and takes no command (fail closed).

// runGuards runs the rate limiter and the holds watcher until ctx ends.
func (w *Worker) runGuards(ctx context.Context) {
	if w.opts.Rate != nil {
		go func() {
			if err := w.opts.Rate.Run(ctx); err != nil {
				w.log.Error("the fleet's rate limiter stopped", "error", err)
			}
		}()
	}
	go func() {
		if err := w.holds.Run(ctx); err != nil && ctx.Err() == nil {
			w.log.Error("the holds watcher stopped", "error", err)
		}
	}()
}

// guardsReady says why this worker may not take commands now ("" error when
// it may): it cannot see the holds, or cannot pace its calls.
func (w *Worker) guardsReady() error {
	if err := w.creds.readyErr(); err != nil {
		return err
	}
	if err := w.holds.Ready(); err != nil {
		return fmt.Errorf("the holds are not known (%v): no command is taken until they are", err)
	}
	if w.opts.Rate != nil {
		if err := w.opts.Rate.Ready(); err != nil {
			return fmt.Errorf("the fleet's API rate cannot be kept (%v): no command is taken until it can", err)
		}
	}
	return nil
}

// heldVerdict refuses a command for a held instance.
func (w *Worker) heldVerdict(instanceID string) *verdict {
	h, held := w.holds.Check(instanceID)
	if !held {
		return nil
	}
	return &verdict{messages.CodeInstanceHeld, fmt.Sprintf("%s (bccstop hold); it is not stopped while the hold lasts", h)}
}

// announceHold publishes the control event of a change of the holds, once
// for the fleet (the event id is the change's revision).
func (w *Worker) announceHold(ev guard.HoldEvent) {
	b := w.bound()
	if b == nil || b.announcer == nil || ev.Hold.Unreadable != "" && ev.Kind == guard.HoldPlaced {
		return
	}
	d := messages.ControlData{InstanceIDs: []string{ev.Hold.InstanceID}, Reason: ev.Hold.Reason, RequestedBy: ev.Hold.By}
	if !ev.Hold.Until.IsZero() {
		d.HoldUntil = ev.Hold.Until.UTC().Format(time.RFC3339)
	}
	id := ""
	switch ev.Kind {
	case guard.HoldPlaced:
		d.Action, id = messages.ControlHeld, "held-"+ev.Hold.InstanceID+"-"+strconv.FormatUint(ev.Revision, 10)
	case guard.HoldReleased:
		d.Action, id = messages.ControlReleased, "released-"+ev.Hold.InstanceID+"-"+strconv.FormatUint(ev.Revision, 10)
	case guard.HoldExpired:
		d.Action, id = messages.ControlReleased, "released-"+ev.Hold.InstanceID+"-"+strconv.FormatUint(ev.Revision, 10)
		d.Automatic, d.Reason, d.RequestedBy = true, "the hold ran out", messages.SourcePrefix+w.opts.WorkerID
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.announcer.Publish(ctx, d, id); err != nil {
		w.log.Warn("could not announce a change of the holds", "instance_id", ev.Hold.InstanceID, "change", string(ev.Kind), "error", err)
	}
}

// errNotCharged tells the API client not to send a stop: chargeBudget
// decided what becomes of the command instead.
var errNotCharged = errors.New("the stop was not sent: the blast-radius budget decided otherwise")

// maxChargeToCall is the longest a stop call may follow the start of its
// budget charge. The budget counts a charge in the slot of its time, so a
// call long after it (the worker stalled, a ledger write that hung) could
// land in a window the charge was not counted in.
const maxChargeToCall = time.Second

// chargeBudget counts this command's first stop call in the blast-radius
// budget, once: the ledger records the charge before the call, so neither a
// retry nor a redelivery of a call that was made charges again. It runs
// when the call has its turn under the fleet's rate, right before it is
// sent (bcc.StopRequest's OnTurn), so a call that waits for its turn, or
// never gets it, has not been charged yet: every window of the budget's
// length holds at most N first stop calls where the API counts them, not
// only N charges. When the budget is spent, the call is not made: the fleet
// pauses itself, the tripped event is published, and the command goes back
// to JetStream to wait (done is true then).
//
// A command charged by an earlier delivery that recorded no call (its
// worker died, was frozen or lost NATS between the charge and the call, or
// its call was refused for the credentials) is charged again: this call
// may be the first to reach the API, long after the slot the earlier charge
// was counted in. That charge is a new one (its own nonce), and the
// earlier one is not taken back, since its call may have been made: the
// fleet may count a stop more than it made, never fewer.
func (w *Worker) chargeBudget(ctx context.Context, d *delivery, c *claim) (r result, done bool) {
	b := w.opts.Budget
	if b == nil || (c.entry.Charged && c.entry.Calls > 0) {
		return result{}, false
	}
	nonce, again := c.key, c.entry.Charged
	if again {
		nonce = c.key + "/" + d.stream + "/" + strconv.FormatUint(d.seq, 10) + "/" + strconv.FormatUint(d.delivered, 10)
	}
	dec, err := b.Charge(ctx, nonce)
	if err != nil {
		return w.handBack(ctx, d, *c, fmt.Errorf("the blast-radius budget cannot be counted: %w", err)), true
	}
	// Refused charges racing this one may still be counted for an instant
	// (each is taken back at once): what the fleet has used is at most N.
	dec.Used = min(dec.Used, dec.Limit)
	w.tel.budgetUsed.Store(int64(dec.Used))
	if !dec.Admitted {
		w.trip(ctx, dec)
		return w.handBack(ctx, d, *c, fmt.Errorf("the blast-radius budget (%s) is spent: %d stops in the last %s; the fleet is paused, the command waits",
			w.opts.BudgetSpec, dec.Used, shortDuration(dec.Window))), true
	}
	rev, err := w.bound().ledger.markCharged(ctx, *c)
	if err != nil {
		// Counted, not recorded: a later delivery charges again (the fleet
		// counts one stop more than it made; never fewer).
		return w.retryLater(d, fmt.Errorf("record the budget's charge: %w", err)), true
	}
	c.rev, c.entry.Charged = rev, true
	if late := time.Since(dec.At); late > maxChargeToCall {
		// Too late for the slot it was counted in: this call is not made.
		// The ledger forgets a first charge, and the next delivery charges
		// afresh (the same nonce takes this one back); a charge made again
		// stays recorded, and the next delivery charges again.
		c.entry.Charged = again
		return w.handBack(ctx, d, *c, fmt.Errorf("the budget's charge was %s before the call could go (at most %s): charged again on the next delivery",
			late.Round(time.Millisecond), maxChargeToCall)), true
	}
	return result{}, false
}

// handBack gives a claimed command back without calling the API: the
// ledger entry says no attempt was made, and the command is redelivered.
func (w *Worker) handBack(ctx context.Context, d *delivery, c claim, why error) result {
	if err := w.bound().ledger.release(ctx, c, c.entry.LastStatus, c.entry.LastCode, c.entry.LastRequestID, false); err != nil {
		w.log.WarnContext(ctx, "could not record a command handed back in the ledger", "command_id", d.identity, "error", err)
	}
	return result{action: actRetry, delay: time.Second, err: why, busy: true}
}

// trip pauses the fleet for the spent budget (unless it is paused already)
// and announces it.
func (w *Worker) trip(ctx context.Context, dec guard.Decision) {
	b := w.bound()
	span, err := control.Trip(ctx, w.js, w.target(), w.opts.BudgetSpec, dec.Used, messages.SourcePrefix+w.opts.WorkerID)
	if err != nil {
		w.log.ErrorContext(ctx, "the blast-radius budget is spent, but the fleet could not be paused; commands are handed back", "budget", w.opts.BudgetSpec, "error", err)
		return
	}
	if span == nil {
		return // paused already
	}
	w.tel.budgetTrips.Add(ctx, 1)
	w.log.ErrorContext(ctx, "the blast-radius budget is spent: the fleet is paused until an operator resumes it (bccstop resume)",
		"budget", w.opts.BudgetSpec, "used", dec.Used, "frees_at", dec.FreesAt.UTC().Format(time.RFC3339))
	if err := b.announcer.AnnounceTripped(ctx, *span); err != nil {
		w.log.WarnContext(ctx, "could not publish the tripped event", "error", err)
	}
}

// shortDuration writes 1m rather than 1m0s, 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
