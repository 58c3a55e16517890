package worker

import (
	"context"
	"time"
)

// ackTimeout bounds the wait for JetStream to confirm an acknowledgement.
const ackTimeout = 5 * time.Second

// settle is the one place a delivery is acknowledged, retried or terminated.
//
// A delivery whose outcome is in a done record still to be settled (see
// ledger.settle) is acknowledged synchronously: only once JetStream has
// confirmed that the message will not come back may the record get its TTL.
// Should the confirmation not come, the record stays, and a delivery of the
// message however late is answered from it.
func (w *Worker) settle(ctx context.Context, d *delivery, r result) {
	var err error
	settles := r.settles != nil && (r.action == actAck || r.action == actTerm)
	switch {
	case settles:
		body := "+ACK"
		if r.action == actTerm {
			body = "+TERM " + r.reason
		}
		// Not cut short by a shutdown: the ack is what ends the command.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		_, err = w.js.Conn().RequestWithContext(actx, d.msg.Reply, []byte(body))
		cancel()
	case r.action == actAck:
		err = d.msg.Ack()
	case r.action == actRetry:
		err = d.msg.NakWithDelay(r.delay)
	case r.action == actTerm:
		err = d.msg.Respond([]byte("+TERM " + r.reason))
	case r.action == actAbandon:
		err = d.msg.Nak()
	}
	if err != nil {
		w.log.WarnContext(ctx, "could not settle the command; JetStream will redeliver it after the ack wait",
			"command_id", d.identity, "action", r.action.String(), "error", err)
		return
	}
	if settles {
		if err := w.bound().ledger.settle(r.settles); err != nil {
			w.log.DebugContext(ctx, "could not give the ledger record its TTL; it stays until a later command with the identity replaces it",
				"command_id", d.identity, "error", err)
		}
	}
}
