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
	// Commands are the commands to publish, one per instance, each with
	// its CommandID (see CommandID) and without duplicates.
	Commands []messages.StopCommand
	BatchID  string

	// Wait follows the results until every command has one or Timeout passes.
	Wait    bool
	Timeout time.Duration
	// MaxInFlight, when positive, publishes in waves: at most that many
	// commands without a result at any time. It needs Wait.
	MaxInFlight int
	// MaxErrors is the error budget: once more than MaxErrors commands of
	// this run ended failed or rejected, nothing more is published and the
	// rest are reported not sent. Negative means no budget. Results decided
	// before this run started (a re-run of the batch) do not count.
	MaxErrors int
	// CommandsStream and ResultsStream are the worker's stream names.
	CommandsStream, ResultsStream string

	// Progress receives progress updates; nil shows none.
	Progress Progress
	// Tick is how often Progress hears from Run while nothing happens
	// (default 1s), so a display never freezes at stale counts.
	Tick time.Duration
}

// Progress is told how the job advances.
type Progress interface {
	Update(Status)
	Finish()
}

// Status is where a bulk stop stands.
type Status struct {
	Total, Published, Results int
	Counts                    map[messages.Outcome]int
	InFlight                  int // published, no result yet
	NotSent                   int // held back by the error budget
	// Wave is the wave being published (every MaxInFlight commands make a
	// wave; all of them are one without MaxInFlight), of Waves.
	Wave, Waves    int
	Errors, Budget int // failed or rejected in this run; the budget (-1: none)
	Halted         bool
	// SinceLastResult is how long ago the last result came (or the wait
	// began); a display says so when results are late.
	SinceLastResult time.Duration
	Publishing      bool
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
	// Results by instance id; Missing lists the instances published
	// without a result, NotSent those never published (error budget).
	Results   map[string]Result
	Order     []string // results in arrival order (instance ids)
	Missing   []string
	NotSent   []string
	Conflicts int // rejected CommandIdConflict: the batch id was used for other commands
	Waves     int // waves published (see Status.Wave)
	Errors    int // failed or rejected during this run
	Halted    bool
	TimedOut  bool
	Elapsed   time.Duration
}

// ErrPublish means not every command could be published.
var ErrPublish = errors.New("publish failed")

// run is the state of one Run.
type run struct {
	o        Options
	js       jetstream.JetStream
	start    time.Time
	report   *Report
	byCmd    map[string]int // command id → index in o.Commands
	content  []string       // per command: what it asks for
	earlier  []bool         // per command: JetStream had it already (an earlier run)
	next     int            // next command to publish
	inflight int
	lastSeen time.Time
}

// Run publishes the commands and, with Wait, collects their results. Results
// are followed on the live result subjects (a repeat of an earlier outcome is
// published again by the worker, though the results stream keeps only the
// first), and, for commands JetStream reports as already published, looked
// up in the results stream as well. A result counts for a command only if
// it is for the same content: an earlier command under the same identity
// (a batch re-run with other flags) is not this one's outcome; its conflict
// rejection is.
func Run(ctx context.Context, nc *nats.Conn, o Options) (*Report, error) {
	if o.MaxInFlight > 0 && !o.Wait {
		return nil, errors.New("waves (MaxInFlight) need Wait: a wave is sent when the results of the one before have come")
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	r := &run{o: o, js: js, start: time.Now(), byCmd: make(map[string]int, len(o.Commands)), content: make([]string, len(o.Commands)),
		earlier: make([]bool, len(o.Commands)),
		report:  &Report{BatchID: o.BatchID, Total: len(o.Commands), Counts: map[messages.Outcome]int{}, Results: map[string]Result{}}}
	for i, c := range o.Commands {
		r.byCmd[c.CommandID] = i
		r.content[i] = c.Content()
	}
	if r.o.Progress == nil {
		r.o.Progress = noProgress{}
	}
	defer r.o.Progress.Finish()

	// Subscribe before publishing, so no result can slip by.
	ctx, cancel := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer func() { cancel(); background.Wait() }()
	incoming := make(chan []byte, 1024)
	if o.Wait {
		sub, err := nc.Subscribe(messages.ResultSubjects, func(m *nats.Msg) {
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
	// Whenever a wave had commands JetStream already held, their results
	// are looked up in the results stream (again, for later waves).
	lookedUp := 0
	lookUp := func() {
		if r.report.Duplicates == lookedUp {
			return
		}
		lookedUp = r.report.Duplicates
		background.Add(1)
		go func() {
			defer background.Done()
			lookUpStored(ctx, js, o, incoming)
		}()
	}

	if !o.Wait {
		err := r.publish(ctx, len(o.Commands))
		r.report.Elapsed = time.Since(r.start)
		return r.report, err
	}
	timeout := time.NewTimer(o.Timeout)
	defer timeout.Stop()
	tick := time.NewTicker(o.Tick)
	defer tick.Stop()
	r.lastSeen = time.Now()
	for {
		if err := r.fill(ctx); err != nil {
			return r.report, err
		}
		lookUp()
		r.update()
		if (r.next == len(o.Commands) || r.report.Halted) && r.inflight == 0 {
			break
		}
		select {
		case raw := <-incoming:
			r.receive(raw)
		case <-tick.C:
		case <-timeout.C:
			r.report.TimedOut = true
		case <-ctx.Done():
			r.report.TimedOut = true
		}
		if r.report.TimedOut {
			break
		}
	}
	for _, c := range o.Commands[r.next:] {
		r.report.NotSent = append(r.report.NotSent, c.InstanceID)
	}
	for _, c := range o.Commands[:r.next] {
		if _, ok := r.report.Results[c.InstanceID]; !ok {
			r.report.Missing = append(r.report.Missing, c.InstanceID)
		}
	}
	r.report.Elapsed = time.Since(r.start)
	r.update()
	return r.report, nil
}

// fill publishes the next wave if there is room and the budget allows.
func (r *run) fill(ctx context.Context) error {
	if r.report.Halted || r.next == len(r.o.Commands) {
		return nil
	}
	room := len(r.o.Commands) - r.next
	if r.o.MaxInFlight > 0 {
		room = min(room, r.o.MaxInFlight-r.inflight)
	}
	if room <= 0 {
		return nil
	}
	return r.publish(ctx, room)
}

// receive takes one result event off the results subjects.
func (r *run) receive(raw []byte) {
	ev, err := messages.DecodeResultEvent(raw)
	if err != nil {
		return
	}
	i, ours := r.byCmd[ev.Data.CommandID]
	if !ours || i >= r.next || resultContent(ev.Data) != r.content[i] {
		return // not ours, not sent yet, or the answer to another command under this identity
	}
	c := r.o.Commands[i]
	if _, dup := r.report.Results[c.InstanceID]; dup {
		return
	}
	r.lastSeen = time.Now()
	r.inflight--
	r.report.Results[c.InstanceID] = Result{Event: ev, Raw: raw}
	r.report.Order = append(r.report.Order, c.InstanceID)
	r.report.Counts[ev.Data.Outcome]++
	if ev.Data.Code == messages.CodeCommandIDConflict {
		r.report.Conflicts++
	}
	// Only what this run decided spends its budget: results of commands an
	// earlier run of the batch published (JetStream still had them, or the
	// decision is older than this run) are history.
	fresh := !r.earlier[i] && !ev.Time.Before(r.start.Add(-time.Second))
	if (ev.Data.Outcome == messages.Failed || ev.Data.Outcome == messages.Rejected) && fresh {
		r.report.Errors++
		if r.o.MaxErrors >= 0 && r.report.Errors > r.o.MaxErrors {
			r.report.Halted = true
		}
	}
}

// resultContent is what a result says its command asked for, in the terms
// of messages.StopCommand.Content.
func resultContent(d messages.ResultData) string {
	return messages.StopCommand{InstanceID: d.InstanceID, ForceStop: d.ForceStop, StopWithNoCharge: d.StopWithNoCharge,
		Region: d.Region, NotAfter: d.NotAfter, WaitUntilStopped: d.WaitUntilStopped}.Content()
}

func (r *run) update() {
	rep := r.report
	r.o.Progress.Update(Status{
		Total: rep.Total, Published: r.next, Results: len(rep.Results), Counts: rep.Counts, InFlight: r.inflight,
		NotSent: notSent(r), Wave: rep.Waves, Waves: r.wave(len(r.o.Commands)), Errors: rep.Errors, Budget: r.o.MaxErrors, Halted: rep.Halted,
		SinceLastResult: time.Since(r.lastSeen),
	})
}

func notSent(r *run) int {
	if r.report.Halted {
		return len(r.o.Commands) - r.next
	}
	return 0
}

// publish sends the next n commands asynchronously (a window of
// acknowledgements in flight, not one round trip each) with a Nats-Msg-Id
// made of the command id and its content's fingerprint, retries the ones
// that failed, and counts those JetStream already had. The same command
// published again is dropped by JetStream; a command under the same id with
// other content is stored, and the worker answers it CommandIdConflict.
func (r *run) publish(ctx context.Context, n int) error {
	wave := r.o.Commands[r.next : r.next+n]
	pending := make([]int, len(wave))
	for i := range wave {
		pending[i] = i
	}
	for attempt := 1; len(pending) > 0; attempt++ {
		type inflight struct {
			i   int
			ack jetstream.PubAckFuture
		}
		futures := make([]inflight, 0, len(pending))
		var failed []int
		var lastErr error
		for _, i := range pending {
			c := wave[i]
			payload, _ := json.Marshal(c)
			msg := &nats.Msg{Subject: messages.CommandSubject, Data: payload}
			ack, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(CommandMsgID(c)), jetstream.WithExpectStream(r.o.CommandsStream))
			if err != nil {
				failed, lastErr = append(failed, i), err
				continue
			}
			futures = append(futures, inflight{i, ack})
		}
		for _, f := range futures {
			select {
			case pa := <-f.ack.Ok():
				if pa.Duplicate {
					r.report.Duplicates++
					r.earlier[r.next+f.i] = true
				}
			case err := <-f.ack.Err():
				failed, lastErr = append(failed, f.i), err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(failed) > 0 && attempt == 3 {
			return fmt.Errorf("%w: %d of %d commands were not stored by JetStream (is a worker's stream %s there?): %v",
				ErrPublish, len(failed), len(wave), r.o.CommandsStream, lastErr)
		}
		pending = failed
		if len(pending) > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	r.next += n
	r.inflight += n
	r.report.Waves = r.wave(r.next)
	return nil
}

// wave is the wave the n-th published command belongs to.
func (r *run) wave(n int) int {
	if r.o.MaxInFlight <= 0 || n == 0 {
		return min(n, 1)
	}
	return (n + r.o.MaxInFlight - 1) / r.o.MaxInFlight
}

// CommandMsgID is the Nats-Msg-Id a command is published with: its id and
// a fingerprint of its content, so JetStream drops only true repeats.
func CommandMsgID(c messages.StopCommand) string {
	return c.CommandID + "~" + c.Fingerprint()[:12]
}

// lookUpStored reads the results stored since the commands stream's
// de-duplication window began: a command JetStream dropped as a duplicate
// was first published within that window, so its result, if decided, is
// there. Results found go to out like live ones, until ctx ends.
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

func (noProgress) Update(Status) {}
func (noProgress) Finish()       {}

// WriteJSON writes every result event as one line, in arrival order, then
// one line per command not sent: {"instanceId":…,"commandId":…,"outcome":"not sent"}.
func (r *Report) WriteJSON(w io.Writer) error {
	for _, id := range r.Order {
		if _, err := fmt.Fprintf(w, "%s\n", compact(r.Results[id].Raw)); err != nil {
			return err
		}
	}
	for _, id := range r.NotSent {
		line, _ := json.Marshal(map[string]string{"instanceId": id, "commandId": CommandID(r.BatchID, id), "outcome": OutcomeNotSent})
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}

// OutcomeNotSent marks, in the report and in JSON, a command the error
// budget held back.
const OutcomeNotSent = "not sent"

func compact(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}
