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

	"github.com/bccstop/bccstop/internal/layout"
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
	// CommandsStream and ResultsStream are the worker's stream names;
	// LedgerBucket the workers' ledger ("" not to read it).
	CommandsStream, ResultsStream, LedgerBucket string

	// Progress receives progress updates; nil shows none.
	Progress Progress
	// Tick is how often Progress hears from Run while nothing happens
	// (default 1s), so a display never freezes at stale counts.
	Tick time.Duration
	// Fleet, when set, says in a few words what holds the fleet ("" while
	// it runs), for the display: asked at every update, so it must not
	// block (the caller reads the fleet's state elsewhere and keeps it).
	Fleet func() string
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
	// Fleet is what holds the fleet (Options.Fleet), "" while it runs.
	Fleet string
}

// Result is one command's result event, as received.
type Result struct {
	Event messages.ResultEvent
	Raw   []byte
}

// Report is how the job ended: every command has either a result or an
// entry in Unanswered.
type Report struct {
	BatchID    string
	Total      int
	Duplicates int // commands JetStream already had (an earlier run of the batch)
	// Counts counts the commands by outcome: the contract's four for those
	// with a result, OutcomeNoResult and OutcomeNotSent for the others.
	Counts map[messages.Outcome]int
	// Results by instance id.
	Results map[string]Result
	Order   []string // results in arrival order (instance ids)
	// Unanswered are the commands without a result, in the order given,
	// each with why.
	Unanswered []Unanswered
	Conflicts  int // rejected CommandIdConflict: the batch id was used for other commands
	// Mismatched counts stored results under this run's command ids whose
	// content is another command's (an earlier run of the batch with other
	// flags, or a result that does not answer what was asked): not counted
	// as these commands' outcomes. MismatchedIDs names a few.
	Mismatched    int
	MismatchedIDs []string
	Waves         int  // waves published (see Status.Wave)
	Errors        int  // failed or rejected during this run
	Halted        bool // the error budget was spent: nothing more was published
	TimedOut      bool // --timeout passed before every command had a result
	Interrupted   bool // the context was cancelled (SIGINT, SIGTERM)
	// Err is why publishing stopped early: JetStream refused a command or
	// did not confirm it stored it (wrapping ErrPublish), or the results
	// could not be followed. Nothing more was published then, and nothing
	// more waited for.
	Err     error
	Elapsed time.Duration
	End     time.Time // when the report was made
}

// ErrPublish means not every command could be published.
var ErrPublish = errors.New("publish failed")

// sendState is where one command of a run stands.
type sendState int

const (
	unsent    sendState = iota // not tried yet
	published                  // stored by JetStream (or had already)
	notSent                    // given up on: see run.why
)

// run is the state of one Run.
type run struct {
	o        Options
	js       jetstream.JetStream
	start    time.Time
	report   *Report
	byCmd    map[string]int // command id → index in o.Commands
	content  []string       // per command: what it asks for
	earlier  []bool         // per command: JetStream had it already (an earlier run)
	state    []sendState    // per command
	why      map[int]Unanswered
	next     int // next command to publish
	inflight int
	// nPublished and nGivenUp count the commands published and not sent.
	nPublished, nGivenUp int
	lastSeen             time.Time
	// mismatched are the event ids of results that answered other content.
	mismatched map[string]bool
	// early are results read before their command was published.
	early map[int][]byte
}

// Run publishes the commands and, with Wait, collects their results.
// Results are read from the results stream only (an ordered consumer,
// from a little before the first publish on), never from a core
// subscription: a message that was never stored is never believed, and
// only workers may store results (section 7 of the contract). A command
// JetStream reports as published already (a re-run of the batch) was
// first published within the commands stream's de-duplication window, so
// its result is read from there on. A repeat of an older command is
// answered by the workers from their ledger, and its result, stored long
// ago, is dropped by the results stream as a repeat: for commands still
// without a result a few seconds after publishing, the ledger (which only
// workers write) is read for the outcome it holds. A result counts for a
// command only if it is for the same content: an earlier command under the
// same identity (a batch re-run with other flags) is not this one's
// outcome; its conflict rejection is. Results of other content are
// counted in Report.Mismatched and reported.
//
// The report accounts for every command: a result, or an entry in
// Report.Unanswered saying why there is none (not waited for, timed out,
// interrupted, held back by the error budget, not stored). Publishing
// that failed, and results that could not be followed, end the run and
// are in Report.Err. The error is only for options that do not go
// together; the report is nil then.
func Run(ctx context.Context, nc *nats.Conn, o Options) (*Report, error) {
	if o.MaxInFlight > 0 && !o.Wait {
		return nil, errors.New("waves (MaxInFlight) need Wait: a wave is sent when the results of the one before have come")
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	n := len(o.Commands)
	r := &run{o: o, start: time.Now(), byCmd: make(map[string]int, n), content: make([]string, n),
		earlier: make([]bool, n), state: make([]sendState, n), why: map[int]Unanswered{},
		report: &Report{BatchID: o.BatchID, Total: n, Counts: map[messages.Outcome]int{}, Results: map[string]Result{}}}
	for i, c := range o.Commands {
		r.byCmd[c.CommandID] = i
		r.content[i] = c.Content()
	}
	if r.o.Progress == nil {
		r.o.Progress = noProgress{}
	}
	defer r.o.Progress.Finish()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		r.report.Err = err
		return r.finish(), nil
	}
	r.js = js

	if !o.Wait {
		r.stopped(r.publish(ctx, n))
		return r.finish(), nil
	}
	// Follow the results stream before publishing, so no result can slip by.
	ctx, cancel := context.WithCancel(ctx)
	var background sync.WaitGroup
	defer func() { cancel(); background.Wait() }()
	incoming := make(chan []byte, 256)
	if err := r.followResults(ctx, &background, incoming); err != nil {
		r.report.Err = err
		return r.finish(), nil
	}
	timeout := time.NewTimer(o.Timeout)
	defer timeout.Stop()
	tick := time.NewTicker(o.Tick)
	defer tick.Stop()
	r.lastSeen = time.Now()
	var nextLedgerLook time.Time
	for {
		if r.stopped(r.fill(ctx)) {
			break
		}
		if nextLedgerLook.IsZero() && r.next > 0 {
			nextLedgerLook = time.Now().Add(ledgerFirstLook)
		}
		if !nextLedgerLook.IsZero() && time.Now().After(nextLedgerLook) {
			r.lookUpLedger(ctx, incoming)
			nextLedgerLook = time.Now().Add(ledgerLookEvery)
		}
		r.update()
		if (r.next == n || r.report.Halted) && r.inflight == 0 {
			break
		}
		select {
		case raw := <-incoming:
			r.receive(raw)
		case <-tick.C:
		case <-timeout.C:
			r.report.TimedOut = true
		case <-ctx.Done():
			r.report.Interrupted = true
		}
		if r.report.TimedOut || r.report.Interrupted {
			break
		}
	}
	return r.finish(), nil
}

// stopped records why publishing stopped, if err says it did, and
// reports whether it did.
func (r *run) stopped(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		r.report.Interrupted = true
	default:
		r.report.Err = err
	}
	return true
}

// finish gives every command without a result its reason, counts them,
// and closes the report.
func (r *run) finish() *Report {
	rep := r.report
	for i, c := range r.o.Commands {
		if _, ok := rep.Results[c.InstanceID]; ok {
			continue
		}
		u, ok := r.why[i]
		switch {
		case ok:
		case r.state[i] == published && !r.o.Wait:
			u = Unanswered{Outcome: OutcomeNoResult, Code: CodeNotWaited, Message: "published; not waited for (--wait=false)"}
		case r.state[i] == published && rep.Err != nil:
			u = Unanswered{Outcome: OutcomeNoResult, Code: CodeNotWaited, Message: "published; not waited for, since publishing others failed"}
		case r.state[i] == published && rep.Interrupted:
			u = Unanswered{Outcome: OutcomeNoResult, Code: CodeInterrupted, Message: "published; the wait for its result was interrupted"}
		case r.state[i] == published:
			u = Unanswered{Outcome: OutcomeNoResult, Code: CodeTimedOut, Message: fmt.Sprintf("published; no result before --timeout %s", r.o.Timeout)}
		case rep.Halted:
			u = Unanswered{Outcome: OutcomeNotSent, Code: CodeErrorBudgetSpent,
				Message: fmt.Sprintf("held back by the error budget: %s, more than --max-errors %d",
					plural(rep.Errors, "command of this run failed or was rejected", "commands of this run failed or were rejected"), r.o.MaxErrors)}
		case rep.Err != nil:
			u = Unanswered{Outcome: OutcomeNotSent, Code: CodePublishFailed, Message: "not published: the run stopped: " + rep.Err.Error()}
		case rep.Interrupted:
			u = Unanswered{Outcome: OutcomeNotSent, Code: CodeInterrupted, Message: "not published: interrupted before it was"}
		default:
			u = Unanswered{Outcome: OutcomeNotSent, Code: CodeTimedOut, Message: fmt.Sprintf("not published: --timeout %s passed before its wave", r.o.Timeout)}
		}
		u.Command = c
		rep.Unanswered = append(rep.Unanswered, u)
		rep.Counts[u.Outcome]++
	}
	rep.End = time.Now()
	rep.Elapsed = rep.End.Sub(r.start)
	r.update()
	return rep
}

// When the ledger is read for commands still without a result.
const (
	ledgerFirstLook = 3 * time.Second
	ledgerLookEvery = 30 * time.Second
)

// followResults reads the results stored since the commands stream's
// de-duplication window began (a command JetStream drops as a duplicate was
// first published within it, so its result, if decided, is stored since),
// and every result stored from then on, handing ours to out. Only this
// run's commands are kept: memory is bounded by the batch, not the bus.
func (r *run) followResults(ctx context.Context, wg *sync.WaitGroup, out chan<- []byte) error {
	window := 2 * time.Minute
	if s, err := r.js.Stream(ctx, r.o.CommandsStream); err == nil && s.CachedInfo().Config.Duplicates > 0 {
		window = s.CachedInfo().Config.Duplicates
	}
	since := r.start.Add(-window - time.Minute)
	follow := func() (jetstream.MessagesContext, error) {
		cons, err := r.js.OrderedConsumer(ctx, r.o.ResultsStream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since, FilterSubjects: []string{messages.ResultSubjects},
		})
		if err != nil {
			return nil, err
		}
		return cons.Messages(jetstream.PullMaxMessages(256))
	}
	iter, err := follow()
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("read results from %s: %w", r.o.ResultsStream, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// No results stream yet (no worker has run): it is looked for again
		// every second, and the wait runs out as it would with no worker.
		for iter == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			iter, _ = follow()
		}
		defer iter.Stop()
		go func() { <-ctx.Done(); iter.Stop() }()
		for {
			m, err := iter.Next()
			if err != nil {
				return // stopped
			}
			if !r.ours(m.Data()) {
				continue
			}
			select {
			case out <- m.Data():
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// ours reports whether raw is a result for one of this run's command ids
// (read without the run's lock: byCmd does not change once Run starts).
func (r *run) ours(raw []byte) bool {
	var head struct {
		Data struct {
			CommandID string `json:"commandId"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &head) != nil {
		return false
	}
	_, ok := r.byCmd[head.Data.CommandID]
	return ok
}

// lookUpLedger reads, for each published command still without a result,
// the outcome the ledger holds (see Run), and hands those found to out.
func (r *run) lookUpLedger(ctx context.Context, out chan<- []byte) {
	if r.o.LedgerBucket == "" {
		return
	}
	kv, err := r.js.KeyValue(ctx, r.o.LedgerBucket)
	if err != nil {
		return
	}
	for i, c := range r.o.Commands[:r.next] {
		if _, ok := r.report.Results[c.InstanceID]; ok || r.state[i] != published {
			continue
		}
		e, err := kv.Get(ctx, layout.LedgerKey(c.CommandID))
		if err != nil {
			continue
		}
		if ev, done, err := layout.LedgerOutcome(e.Value()); err == nil && done {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			default:
				r.receive(ev) // the channel is full: take it here
			}
		}
	}
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
	if !ours {
		return
	}
	if r.state[i] != published {
		// Stored before this run reached the command (an earlier run of the
		// batch): kept until it is published, then taken as its outcome.
		if r.early == nil {
			r.early = map[int][]byte{}
		}
		r.early[i] = raw
		return
	}
	c := r.o.Commands[i]
	if _, dup := r.report.Results[c.InstanceID]; dup {
		return
	}
	if resultContent(ev.Data) != r.content[i] {
		// The answer to another command under this identity.
		if !r.mismatched[ev.ID] {
			if r.mismatched == nil {
				r.mismatched = map[string]bool{}
			}
			r.mismatched[ev.ID] = true
			r.report.Mismatched++
			if len(r.report.MismatchedIDs) < 5 {
				r.report.MismatchedIDs = append(r.report.MismatchedIDs, ev.Data.CommandID)
			}
		}
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
		Total: rep.Total, Published: r.nPublished, Results: len(rep.Results), Counts: rep.Counts, InFlight: r.inflight,
		NotSent: r.notSent(), Wave: rep.Waves, Waves: r.wave(len(r.o.Commands)), Errors: rep.Errors, Budget: r.o.MaxErrors, Halted: rep.Halted,
		SinceLastResult: time.Since(r.lastSeen), Fleet: r.fleet(),
	})
}

// fleet is what holds the fleet, as Options.Fleet says.
func (r *run) fleet() string {
	if r.o.Fleet == nil {
		return ""
	}
	return r.o.Fleet()
}

// notSent counts the commands that will not be sent: given up on, and,
// once the error budget is spent, those not tried.
func (r *run) notSent() int {
	if r.report.Halted {
		return len(r.o.Commands) - r.nPublished
	}
	return r.nGivenUp
}

// publish sends the next n commands asynchronously (a window of
// acknowledgements in flight, not one round trip each) with a Nats-Msg-Id
// made of the command id and its content's fingerprint, retries the ones
// that failed, and counts those JetStream already had. The same command
// published again is dropped by JetStream; a command under the same id with
// other content is stored, and the worker answers it CommandIdConflict.
// Every command tried ends published or not sent (with why); the error
// says why some were not: ErrPublish wrapped, or the context's.
func (r *run) publish(ctx context.Context, n int) error {
	first := r.next
	r.next += n
	pending := make([]int, 0, n)
	for i := first; i < first+n; i++ {
		pending = append(pending, i)
	}
	giveUp := func(ids []int, code, message string) {
		for _, i := range ids {
			r.state[i] = notSent
			r.nGivenUp++
			r.why[i] = Unanswered{Outcome: OutcomeNotSent, Code: code, Message: message}
		}
	}
	stored := func(i int, pa *jetstream.PubAck) {
		r.state[i] = published
		r.nPublished++
		r.inflight++
		if pa.Duplicate {
			r.report.Duplicates++
			r.earlier[i] = true
		}
	}
	defer func() {
		r.report.Waves = r.wave(r.next)
		for i := first; i < first+n; i++ {
			if raw, ok := r.early[i]; ok && r.state[i] == published {
				delete(r.early, i)
				r.receive(raw)
			}
		}
	}()
	for attempt := 1; len(pending) > 0; attempt++ {
		type inflight struct {
			i   int
			ack jetstream.PubAckFuture
		}
		futures := make([]inflight, 0, len(pending))
		var failed []int
		var lastErr error
		for _, i := range pending {
			c := r.o.Commands[i]
			payload, _ := json.Marshal(c)
			msg := &nats.Msg{Subject: messages.CommandSubject, Data: payload}
			ack, err := r.js.PublishMsgAsync(msg, jetstream.WithMsgID(CommandMsgID(c)), jetstream.WithExpectStream(r.o.CommandsStream))
			if err != nil {
				failed, lastErr = append(failed, i), err
				continue
			}
			futures = append(futures, inflight{i, ack})
		}
		for k, f := range futures {
			select {
			case pa := <-f.ack.Ok():
				stored(f.i, pa)
			case err := <-f.ack.Err():
				failed, lastErr = append(failed, f.i), err
			case <-ctx.Done():
				// Those already acknowledged are stored; the others may be.
				var unsure []int
				for _, g := range futures[k:] {
					select {
					case pa := <-g.ack.Ok():
						stored(g.i, pa)
					default:
						unsure = append(unsure, g.i)
					}
				}
				giveUp(append(unsure, failed...), CodeInterrupted, "interrupted before JetStream confirmed it stored it: it may have")
				return ctx.Err()
			}
		}
		if len(failed) > 0 && attempt == 3 {
			giveUp(failed, CodePublishFailed, fmt.Sprintf("JetStream did not store it in %d attempts: %v", attempt, lastErr))
			return fmt.Errorf("%w: %d of %d commands were not stored by JetStream (is a worker's stream %s there?): %v",
				ErrPublish, len(failed), n, r.o.CommandsStream, lastErr)
		}
		pending = failed
		if len(pending) > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			case <-ctx.Done():
				giveUp(pending, CodeInterrupted, "interrupted before JetStream confirmed it stored it: it may have")
				return ctx.Err()
			}
		}
	}
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

type noProgress struct{}

func (noProgress) Update(Status) {}
func (noProgress) Finish()       {}

// WriteJSON writes one line per command: its result event as the worker
// published it, in arrival order, then, for each command without a
// result, a line of the same shape whose outcome is OutcomeNoResult or
// OutcomeNotSent (see Unanswered.Event).
func (r *Report) WriteJSON(w io.Writer) error {
	for _, id := range r.Order {
		if _, err := fmt.Fprintf(w, "%s\n", compact(r.Results[id].Raw)); err != nil {
			return err
		}
	}
	for _, u := range r.Unanswered {
		line, err := json.Marshal(u.Event(r.BatchID, r.End))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
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
