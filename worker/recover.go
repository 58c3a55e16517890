package worker

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/bccstop/bccstop/messages"
)

// recovered turns a panic in next into a result instead of a crash. A panic
// is a bug, so it is logged with its stack; the command is retried with
// backoff until its delivery budget is spent, then answered failed
// (InternalError) and terminated, so a poison command cannot loop forever.
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
			data := w.baseData(d)
			data.Outcome, data.Code, data.Message = messages.Failed, messages.CodeInternalError, "the worker failed while handling this command; see its logs"
			payload, subject, eventID := w.encodeResult(d, data)
			if _, perr := w.publish(ctx, d, d.identity, subject, payload, eventID); perr != nil {
				r = result{action: actRetry, delay: w.backoff(d.delivered, 0), err: perr}
				return
			}
			r = result{action: actTerm, reason: "internal error", data: &data, err: err}
		}()
		return next(ctx, d)
	}
}
