package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// Schedules (bccstop stop --at). A publisher asks for one with a schedule
// request: a message on bcc.instance.stop.schedule.<id> carrying the
// command and the header Bccstop-Schedule: "@at <time>". Requests are
// stored in the commands stream, which refuses JetStream's own schedule
// headers and every roll-up. A worker takes each request (the scheduler
// consumer), checks it, and stores the schedule in the schedules stream,
// which only workers write: JetStream message scheduling needs roll-ups on
// the stream that holds the schedules, and only there are they allowed. At
// its time JetStream fires the schedule onto bccstop.fired, and the
// commands stream takes the fired command from there onto
// bcc.instance.stop, where workers handle it like any command.
//
// Only a one-shot "@at" aimed at bcc.instance.stop with a valid command and
// a valid id is stored; anything else is refused (rejected InvalidSchedule,
// with the reason) and removed. A fired command is named by its commandId,
// its CloudEvent source and id, or else by its schedule id, whichever the
// request gave: one identity however often it might fire.

// maxScheduleAhead bounds how far ahead a schedule may be.
const maxScheduleAhead = 366 * 24 * time.Hour

// acceptSchedule handles one schedule request.
func (w *Worker) acceptSchedule(ctx context.Context, d *delivery) result {
	id := strings.TrimPrefix(d.msg.Subject, messages.ScheduleSubjectPrefix)
	cmd, env, decodeErr := messages.DecodeCommandMessage(d.msg.Data, d.header)
	d.cmd = cmd
	identity, idErr := messages.Identity(cmd, env, "")
	switch {
	case identity != "":
		d.identity = identity
	case messages.ValidScheduleID(id):
		d.identity = id
	}
	at, why := w.checkSchedule(id, d, errors.Join(decodeErr, idErr))
	if why == "" {
		d.content, d.fingerprint = cmd.Content(), cmd.Fingerprint()
		return w.storeSchedule(ctx, d, id, at)
	}
	if decodeErr != nil || idErr != nil {
		d.content = "payload sha256 " + messages.Fingerprint(string(d.msg.Data))
	} else {
		d.content = cmd.Content()
	}
	d.fingerprint = messages.Fingerprint(d.content)
	return w.rejectSchedule(ctx, d, messages.CodeInvalidSchedule, "schedule "+printable(id, 140)+" refused: "+why+"; its command is never acted on")
}

// checkSchedule says what is wrong with a schedule request ("" when
// nothing) and when it is to fire.
func (w *Worker) checkSchedule(id string, d *delivery, decodeErr error) (time.Time, string) {
	pattern, target := d.header(messages.HeaderSchedule), d.header(messages.HeaderScheduleTarget)
	switch {
	case !messages.ValidScheduleID(id):
		return time.Time{}, fmt.Sprintf("its id %q is not a schedule id (up to %d of A-Z a-z 0-9 _ = - and '.' between words)", printable(id, 140), messages.MaxScheduleID)
	case decodeErr != nil:
		return time.Time{}, "its command is not valid: " + describeErr(decodeErr)
	case target != "" && target != messages.CommandSubject:
		return time.Time{}, fmt.Sprintf("it is aimed at %q; a schedule may only deliver on %s", printable(target, 100), messages.CommandSubject)
	case pattern == "":
		return time.Time{}, "it has no " + messages.HeaderSchedule + " header (\"@at <RFC 3339 time>\")"
	case !strings.HasPrefix(pattern, messages.ScheduleOneShotPrefix):
		return time.Time{}, fmt.Sprintf("its pattern %q is not a one-shot \"@at <time>\": repeating schedules are never accepted", printable(pattern, 100))
	}
	at, err := time.Parse(time.RFC3339, strings.TrimPrefix(pattern, messages.ScheduleOneShotPrefix))
	switch {
	case err != nil:
		return time.Time{}, fmt.Sprintf("its time %q is not an RFC 3339 time", printable(strings.TrimPrefix(pattern, messages.ScheduleOneShotPrefix), 60))
	case at.After(w.opts.Now().Add(maxScheduleAhead)):
		return time.Time{}, fmt.Sprintf("it is for %s, more than a year ahead", at.UTC().Format(time.RFC3339))
	}
	return at, ""
}

// carriedHeaders are the request headers a fired command keeps: its trace
// context, its CloudEvents attributes (binary mode) and content type, and
// the batch it belongs to.
func carriedHeaders(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		switch lk := strings.ToLower(k); {
		case lk == "traceparent", lk == "tracestate", lk == "content-type", strings.HasPrefix(lk, "ce-"),
			k == messages.HeaderBatchID:
			out[k] = v
		}
	}
	return out
}

// storeSchedule stores an accepted request in the schedules stream, once:
// a request for a schedule id already holding the same schedule is a
// repeat (acknowledged), one holding another is refused.
func (w *Worker) storeSchedule(ctx context.Context, d *delivery, id string, at time.Time) result {
	b := w.bound()
	info, err := b.schedules.Info(ctx)
	if err != nil {
		return w.retryLater(d, fmt.Errorf("schedules stream: %w", err))
	}
	if info.State.Msgs >= maxSchedules {
		return w.rejectSchedule(ctx, d, messages.CodeInvalidSchedule,
			fmt.Sprintf("schedule %s refused: %d schedules are stored already, the most bccstop keeps; its command is never acted on", id, info.State.Msgs))
	}
	subject := layout.ScheduleSubjectPrefix + id
	msg := &nats.Msg{Subject: subject, Data: d.msg.Data, Header: carriedHeaders(d.msg.Header)}
	_, err = publishAndWait(w.js, msg, jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(layout.FiredSubject),
		jetstream.WithScheduleTTL(scheduleFiredTTL), jetstream.WithExpectLastSequencePerSubject(0),
		jetstream.WithMsgID("schedule."+id+"."+d.fingerprint), jetstream.WithExpectStream(w.opts.SchedulesStream))
	switch {
	case err == nil:
	case isWrongLastSequence(err):
		return w.sameSchedule(ctx, d, subject, at)
	default:
		return w.retryLater(d, fmt.Errorf("store schedule %s: %w", id, err))
	}
	w.log.InfoContext(ctx, "schedule stored", "schedule_id", id, "command_id", d.identity, "instance_id", d.cmd.InstanceID,
		"at", at.UTC().Format(time.RFC3339), "reason", d.cmd.Reason, "requested_by", d.cmd.RequestedBy)
	return result{action: actAck}
}

// sameSchedule settles a request whose schedule id holds a schedule
// already: the same command at the same time is a repeat; anything else
// is refused, and neither schedule is changed.
func (w *Worker) sameSchedule(ctx context.Context, d *delivery, subject string, at time.Time) result {
	existing, err := w.bound().schedules.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return w.retryLater(d, errors.New("the schedule that held this id is gone (fired or cancelled): storing again"))
	}
	if err != nil {
		return w.retryLater(d, fmt.Errorf("read schedule %s: %w", subject, err))
	}
	prevAt := strings.TrimPrefix(existing.Header.Get(jetstream.ScheduleHeader), messages.ScheduleOneShotPrefix)
	if t, err := time.Parse(time.RFC3339, prevAt); err == nil && t.Equal(at.Truncate(time.Second)) && bytes.Equal(existing.Data, d.msg.Data) {
		return result{action: actAck}
	}
	id := strings.TrimPrefix(subject, layout.ScheduleSubjectPrefix)
	return w.rejectSchedule(ctx, d, messages.CodeScheduleConflict,
		fmt.Sprintf("schedule id %s holds another schedule (for %s); it is not changed: cancel it first (bccstop schedules cancel %s) or use another id",
			id, prevAt, id))
}

// rejectSchedule answers a refused request with a rejected result, recorded
// against its identity like any rejection, and removes the request. A
// conflict is answered without touching the ledger entry of the identity,
// which belongs to the schedule already stored.
func (w *Worker) rejectSchedule(ctx context.Context, d *delivery, code, message string) result {
	w.log.WarnContext(ctx, "schedule request refused", "schedule_id", printable(strings.TrimPrefix(d.msg.Subject, messages.ScheduleSubjectPrefix), 140),
		"code", code, "reason", message)
	data := w.baseData(d)
	data.InstanceID, data.Region = printable(d.cmd.InstanceID, 80), printable(d.cmd.Region, 40)
	data.Reason, data.RequestedBy = printable(d.cmd.Reason, messages.MaxReason), printable(d.cmd.RequestedBy, messages.MaxRequestedBy)
	data.NotAfter = printable(d.cmd.NotAfter, 64)
	data.Outcome, data.Code, data.Message = messages.Rejected, code, message
	if code == messages.CodeScheduleConflict {
		payload, subject, eventID := w.encodeResult(d, data)
		if _, err := w.publish(ctx, d, conflictMsgID(d.identity, d.fingerprint), subject, payload, eventID); err != nil {
			return w.retryLater(d, err)
		}
		return result{action: actTerm, reason: "rejected: " + code, data: &data}
	}
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
	return w.conclude(ctx, d, c, data)
}

// firedScheduleID is the schedule id of a command a schedule of this
// layout fired ("" when it was not fired by one).
func firedScheduleID(scheduler string) string {
	id, ok := strings.CutPrefix(scheduler, layout.ScheduleSubjectPrefix)
	if !ok {
		return ""
	}
	return id
}

// removeLegacySchedule deletes a schedule of layout 1 from the retired
// stream (one that must not fire again).
func (w *Worker) removeLegacySchedule(ctx context.Context, subject string) {
	st, err := w.js.Stream(ctx, w.opts.LegacyCommandsStream)
	if err != nil {
		return
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return
	}
	if err := st.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		w.log.WarnContext(ctx, "could not remove a repeating schedule of an earlier release", "subject", printable(subject, 140), "error", err)
		return
	}
	w.log.WarnContext(ctx, "removed a repeating schedule of an earlier release: it is never acted on again", "subject", printable(subject, 140))
}
