package worker

import (
	"context"
)

// settle is the one place a delivery is acknowledged, retried or terminated.
func (w *Worker) settle(ctx context.Context, d *delivery, r result) {
	var err error
	switch r.action {
	case actAck:
		err = d.msg.Ack()
	case actRetry:
		err = d.msg.NakWithDelay(r.delay)
	case actTerm:
		err = d.msg.Respond([]byte("+TERM " + r.reason))
	case actAbandon:
		err = d.msg.Nak()
	}
	if err != nil {
		w.log.WarnContext(ctx, "could not settle the command; JetStream will redeliver it after the ack wait",
			"command_id", d.identity, "action", r.action.String(), "error", err)
	}
}
