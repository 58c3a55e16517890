package tests

// The fleet's guardrails under the nemesis (issue 19): the workers run with
// a fleet-wide API rate and a blast-radius budget, and both are checked
// against the simulator's own history of calls.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// nemesisRate is the workers' BCCSTOP_RATE_LIMIT.
const nemesisRate = 40

// nemesisRatePeak is the most calls the simulator may let in within any
// sliding second: the rate and the contract's own ±10% (section 5), as
// TestFleetWideRate allows. The simulator times a call when it lets it in,
// so the few milliseconds between a worker's grant and the call's arrival
// (the HTTP round trip, the scheduling of two busy cores) can bring two
// calls granted 25 ms apart closer; and a worker frozen between its grant
// and its write sends that call late, next to its first grant after the
// thaw. The faults themselves do not widen it: while NATS is down, or a
// worker's view of the fleet may be stale, no call is granted at all; a
// killed worker's share lies unused until its key expires, and a restarted
// one waits to be seen before its first call; a freeze (at most 4 s) is
// shorter than the registry's TTL (5 s), so the frozen worker keeps its
// share and the others do not take it over.
const nemesisRatePeak = nemesisRate + nemesisRate/10

// nemesisBudgetWindow is the window (D) of the workers' BCCSTOP_MAX_STOPS.
// The check allows no window of exactly D, timed where the simulator lets
// the calls in, more than N first stop calls: no tolerance. The budget
// counts in whole slots of D/60, at least a second (here a second): for a
// charge, the slots of the D before it and of a margin for clocks and the
// charge's own time (2 × 0.5 s + 1 s), rounded out to whole slots, and the
// slots of that margin after it. Its granularity makes it count more than
// D, never less: any D + 2 s holds at most N charges. A first stop call
// follows its charge by the ledger's record of it and the HTTP request,
// milliseconds (a charge the call cannot follow within a second is not
// used), and the workers here share one clock; so a window of D at the
// simulator holds at most N. (A worker that charged before the call's turn
// at the rate let calls land up to 20 s after their charges: 98 first
// stops in a window of 75.)
const nemesisBudgetWindow = 6 * time.Second

// nemesisBudget is the budget's N for a schedule of commands commands:
// half of them, far fewer than the fleet's rate can stop in a window
// (40/s), so that it trips in most schedules (seeds 1-10: all, once to
// three times): before operator A pauses, or when the backlog held back by
// A's pause drains.
func nemesisBudget(commands int) int { return max(10, commands/2) }

// firstStops returns, per instance, when the simulator let in its first
// stop call: the call a command is charged to the budget for, once, before
// it is made (a retry is not charged again, nor a repeat answered from the
// ledger). A command repeated past the ledger's TTL is a new command and
// is charged again; it is not counted here, so the count is at most what
// the budget counted.
func firstStops(history []fakebcc.Call) map[string]time.Time {
	first := map[string]time.Time{}
	for _, c := range history {
		if c.Op != fakebcc.OpStop {
			continue
		}
		if at, ok := first[c.Instance]; !ok || c.At.Before(at) {
			first[c.Instance] = c.At
		}
	}
	return first
}

// peakWithin returns the most of times within any window [t, t+d), and
// when the first such window begins.
func peakWithin(times []time.Time, d time.Duration) (peak int, at time.Time) {
	times = slices.SortedFunc(slices.Values(times), time.Time.Compare)
	first := 0
	for last := range times {
		for times[last].Sub(times[first]) >= d {
			first++
		}
		if n := last - first + 1; n > peak {
			peak, at = n, times[first]
		}
	}
	return peak, at
}

// nemesisStatus is what the operators read of `bccstop status --output json`.
type nemesisStatus struct {
	Paused     bool   `json:"paused"`
	PauseID    string `json:"pauseId"`
	Automatic  bool   `json:"pauseAutomatic"`
	Reason     string `json:"pauseReason"`
	PausedBy   string `json:"pausedBy"`
	BudgetLeft int    `json:"budgetLeft"`
}

// nemesisCLI runs bccstop against url until NATS answers: exit 5 (NATS
// unreachable) and 1 (an operation failed, a record changed under it) are
// tried again, up to 40 times. It returns the output and exit status of
// the last try, and how many tries it took.
func nemesisCLI(t *testing.T, url string, args ...string) (out string, code, tries int) {
	for tries = 1; tries <= 40; tries++ {
		p := start(t, []string{"NATS_URL=" + url}, args...)
		code = p.Wait(30 * time.Second)
		out = p.Stdout.String()
		if code != 5 && code != 1 {
			return out, code, tries
		}
		time.Sleep(250 * time.Millisecond)
	}
	return out, -1, tries
}

// nemesisFleetStatus reads the fleet's status through the binary.
func nemesisFleetStatus(t *testing.T, url string) (nemesisStatus, error) {
	var st nemesisStatus
	out, code, _ := nemesisCLI(t, url, "status", "--since", "0", "--output", "json")
	if code != 0 {
		return st, fmt.Errorf("bccstop status: exit %d", code)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("bccstop status: %w: %q", err, out)
	}
	return st, nil
}

// nemesisResumer plays operator C, on call for the blast-radius budget: on
// each tripped control event C reviews the trip and resumes the fleet with
// bccstop resume, once the budget has room again (resuming a spent budget
// only trips it again at the next command). C resumes only the span that
// tripped, and only while it is still an automatic budget trip: never
// operator A's pause, even one that took a trip over with --force.
//
// bccstop has no resume-if-still-this-pause: between C's look at status
// and C's resume, A could take the trip over. So C and A take turns (ops,
// their team's channel): A's pause, C's look and C's resume are each made
// while the other waits.
type nemesisResumer struct {
	url   string
	js    jetstream.JetStream
	ops   *sync.Mutex
	limit int

	mu         sync.Mutex
	tripped    map[string]bool // spans whose tripped event C saw
	resumed    map[string]bool // spans C resumed
	violations []string
}

// run follows the control stream until ctx ends, handling each tripped
// event in turn. The stream is read afresh from the next sequence every
// quarter second, so that NATS restarts lose nothing.
func (r *nemesisResumer) run(ctx context.Context, t *testing.T) {
	next := uint64(1)
	for ctx.Err() == nil {
		evs, after := readControl(ctx, r.js, next)
		next = after
		for _, ev := range evs {
			if ev.Data.Action != messages.ControlTripped {
				continue
			}
			r.mu.Lock()
			seen := r.tripped[ev.Data.PauseID]
			r.tripped[ev.Data.PauseID] = true
			r.mu.Unlock()
			if !seen {
				r.handle(ctx, t, ev.Data.PauseID)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// handle reviews one trip and resumes it when its time comes.
func (r *nemesisResumer) handle(ctx context.Context, t *testing.T, pauseID string) {
	// The review: what was stopped, and was it meant. Then C waits for
	// the window to free a quarter of the budget.
	time.Sleep(500 * time.Millisecond)
	for ctx.Err() == nil {
		r.ops.Lock()
		st, err := nemesisFleetStatus(t, r.url)
		switch {
		case err != nil:
			r.ops.Unlock()
			r.violate("operator C, reviewing trip %s: %v", pauseID, err)
			return
		case !st.Paused || st.PauseID != pauseID || !st.Automatic:
			// Over already, or taken over by operator A: not C's to end.
			r.ops.Unlock()
			return
		case st.BudgetLeft < max(1, r.limit/4):
			r.ops.Unlock()
			time.Sleep(500 * time.Millisecond)
			continue
		}
		_, code, tries := nemesisCLI(t, r.url, "resume", "--reason", "nemesis: budget trip reviewed", "--requested-by", "operator-c")
		r.ops.Unlock()
		// A try that failed may still have resumed: the next finds nothing.
		if code != 0 && !(code == 6 && tries > 1) {
			r.violate("operator C could not resume trip %s: exit %d", pauseID, code)
			return
		}
		r.mu.Lock()
		r.resumed[pauseID] = true
		r.mu.Unlock()
		return
	}
}

func (r *nemesisResumer) violate(format string, a ...any) {
	r.mu.Lock()
	r.violations = append(r.violations, fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

// readControl reads the control events stored from sequence from on, and
// returns them with the sequence to read from next. It gives up quietly
// (with what it has) when NATS does not answer.
func readControl(ctx context.Context, js jetstream.JetStream, from uint64) ([]messages.ControlEvent, uint64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, layout.ControlStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return nil, from
	}
	var out []messages.ControlEvent
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return out, from
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil {
				from = meta.Sequence.Stream + 1
			}
			var ev messages.ControlEvent
			if json.Unmarshal(m.Data(), &ev) == nil {
				out = append(out, ev)
			}
		}
		if n == 0 || batch.Error() != nil {
			return out, from
		}
	}
}

// nemesisSpan is what the control stream says of one paused span.
type nemesisSpan struct {
	opened, tripped, resumed int // paused or tripped events; tripped; resumed
	// trip: the blast-radius budget opened it (a tripped event, or a
	// paused event that names the budget: one that lost its tripped
	// event is a trip all the same).
	trip      bool
	pausedBy  map[string]bool
	resumedBy string
}

// nemesisSpans reads the control stream, by pause id. An operator's resume
// is announced by a worker a moment later, so it waits (up to 15 s) until
// every span has its resumed event.
func nemesisSpans(t *testing.T, js jetstream.JetStream) map[string]*nemesisSpan {
	t.Helper()
	var spans map[string]*nemesisSpan
	deadline := time.Now().Add(15 * time.Second)
	for {
		spans = map[string]*nemesisSpan{}
		for _, ev := range controlEvents(t, js) {
			d := ev.Data
			sp := spans[d.PauseID]
			if sp == nil {
				sp = &nemesisSpan{pausedBy: map[string]bool{}}
				spans[d.PauseID] = sp
			}
			switch d.Action {
			case messages.ControlTripped:
				sp.opened++
				sp.tripped++
				sp.trip = true
			case messages.ControlPaused:
				sp.opened++
				sp.pausedBy[d.RequestedBy] = true
				if d.Automatic && d.Budget != "" {
					sp.trip = true
				}
			case messages.ControlResumed:
				sp.resumed++
				sp.resumedBy = d.RequestedBy
			}
		}
		done := true
		for _, sp := range spans {
			done = done && sp.resumed > 0
		}
		if done || time.Now().After(deadline) {
			return spans
		}
		time.Sleep(250 * time.Millisecond)
	}
}
