package bulkstop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// Scheduled stops (`bccstop stop --at`). Each command is sent now as a
// schedule request: a message on messages.ScheduleSubjectPrefix + its
// command id, with the time in the header Bccstop-Schedule ("@at …"), in
// the commands stream. A worker checks it and stores the schedule in the
// schedules stream, which only workers write; at its time JetStream fires
// it and the commands stream delivers it on bcc.instance.stop. (The
// commands stream itself allows no JetStream schedules: a stream that does
// must allow roll-ups, and then anyone who may publish a command could
// erase every queued command and schedule.) Each scheduled command carries
// a notAfter, so a schedule fired late (after an outage) does not stop
// machines long after the window.

// ErrSchedulesUnsupported means the NATS server or the streams cannot
// schedule messages.
var ErrSchedulesUnsupported = errors.New("scheduled stops need NATS server 2.12 or later and the schedules stream the workers create (has a worker of this release run?)")

// Streams names the streams scheduling involves.
type Streams struct {
	Commands, Schedules, Legacy, Results string
}

// Schedule states, as ListSchedules reports them.
const (
	// StateScheduled: stored in the schedules stream; it fires at its time.
	StateScheduled = "scheduled"
	// StatePending: a request no worker has checked yet.
	StatePending = "pending"
	// StateLegacy: a schedule an earlier release stored in its commands
	// stream; a worker of this release carries it over (or refuses it).
	StateLegacy = "legacy"
)

// ScheduledStop is one schedule.
type ScheduledStop struct {
	// ID is the schedule id, the one CancelSchedules takes.
	ID                  string
	State               string
	Pattern, Target     string
	CommandID           string
	InstanceID, BatchID string
	At                  time.Time
	NotAfter            string
	Reason, RequestedBy string
	WaitUntilStopped    bool
	Seq                 uint64
}

// ScheduleReport is how Schedule went.
type ScheduleReport struct {
	// Stored counts the schedules the workers stored (or had already);
	// Pending those no worker checked within the wait; Refused those the
	// workers refused, with their rejected result.
	Stored, Pending int
	Refused         []messages.ResultEvent
	// PendingIDs are the command ids of the Pending requests.
	PendingIDs []string
	// Duplicates counts requests JetStream already had (a re-run).
	Duplicates int
}

// Schedule sends one schedule request per command, to be delivered at at,
// then waits up to wait for the workers to store or refuse them.
func Schedule(ctx context.Context, nc *nats.Conn, s Streams, batch string, at time.Time, cmds []messages.StopCommand, wait time.Duration) (*ScheduleReport, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	if err := checkSchedules(ctx, nc, js, s); err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &ScheduleReport{}
	futures := make([]jetstream.PubAckFuture, 0, len(cmds))
	for _, c := range cmds {
		payload, _ := json.Marshal(c)
		msg := &nats.Msg{Subject: messages.ScheduleSubjectPrefix + c.CommandID, Data: payload, Header: nats.Header{
			messages.HeaderSchedule:       {messages.ScheduleOneShotPrefix + at.UTC().Format(time.RFC3339)},
			messages.HeaderScheduleTarget: {messages.CommandSubject},
			messages.HeaderBatchID:        {batch},
		}}
		f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(CommandMsgID(c)), jetstream.WithExpectStream(s.Commands))
		if err != nil {
			return rep, fmt.Errorf("schedule %s: %w", c.CommandID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				rep.Duplicates++
			}
		case err := <-f.Err():
			return rep, fmt.Errorf("schedule %s: %w", cmds[i].CommandID, err)
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}
	return rep, awaitScheduled(ctx, js, s, cmds, start, wait, rep)
}

// WriteJSON writes one line per command of cmds, scheduled for at in
// batch, as bccstop stop --output json does: a refused one's rejected
// result, or a line of the result's shape with outcome OutcomeNoResult
// and code CodeScheduled (see Unanswered.Event).
func (r *ScheduleReport) WriteJSON(w io.Writer, batch string, at time.Time, cmds []messages.StopCommand) error {
	refused := map[string]messages.ResultEvent{}
	for _, ev := range r.Refused {
		refused[ev.Data.CommandID] = ev
	}
	pending := map[string]bool{}
	for _, id := range r.PendingIDs {
		pending[id] = true
	}
	now := time.Now()
	for _, c := range cmds {
		ev, ok := refused[c.CommandID]
		if !ok {
			u := Unanswered{Command: c, Outcome: OutcomeNoResult, Code: CodeScheduled, Message: "scheduled for " + at.UTC().Format(time.RFC3339)}
			if pending[c.CommandID] {
				u.Message = "requested for " + at.UTC().Format(time.RFC3339) + "; no worker has checked the request yet"
			}
			ev = u.Event(batch, now)
		}
		line, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}

// awaitScheduled waits for each request to be stored as a schedule or
// refused with a rejected result.
func awaitScheduled(ctx context.Context, js jetstream.JetStream, s Streams, cmds []messages.StopCommand, start time.Time, wait time.Duration, rep *ScheduleReport) error {
	st, err := js.Stream(ctx, s.Schedules)
	if err != nil {
		return err
	}
	left := map[string]bool{}
	for _, c := range cmds {
		left[c.CommandID] = true
	}
	refusals, stopRefusals := followRefusals(ctx, js, s.Results, start)
	defer stopRefusals()
	deadline := time.Now().Add(wait)
	for len(left) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		for id := range left {
			if _, err := st.GetLastMsgForSubject(ctx, layout.ScheduleSubjectPrefix+id); err == nil {
				delete(left, id)
				rep.Stored++
			}
		}
		for drained := false; !drained; {
			select {
			case ev := <-refusals:
				if left[ev.Data.CommandID] {
					delete(left, ev.Data.CommandID)
					rep.Refused = append(rep.Refused, ev)
				}
			default:
				drained = true
			}
		}
		if len(left) > 0 {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	rep.Pending = len(left)
	for id := range left {
		rep.PendingIDs = append(rep.PendingIDs, id)
	}
	return nil
}

// followRefusals follows the rejected results stored from since on.
func followRefusals(ctx context.Context, js jetstream.JetStream, results string, since time.Time) (<-chan messages.ResultEvent, func()) {
	out := make(chan messages.ResultEvent, 256)
	ctx, cancel := context.WithCancel(ctx)
	since = since.Add(-time.Second)
	cons, err := js.OrderedConsumer(ctx, results, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		FilterSubjects: []string{messages.ResultSubject(messages.Rejected)}})
	if err != nil {
		return out, cancel
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ev, err := messages.DecodeResultEvent(m.Data()); err == nil {
			select {
			case out <- ev:
			default: // a flood of other rejections: ours are looked up by their schedule
			}
		}
	})
	if err != nil {
		return out, cancel
	}
	return out, func() { cc.Stop(); cancel() }
}

// ListSchedules returns the schedules: stored ones, requests no worker has
// checked yet, and any an earlier release left; by time, then id.
func ListSchedules(ctx context.Context, nc *nats.Conn, s Streams) ([]ScheduledStop, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := checkSchedules(ctx, nc, js, s); err != nil {
		return nil, err
	}
	var out []ScheduledStop
	sources := []struct {
		stream, filter, prefix, state string
	}{
		{s.Schedules, layout.ScheduleSubjects, layout.ScheduleSubjectPrefix, StateScheduled},
		{s.Commands, messages.ScheduleSubjects, messages.ScheduleSubjectPrefix, StatePending},
		{s.Legacy, messages.ScheduleSubjects, messages.ScheduleSubjectPrefix, StateLegacy},
	}
	for _, src := range sources {
		if src.stream == "" {
			continue
		}
		st, err := js.Stream(ctx, src.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) && src.state == StateLegacy {
			continue
		}
		if err != nil {
			return nil, err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(src.filter))
		if err != nil {
			return nil, err
		}
		for subject := range info.State.Subjects {
			m, err := st.GetLastMsgForSubject(ctx, subject)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // fired, stored or cancelled meanwhile
			}
			if err != nil {
				return nil, err
			}
			out = append(out, parseSchedule(m, src.prefix, src.state))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func parseSchedule(m *jetstream.RawStreamMsg, prefix, state string) ScheduledStop {
	s := ScheduledStop{ID: strings.TrimPrefix(m.Subject, prefix), State: state, Seq: m.Sequence, BatchID: m.Header.Get(messages.HeaderBatchID)}
	switch state {
	case StatePending:
		s.Pattern, s.Target = m.Header.Get(messages.HeaderSchedule), m.Header.Get(messages.HeaderScheduleTarget)
	case StateScheduled:
		// Stored schedules fire onto the commands stream's bcc.instance.stop.
		s.Pattern, s.Target = m.Header.Get(jetstream.ScheduleHeader), messages.CommandSubject
	default:
		s.Pattern, s.Target = m.Header.Get(jetstream.ScheduleHeader), m.Header.Get(jetstream.ScheduleTargetHeader)
	}
	if s.Target == "" {
		s.Target = messages.CommandSubject
	}
	if at, ok := strings.CutPrefix(s.Pattern, messages.ScheduleOneShotPrefix); ok {
		s.At, _ = time.Parse(time.RFC3339, at)
	}
	var c messages.StopCommand
	if json.Unmarshal(m.Data, &c) == nil {
		s.CommandID, s.InstanceID, s.NotAfter, s.Reason, s.RequestedBy, s.WaitUntilStopped = c.CommandID, c.InstanceID, c.NotAfter, c.Reason, c.RequestedBy, c.WaitUntilStopped
		if s.BatchID == "" && strings.HasSuffix(c.CommandID, "."+c.InstanceID) {
			s.BatchID = strings.TrimSuffix(c.CommandID, "."+c.InstanceID)
		}
	}
	return s
}

// CancelReport is what CancelSchedules did.
type CancelReport struct {
	// Cancelled lists the schedule ids removed.
	Cancelled []string
	// NotFound lists the ids named that hold no schedule; Pending those
	// that are requests no worker has checked yet (they cannot be removed
	// from the commands stream: cancel them once stored).
	NotFound, Pending []string
}

// CancelSchedules removes stored schedules: exactly the ids given, and
// every schedule of batch (its own batch id, never a prefix or wildcard).
// Nothing matched is not an error: the report says so.
func CancelSchedules(ctx context.Context, nc *nats.Conn, s Streams, ids []string, batch string) (*CancelReport, error) {
	for _, id := range ids {
		if !messages.ValidScheduleID(id) {
			return nil, fmt.Errorf("%q is not a schedule id (up to %d of A-Z a-z 0-9 _ = - and '.' between words, as bccstop schedules list shows them)",
				truncate(id, 70), messages.MaxScheduleID)
		}
	}
	if batch != "" && !ValidBatchID(batch) {
		return nil, fmt.Errorf("--batch-id %q is not a batch id", truncate(batch, 70))
	}
	list, err := ListSchedules(ctx, nc, s)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, s.Schedules)
	if err != nil {
		return nil, err
	}
	byID := map[string][]ScheduledStop{}
	for _, sc := range list {
		byID[sc.ID] = append(byID[sc.ID], sc)
	}
	rep := &CancelReport{}
	remove := func(sc ScheduledStop) error {
		if err := st.DeleteMsg(ctx, sc.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("cancel %s: %w", sc.ID, err)
		}
		rep.Cancelled = append(rep.Cancelled, sc.ID)
		return nil
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		found := false
		for _, sc := range byID[id] {
			switch sc.State {
			case StateScheduled:
				if err := remove(sc); err != nil {
					return rep, err
				}
				found = true
			case StatePending:
				rep.Pending = append(rep.Pending, id)
				found = true
			}
		}
		if !found {
			rep.NotFound = append(rep.NotFound, id)
		}
	}
	if batch != "" {
		matched := false
		for _, sc := range list {
			if sc.BatchID != batch || seen[sc.ID] {
				continue
			}
			matched = true
			switch sc.State {
			case StateScheduled:
				if err := remove(sc); err != nil {
					return rep, err
				}
			case StatePending:
				rep.Pending = append(rep.Pending, sc.ID)
			}
		}
		if !matched {
			rep.NotFound = append(rep.NotFound, "--batch-id "+batch)
		}
	}
	return rep, nil
}

// checkSchedules refuses a server older than 2.12, or a deployment whose
// workers have not created the schedules stream, with a clear error.
func checkSchedules(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, s Streams) error {
	v := strings.TrimPrefix(nc.ConnectedServerVersion(), "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		major, _ := strconv.Atoi(parts[0])
		minor, _ := strconv.Atoi(parts[1])
		if major < 2 || major == 2 && minor < 12 {
			return fmt.Errorf("%w: the server is %s", ErrSchedulesUnsupported, v)
		}
	}
	st, err := js.Stream(ctx, s.Schedules)
	if err != nil {
		return fmt.Errorf("%w: stream %s: %v", ErrSchedulesUnsupported, s.Schedules, err)
	}
	if !st.CachedInfo().Config.AllowMsgSchedules {
		return fmt.Errorf("%w: stream %s does not allow message schedules", ErrSchedulesUnsupported, s.Schedules)
	}
	return nil
}
