package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/messages"
)

// Waiting until Stopped (a command with waitUntilStopped) holds no handler:
// once the stop is accepted, the succeeded result as decided then is kept in
// the ledger with the state "waiting", and the delivery is handed back to
// JetStream with a delay. Each later delivery, on any worker, looks at the
// instance once (looks due together are made together: one batch describe
// for up to a hundred instances, see looks.go and lookGrid): Stopped concludes the command with the kept result (status
// Stopped and when it was first seen so); past StopWaitTimeout it ends failed
// StopTimedOut; otherwise it goes back to JetStream again, a little later
// each time (StopWaitIntervals). A worker that dies while a command waits
// loses nothing, and the stop is never sent twice: the ledger says it went
// through.

// waitState is what the ledger keeps about a command waiting for Stopped.
type waitState struct {
	// Since is when the stop was accepted (or found going through).
	Since time.Time `json:"since"`
	// Describes counts describe calls made while waiting.
	Describes int `json:"describes"`
	// Status is the last status seen.
	Status string `json:"status"`
	// Decided is the succeeded result as decided when the stop went
	// through; the final result is it, with the instance Stopped.
	Decided messages.ResultData `json:"decided"`
}

// startWaiting records that a command's stop went through and that it now
// waits for the instance to be Stopped, and hands the delivery back to
// JetStream until the first look.
func (w *Worker) startWaiting(ctx context.Context, d *delivery, c claim, data messages.ResultData) result {
	now := w.opts.Now()
	if data.InstanceStatus == "Stopped" {
		data.StoppedAt = now.UTC().Format(time.RFC3339Nano)
		return w.conclude(ctx, d, c, data)
	}
	status := data.InstanceStatus
	if status == "" {
		status = "Stopping" // the API accepted the stop
	}
	ws := waitState{Since: now, Status: status, Decided: data}
	if err := w.bound().ledger.wait(ctx, c, ws); err != nil {
		// The redelivery finds this attempt unfinished, describes the
		// instance first, sees it stopping and waits from there.
		return w.retryLater(d, fmt.Errorf("record the wait for Stopped: %w", err))
	}
	return result{action: actRetry, delay: w.waitInterval(0, ws.Since, now), waiting: true,
		err: fmt.Errorf("the stop went through; waiting for %s to be Stopped", d.cmd.InstanceID)}
}

// keepWaiting looks at an instance whose command waits for Stopped.
func (w *Worker) keepWaiting(ctx context.Context, d *delivery, c claim) result {
	ws := *c.prev.Wait
	inst, resp, err := w.looks.describe(ctx, d.cmd.Region, d.cmd.InstanceID)
	if err != nil && ctx.Err() != nil {
		return result{action: actAbandon, err: err}
	}
	if bcc.IsCredentialError(err) {
		return w.credentialsRefused(ctx, d, c, err)
	}
	ws.Describes++
	now := w.opts.Now()
	data := ws.Decided
	data.Attempts = int(d.delivered)
	if err == nil {
		ws.Status = inst.Status
		data.HTTPStatus, data.RequestID = resp.StatusCode, resp.RequestID
	}
	switch {
	case err == nil && inst.Status == "Stopped":
		data.InstanceStatus, data.StoppedAt = "Stopped", now.UTC().Format(time.RFC3339Nano)
		return w.conclude(ctx, d, c, data)
	case now.Sub(ws.Since) >= w.opts.StopWaitTimeout:
		data.Outcome, data.Code, data.Reconciled, data.InstanceStatus = messages.Failed, messages.CodeStopTimedOut, false, ws.Status
		data.Message = fmt.Sprintf("the stop went through at %s, but the instance was not Stopped within BCCSTOP_STOP_WAIT_TIMEOUT (%s); last status seen: %s",
			ws.Since.UTC().Format(time.RFC3339), w.opts.StopWaitTimeout, ws.Status)
		if err != nil {
			data.Message += "; last describe: " + describeErr(err)
		}
		return w.conclude(ctx, d, c, data)
	}
	if err := w.bound().ledger.wait(ctx, c, ws); err != nil {
		return w.retryLater(d, fmt.Errorf("record the wait for Stopped: %w", err))
	}
	why := fmt.Errorf("waiting for %s to be Stopped: it is %s", d.cmd.InstanceID, ws.Status)
	if err != nil {
		why = fmt.Errorf("waiting for %s to be Stopped: %w", d.cmd.InstanceID, err)
	}
	return result{action: actRetry, delay: w.waitInterval(ws.Describes, ws.Since, now), waiting: true, err: why}
}

// lookGrid is the grid the looks of waiting commands are aligned to: a
// look due at any moment of a grid step is made at its end, so every
// command of this worker (and of every worker, their clocks agreeing) due
// in the same step looks at once, and the looker describes them together,
// a hundred instances a call. A step is at most a quarter of the interval,
// so a look is never later than a quarter of its interval.
const lookGrid = time.Second

// waitInterval is the delay before the next look: StopWaitIntervals's entry
// for the looks so far (the last one repeating), rounded up to the end of
// its step of the grid so that looks due together are made together, and no
// later than just past the wait's deadline.
func (w *Worker) waitInterval(looks int, since, now time.Time) time.Duration {
	iv := w.opts.StopWaitIntervals[min(looks, len(w.opts.StopWaitIntervals)-1)]
	step := max(min(iv/4, lookGrid), time.Millisecond)
	due := now.Add(iv)
	if aligned := due.Truncate(step); aligned.Before(due) {
		due = aligned.Add(step)
	}
	untilDeadline := since.Add(w.opts.StopWaitTimeout).Sub(now) + 10*time.Millisecond
	return max(min(due.Sub(now), untilDeadline), 10*time.Millisecond)
}
