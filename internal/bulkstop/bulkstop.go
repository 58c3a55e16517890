package bulkstop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// Options describe one bulk stop.
type Options struct {
	IDs              []string // valid, without duplicates
	BatchID          string
	ForceStop        bool
	StopWithNoCharge bool
	Region           string

	// Wait follows the results until every command has one or Timeout passes.
	Wait    bool
	Timeout time.Duration
	// CommandsStream and ResultsStream are the worker's stream names.
	CommandsStream, ResultsStream string

	// Progress receives progress updates; nil shows none.
	Progress Progress
}

// Progress is told how the job advances.
type Progress interface {
	Published(done, total int)
	Result(done, total int, counts map[messages.Outcome]int)
	Finish()
}

// Result is one command's result event, as received.
type Result struct {
	Event messages.ResultEvent
	Raw   []byte
}

// Report is how the job ended.
type Report struct {
	BatchID    string
	Total      int
	Duplicates int // commands JetStream already had (an earlier run of the batch)
	Counts     map[messages.Outcome]int
	// Results by instance id; Missing lists the instances with none.
	Results  map[string]Result
	Order    []string // results in arrival order (instance ids)
	Missing  []string
	TimedOut bool
	Elapsed  time.Duration
}

// ErrPublish means not every command could be published.
var ErrPublish = errors.New("publish failed")

// Run publishes the commands and, with Wait, collects their results. Results
// are followed on the live result subjects (a repeat of an earlier outcome is
// published again by the worker, though the results stream keeps only the
// first), and, for commands JetStream reports as already published, looked
// up in the results stream as well.
func Run(ctx context.Context, nc *nats.Conn, o Options) (*Report, error) {
	start := time.Now()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	r := &Report{BatchID: o.BatchID, Total: len(o.IDs), Counts: map[messages.Outcome]int{}, Results: map[string]Result{}}
	byCommand := make(map[string]string, len(o.IDs)) // command id → instance id
	for _, id := range o.IDs {
		byCommand[CommandID(o.BatchID, id)] = id
	}
	progress := o.Progress
	if progress == nil {
		progress = noProgress{}
	}
	defer progress.Finish()

	// Subscribe before publishing, so no result can slip by.
	incoming := make(chan []byte, 1024)
	var sub *nats.Subscription
	if o.Wait {
		sub, err = nc.Subscribe(messages.ResultSubjects, func(m *nats.Msg) {
			select {
			case incoming <- m.Data:
			case <-ctx.Done():
			}
		})
		if err != nil {
			return nil, fmt.Errorf("subscribe to results: %w", err)
		}
		defer sub.Unsubscribe()
		_ = sub.SetPendingLimits(-1, -1)
		if err := nc.FlushTimeout(10 * time.Second); err != nil {
			return nil, fmt.Errorf("subscribe to results: %w", err)
		}
	}

	duplicates, err := publish(ctx, js, o, progress)
	r.Duplicates = duplicates
	if err != nil {
		return r, err
	}
	if !o.Wait {
		r.Elapsed = time.Since(start)
		return r, nil
	}
	var scan sync.WaitGroup
	if duplicates > 0 {
		scan.Add(1)
		go func() {
			defer scan.Done()
			lookUpStored(ctx, js, o, incoming)
		}()
	}

	timeout := time.NewTimer(o.Timeout)
	defer timeout.Stop()
	for len(r.Results) < r.Total {
		select {
		case raw := <-incoming:
			ev, err := messages.DecodeResultEvent(raw)
			if err != nil {
				continue
			}
			id, ours := byCommand[ev.Data.CommandID]
			if _, dup := r.Results[id]; !ours || dup {
				continue
			}
			r.Results[id] = Result{Event: ev, Raw: raw}
			r.Order = append(r.Order, id)
			r.Counts[ev.Data.Outcome]++
			progress.Result(len(r.Results), r.Total, r.Counts)
		case <-timeout.C:
			r.TimedOut = true
		case <-ctx.Done():
			r.TimedOut = true
		}
		if r.TimedOut {
			break
		}
	}
	for _, id := range o.IDs {
		if _, ok := r.Results[id]; !ok {
			r.Missing = append(r.Missing, id)
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// publish sends every command asynchronously (a window of acknowledgements
// in flight, not one round trip each) with Nats-Msg-Id = command id, retries
// the ones that failed, and counts those JetStream already had.
func publish(ctx context.Context, js jetstream.JetStream, o Options, progress Progress) (duplicates int, err error) {
	pending := o.IDs
	for attempt := 1; len(pending) > 0; attempt++ {
		type inflight struct {
			id  string
			ack jetstream.PubAckFuture
		}
		futures := make([]inflight, 0, len(pending))
		var failed []string
		var lastErr error
		for _, id := range pending {
			payload, _ := json.Marshal(messages.StopCommand{
				InstanceID: id, ForceStop: o.ForceStop, StopWithNoCharge: o.StopWithNoCharge,
				CommandID: CommandID(o.BatchID, id), Region: o.Region,
			})
			msg := &nats.Msg{Subject: messages.CommandSubject, Data: payload}
			ack, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(CommandID(o.BatchID, id)), jetstream.WithExpectStream(o.CommandsStream))
			if err != nil {
				failed, lastErr = append(failed, id), err
				continue
			}
			futures = append(futures, inflight{id, ack})
		}
		done := len(o.IDs) - len(pending)
		for _, f := range futures {
			select {
			case pa := <-f.ack.Ok():
				if pa.Duplicate {
					duplicates++
				}
				done++
				if done%256 == 0 || done == len(o.IDs) {
					progress.Published(done, len(o.IDs))
				}
			case err := <-f.ack.Err():
				failed, lastErr = append(failed, f.id), err
			case <-ctx.Done():
				return duplicates, ctx.Err()
			}
		}
		if len(failed) > 0 && attempt == 3 {
			return duplicates, fmt.Errorf("%w: %d of %d commands were not stored by JetStream (is a worker's stream %s there?): %v",
				ErrPublish, len(failed), len(o.IDs), o.CommandsStream, lastErr)
		}
		pending = failed
		if len(pending) > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
	}
	return duplicates, nil
}

// lookUpStored reads the results stored since the commands stream's
// de-duplication window began: a command JetStream dropped as a duplicate
// was first published within that window, so its result, if decided, is
// there. Results found go to out like live ones.
func lookUpStored(ctx context.Context, js jetstream.JetStream, o Options, out chan<- []byte) {
	window := 2 * time.Minute
	if s, err := js.Stream(ctx, o.CommandsStream); err == nil && s.CachedInfo().Config.Duplicates > 0 {
		window = s.CachedInfo().Config.Duplicates
	}
	since := time.Now().Add(-window - time.Minute)
	cons, err := js.OrderedConsumer(ctx, o.ResultsStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return
	}
	for {
		batch, err := cons.FetchNoWait(512)
		if err != nil {
			return
		}
		n := 0
		var last jetstream.Msg
		for m := range batch.Messages() {
			n++
			last = m
			select {
			case out <- m.Data():
			case <-ctx.Done():
				return
			}
		}
		if n == 0 {
			return
		}
		if meta, err := last.Metadata(); err == nil && meta.NumPending == 0 {
			return
		}
	}
}

type noProgress struct{}

func (noProgress) Published(int, int)                        {}
func (noProgress) Result(int, int, map[messages.Outcome]int) {}
func (noProgress) Finish()                                   {}

// WriteJSON writes every result event as one line, in arrival order.
func (r *Report) WriteJSON(w io.Writer) error {
	for _, id := range r.Order {
		if _, err := fmt.Fprintf(w, "%s\n", compact(r.Results[id].Raw)); err != nil {
			return err
		}
	}
	return nil
}

func compact(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}
