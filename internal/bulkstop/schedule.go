package bulkstop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// Scheduled stops use JetStream message scheduling (NATS server 2.12 or
// later): each command is stored now as a schedule message on its own
// subject, ScheduleSubjectPrefix + its command id, in the commands stream,
// and the server delivers it on bcc.instance.stop at the scheduled time.
// The workers' consumer sees only the delivered command. Each scheduled
// command carries a notAfter, so a schedule fired late (after an outage)
// does not stop machines long after the window.

// ScheduleSubjectPrefix and ScheduleSubjects are messages'.
const (
	ScheduleSubjectPrefix = messages.ScheduleSubjectPrefix
	ScheduleSubjects      = messages.ScheduleSubjects
)

// ErrSchedulesUnsupported means the NATS server or the commands stream
// cannot schedule messages.
var ErrSchedulesUnsupported = errors.New("scheduled stops need NATS server 2.12 or later and a commands stream that allows message schedules (the workers create it so)")

// ScheduledStop is one stored schedule.
type ScheduledStop struct {
	CommandID, InstanceID, BatchID string
	At                             time.Time
	NotAfter                       string
	Reason, RequestedBy            string
	WaitUntilStopped               bool
	Seq                            uint64
}

// Schedule stores one schedule per command, to be delivered at at. It
// returns how many JetStream already had (a re-run of the same job).
func Schedule(ctx context.Context, nc *nats.Conn, stream string, at time.Time, cmds []messages.StopCommand) (duplicates int, err error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, err
	}
	if err := checkSchedules(ctx, nc, js, stream); err != nil {
		return 0, err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(cmds))
	for _, c := range cmds {
		payload, _ := json.Marshal(c)
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: ScheduleSubjectPrefix + c.CommandID, Data: payload},
			jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(messages.CommandSubject),
			jetstream.WithMsgID(CommandMsgID(c)), jetstream.WithExpectStream(stream))
		if err != nil {
			return duplicates, fmt.Errorf("schedule %s: %w", c.CommandID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				duplicates++
			}
		case err := <-f.Err():
			return duplicates, fmt.Errorf("schedule %s: %w", cmds[i].CommandID, err)
		case <-ctx.Done():
			return duplicates, ctx.Err()
		}
	}
	return duplicates, nil
}

// ListSchedules returns the schedules still stored, by time then command id.
func ListSchedules(ctx context.Context, nc *nats.Conn, stream string) ([]ScheduledStop, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := checkSchedules(ctx, nc, js, stream); err != nil {
		return nil, err
	}
	// The commands stream is a work queue, which allows no consumer that
	// does not acknowledge: read each schedule subject's message directly.
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(ScheduleSubjects))
	if err != nil {
		return nil, err
	}
	var out []ScheduledStop
	for subject := range info.State.Subjects {
		m, err := st.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // fired or cancelled meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, parseSchedule(m))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].CommandID < out[j].CommandID
	})
	return out, nil
}

func parseSchedule(m *jetstream.RawStreamMsg) ScheduledStop {
	s := ScheduledStop{CommandID: strings.TrimPrefix(m.Subject, ScheduleSubjectPrefix), Seq: m.Sequence}
	if at, ok := strings.CutPrefix(m.Header.Get(jetstream.ScheduleHeader), "@at "); ok {
		s.At, _ = time.Parse(time.RFC3339, at)
	}
	var c messages.StopCommand
	if json.Unmarshal(m.Data, &c) == nil {
		s.InstanceID, s.NotAfter, s.Reason, s.RequestedBy, s.WaitUntilStopped = c.InstanceID, c.NotAfter, c.Reason, c.RequestedBy, c.WaitUntilStopped
		s.BatchID = strings.TrimSuffix(s.CommandID, "."+c.InstanceID)
	}
	return s
}

// CancelSchedules removes the schedules of the given command ids, or of
// every command of batch, and returns how many there were.
func CancelSchedules(ctx context.Context, nc *nats.Conn, stream string, ids []string, batch string) (int, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	if err := checkSchedules(ctx, nc, js, stream); err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	subjects := make([]string, 0, len(ids)+1)
	for _, id := range ids {
		subjects = append(subjects, ScheduleSubjectPrefix+id)
	}
	if batch != "" {
		subjects = append(subjects, ScheduleSubjectPrefix+batch+".>")
	}
	total := 0
	for _, subj := range subjects {
		before, err := countSubject(ctx, s, subj)
		if err != nil {
			return total, err
		}
		if before == 0 {
			continue
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return total, fmt.Errorf("cancel %s: %w", strings.TrimPrefix(subj, ScheduleSubjectPrefix), err)
		}
		total += before
	}
	return total, nil
}

func countSubject(ctx context.Context, s jetstream.Stream, subject string) (int, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// checkSchedules refuses a server older than 2.12, or a stream that does
// not allow schedules, with a clear error.
func checkSchedules(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, stream string) error {
	v := strings.TrimPrefix(nc.ConnectedServerVersion(), "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		major, _ := strconv.Atoi(parts[0])
		minor, _ := strconv.Atoi(parts[1])
		if major < 2 || major == 2 && minor < 12 {
			return fmt.Errorf("%w: the server is %s", ErrSchedulesUnsupported, v)
		}
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w (has a worker run yet?)", stream, err)
	}
	if !s.CachedInfo().Config.AllowMsgSchedules {
		return fmt.Errorf("%w: stream %s does not allow them (restart a worker with BCCSTOP_PROVISION=true to update it)", ErrSchedulesUnsupported, stream)
	}
	return nil
}
