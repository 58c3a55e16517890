package tests

// A seeded, replayable fault-schedule test: several worker processes on one
// durable consumer, and a nemesis that kills and freezes them, restarts the
// NATS server, and makes the BCC simulator answer 5xx, hang, or lose its
// answers after the stop took effect. Then everything heals, and the
// invariants of the contract are checked against the simulator's own
// record of calls, not against the results stream alone (which drops
// repeats by Nats-Msg-Id and so could hide a second decision).
//
// make test runs a few schedules; make soak runs many:
//
//	BCCSTOP_NEMESIS_SEEDS=1-100 BCCSTOP_NEMESIS_COMMANDS=300 go test -run TestNemesis -v ./tests
//
// A failing seed replays with BCCSTOP_NEMESIS_SEEDS=<seed> (timing varies
// from run to run; the schedule and the commands do not);
// BCCSTOP_NEMESIS_LOG_LEVEL=info has the workers log every command and a
// failing seed print their whole logs.
//
// The workers run with the fleet's guardrails on, a fleet-wide API rate and
// a blast-radius budget that trips in most schedules, and both are checked
// against the simulator's history too; an operator resumes the fleet after
// each trip (nemesis_guards_test.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/natsserver"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

func TestNemesis(t *testing.T) {
	seeds := []uint64{1, 2}
	if s := os.Getenv("BCCSTOP_NEMESIS_SEEDS"); s != "" {
		var err error
		if seeds, err = parseSeeds(s); err != nil {
			t.Fatalf("BCCSTOP_NEMESIS_SEEDS: %v", err)
		}
	}
	commands := 150
	if n, err := strconv.Atoi(os.Getenv("BCCSTOP_NEMESIS_COMMANDS")); err == nil && n > 0 {
		commands = n
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			line := runNemesis(t, seed, commands)
			// One line per seed, on stdout, for make soak.
			fmt.Println(line)
		})
	}
}

// parseSeeds reads "3", "1,5,9" or "1-100".
func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
	}
	return out, nil
}

// event is one thing the nemesis does, at a time from the start.
type event struct {
	at   time.Duration
	kind string // kill, freeze, nats, faults, pause
	// worker is the target of kill and freeze.
	worker int
	// lasts is how long a worker stays dead or frozen, NATS down, faults on.
	lasts  time.Duration
	faults fakebcc.Faults
}

func (e event) String() string {
	switch e.kind {
	case "kill", "freeze":
		return fmt.Sprintf("%s w%d %.1fs@%.1fs", e.kind, e.worker, e.lasts.Seconds(), e.at.Seconds())
	case "faults":
		return fmt.Sprintf("faults %.0f%%%v after-apply %.0f%% %.1fs@%.1fs", e.faults.Rate*100, e.faults.Kinds, e.faults.AfterApply*100, e.lasts.Seconds(), e.at.Seconds())
	}
	return fmt.Sprintf("%s %.1fs@%.1fs", e.kind, e.lasts.Seconds(), e.at.Seconds())
}

// schedule is everything a seed decides.
type schedule struct {
	workers  int
	events   []event
	running  []string        // instances Running at the start, one command each
	waiting  map[string]bool // of those, the ones whose command waits until Stopped
	stopped  []string        // instances already Stopped: their commands are forbidden
	repeats  []int           // commands (indexes into all) published a second time
	publishE time.Duration
}

func newSchedule(seed uint64, commands int) schedule {
	rng := rand.New(rand.NewPCG(seed, 0x6263637374))
	s := schedule{workers: 2 + rng.IntN(2), publishE: 6 * time.Second}
	s.waiting = map[string]bool{}
	for i := range commands {
		id := fmt.Sprintf("i-nem%d-%04d", seed, i)
		if rng.IntN(10) == 0 {
			s.stopped = append(s.stopped, id)
		} else {
			s.running = append(s.running, id)
			s.waiting[id] = rng.IntN(5) == 0
		}
	}
	for range commands / 10 {
		s.repeats = append(s.repeats, rng.IntN(commands))
	}
	n := 3 + rng.IntN(5)
	for range n {
		e := event{at: time.Duration(rng.Int64N(int64(9 * time.Second))), worker: rng.IntN(s.workers)}
		switch r := rng.IntN(10); {
		case r < 3:
			e.kind, e.lasts = "kill", time.Duration(300+rng.IntN(1700))*time.Millisecond
		case r < 5:
			e.kind, e.lasts = "freeze", time.Duration(500+rng.IntN(3500))*time.Millisecond
		case r < 7:
			e.kind, e.lasts = "nats", time.Duration(300+rng.IntN(1700))*time.Millisecond
		default:
			kinds := [][]int{{500}, {503}, {fakebcc.Timeout}, {500, 503, fakebcc.Timeout}, {429, 503}}
			e.kind, e.lasts = "faults", time.Duration(1000+rng.IntN(3000))*time.Millisecond
			e.faults = fakebcc.Faults{Rate: 0.2 + 0.6*rng.Float64(), Kinds: kinds[rng.IntN(len(kinds))],
				AfterApply: rng.Float64() * 0.7, Hang: 2 * time.Second}
		}
		s.events = append(s.events, e)
	}
	// Every schedule has one fleet pause longer than the ledger's TTL
	// (BCCSTOP_LEDGER_TTL=10s below), during which a second operator tries
	// to pause with a shorter deadline and must be refused.
	s.events = append(s.events, event{kind: "pause", at: time.Duration(rng.Int64N(int64(5 * time.Second))),
		lasts: time.Duration(11000+rng.IntN(4000)) * time.Millisecond})
	sort.Slice(s.events, func(i, j int) bool { return s.events[i].at < s.events[j].at })
	return s
}

// nemesisNATS is a NATS server the nemesis can take down and bring back
// with the same store. Clients reach it through a proxy whose address never
// changes, so no other process can take the address while it is down.
// Outages may overlap: the server is up only when every one has ended, and
// never two servers on one store.
type nemesisNATS struct {
	mu    sync.Mutex
	dir   string
	proxy *testenv.Proxy
	srv   *server.Server
	down  int // outages in progress
}

// start ends one outage (or, at first, starts the server).
func (n *nemesisNATS) start(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down > 0 {
		n.down--
	}
	if n.down > 0 || n.srv != nil {
		return
	}
	srv, err := natsserver.Start(natsserver.Options{StoreDir: n.dir})
	if err != nil {
		t.Errorf("NATS did not come back: %v", err)
		return
	}
	n.srv = srv
	n.proxy.SetBackend(srv.Addr().String())
}

// stop begins an outage.
func (n *nemesisNATS) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down++
	n.shutdownLocked()
}

func (n *nemesisNATS) shutdownLocked() {
	n.proxy.SetBackend("")
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// nemesisWorker is one worker slot: its process is replaced when killed.
type nemesisWorker struct {
	mu     sync.Mutex
	p      *proc
	frozen bool
	logs   []string // stderr of every process this slot ran
}

func runNemesis(t *testing.T, seed uint64, commands int) string {
	s := newSchedule(seed, commands)
	budget := nemesisBudget(commands)
	begin := time.Now()
	ns := &nemesisNATS{dir: t.TempDir(), proxy: testenv.NewProxy(t)}
	ns.start(t)
	t.Cleanup(func() { ns.mu.Lock(); ns.shutdownLocked(); ns.mu.Unlock() })
	url := "nats://" + ns.proxy.Addr()

	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: 3 * time.Second, Latency: 5 * time.Millisecond, Jitter: 20 * time.Millisecond})
	sim.Seed(fakebcc.Running, s.running...)
	sim.Seed(fakebcc.Stopped, s.stopped...)

	// Each worker slot keeps its HTTP address across restarts: picking a
	// free port anew could take the NATS port while NATS is down.
	httpAddrs := make([]string, s.workers)
	for i := range httpAddrs {
		httpAddrs[i] = freeAddr(t)
	}
	logLevel, logTail := "warn", 3000
	if l := os.Getenv("BCCSTOP_NEMESIS_LOG_LEVEL"); l != "" {
		logLevel, logTail = l, 1<<30
	}
	env := func(i int) []string {
		return workerEnv(t, url, simURL, httpAddrs[i], "BCCSTOP_WORKER_ID=w"+strconv.Itoa(i), "BCCSTOP_CONCURRENCY=16",
			"BCCSTOP_MAX_DELIVER=4", "BCCSTOP_BACKOFF=200ms,500ms", "BCCSTOP_ACK_WAIT=3s", "BCCSTOP_CALL_TIMEOUT=1s",
			"BCCSTOP_RATE_LIMIT="+strconv.Itoa(nemesisRate), "BCCSTOP_SHUTDOWN_TIMEOUT=2s", "BCCSTOP_LOG_LEVEL="+logLevel, "BCCSTOP_LEDGER_TTL="+nemesisLedgerTTL.String(),
			"BCCSTOP_STOP_WAIT_INTERVALS=1s,2s", fmt.Sprintf("BCCSTOP_MAX_STOPS=%d/%s", budget, nemesisBudgetWindow))
	}
	bin := binary
	if b := os.Getenv("BCCSTOP_NEMESIS_BINARY"); b != "" {
		bin = b // another build, to compare by hand
	}
	workers := make([]*nemesisWorker, s.workers)
	for i := range workers {
		workers[i] = &nemesisWorker{p: startBinary(t, bin, env(i), "worker")}
	}

	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	waitForStreams(t, js)
	live := testenv.SubscribeResults(t, nc)

	// The operators: A and B pause (see nemesisPauses), C resumes the
	// fleet after each budget trip; A and C take turns (ops).
	ops := &sync.Mutex{}
	pauses := &nemesisPauses{url: url, ops: ops}
	resumer := &nemesisResumer{url: url, js: js, ops: ops, limit: budget, tripped: map[string]bool{}, resumed: map[string]bool{}}
	resumerCtx, stopResumer := context.WithCancel(context.Background())
	resumerDone := make(chan struct{})
	go func() { defer close(resumerDone); resumer.run(resumerCtx, t) }()
	defer func() { stopResumer(); <-resumerDone }()

	// The nemesis.
	var chaos sync.WaitGroup
	for _, e := range s.events {
		chaos.Add(1)
		go func() {
			defer chaos.Done()
			time.Sleep(time.Until(begin.Add(e.at)))
			switch e.kind {
			case "kill":
				w := workers[e.worker]
				w.mu.Lock()
				w.p.Cmd.Process.Kill()
				<-w.p.Done()
				w.logs = append(w.logs, w.p.Stderr.String())
				w.mu.Unlock()
				time.Sleep(e.lasts)
				w.mu.Lock()
				w.p, w.frozen = startBinary(t, bin, env(e.worker), "worker"), false
				w.mu.Unlock()
			case "freeze":
				w := workers[e.worker]
				w.mu.Lock()
				w.p.Cmd.Process.Signal(syscall.SIGSTOP)
				w.frozen = true
				p := w.p
				w.mu.Unlock()
				time.Sleep(e.lasts)
				w.mu.Lock()
				if w.p == p {
					p.Cmd.Process.Signal(syscall.SIGCONT)
					w.frozen = false
				}
				w.mu.Unlock()
			case "nats":
				ns.stop()
				time.Sleep(e.lasts)
				ns.start(t)
			case "faults":
				sim.SetFaults(e.faults)
				time.Sleep(e.lasts)
				sim.SetFaults(fakebcc.Faults{})
			case "pause":
				pauses.run(t, e.lasts)
			}
		}()
	}

	// The commands, spread over the first seconds, each stored for sure
	// (retried across NATS restarts), some twice.
	all := append(append([]string(nil), s.running...), s.stopped...)
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	cmdID := func(inst string) string { return "nem-" + strings.TrimPrefix(inst, "i-") }
	publish := func(inst string, withMsgID bool) {
		payload := fmt.Sprintf(`{"instanceId":%q,"commandId":%q,"waitUntilStopped":%t}`, inst, cmdID(inst), s.waiting[inst])
		giveUp := time.Now().Add(60 * time.Second)
		for {
			var opts []jetstream.PublishOpt
			if withMsgID {
				opts = append(opts, jetstream.WithMsgID(cmdID(inst)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := js.Publish(ctx, messages.CommandSubject, []byte(payload), opts...)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(giveUp) {
				t.Errorf("could not publish the command for %s in 60s: %v", inst, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	every := s.publishE / time.Duration(len(all))
	for i, inst := range all {
		publish(inst, true)
		time.Sleep(time.Until(begin.Add(time.Duration(i+1) * every)))
	}
	for _, i := range s.repeats {
		publish(all[i], false) // no Nats-Msg-Id: JetStream stores it again
	}
	chaos.Wait()

	// Heal: faults off, NATS up, every worker alive and thawed.
	sim.SetFaults(fakebcc.Faults{})
	for _, w := range workers {
		w.mu.Lock()
		if w.frozen {
			w.p.Cmd.Process.Signal(syscall.SIGCONT)
			w.frozen = false
		}
		w.mu.Unlock()
	}

	// Wait until every command has a stored result and the consumer holds
	// nothing, then check.
	stored := map[string][]messages.ResultEvent{}
	deadline := time.Now().Add(90 * time.Second)
	var ci *jetstream.ConsumerInfo
	for {
		stored = readStoredResults(t, js)
		if c, err := js.Consumer(context.Background(), "BCCSTOP_COMMANDS_V2", "bccstop-worker"); err == nil {
			ci, _ = c.Info(context.Background())
		}
		if len(stored) >= len(all) && ci != nil && ci.NumAckPending == 0 && ci.NumPending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopResumer()
	<-resumerDone

	var violations []string
	violate := func(format string, a ...any) { violations = append(violations, fmt.Sprintf(format, a...)) }
	applied := sim.AppliedStops()
	wasStopped := map[string]bool{}
	for _, id := range s.stopped {
		wasStopped[id] = true
	}
	counts := map[messages.Outcome]int{}
	reconciled := 0
	repeated := map[string]int{} // instance → times its command was published again
	for _, i := range s.repeats {
		repeated[all[i]]++
	}
	// apart: each stored result came more than the ledger's TTL after the
	// one before it.
	apart := func(rs []messages.ResultEvent) bool {
		for i := 1; i < len(rs); i++ {
			if rs[i].Time.Sub(rs[i-1].Time) <= nemesisLedgerTTL {
				return false
			}
		}
		return true
	}
	for _, inst := range all {
		id := cmdID(inst)
		rs := stored[id]
		switch {
		case len(rs) == 0:
			violate("%s: no result (lost)", id)
			continue
		case len(rs) > 1 && len(rs) <= 1+repeated[inst] && apart(rs):
			// A repeat held behind a pause past the ledger's TTL is a new
			// command (its instance is stopped by then: forbidden), and so
			// is a second repeat past the TTL of that one's result; within
			// the TTL a repeat is answered with the outcome before it.
			// Either way, one stop took effect (checked below).
		case len(rs) > 1:
			var each []string
			for _, r := range rs {
				each = append(each, fmt.Sprintf("%s %s at %.2fs by %s, %d attempts", r.ID, r.Data.Outcome, r.Time.Sub(begin).Seconds(), r.Source, r.Data.Attempts))
			}
			violate("%s: %d stored results (published %d times): %s", id, len(rs), 1+repeated[inst], strings.Join(each, "; "))
		}
		d := rs[0].Data
		counts[d.Outcome]++
		if d.Reconciled {
			reconciled++
		}
		for _, p := range live.ByID(id) {
			if !slices.ContainsFunc(rs, func(r messages.ResultEvent) bool { return r.ID == p.Event.ID }) {
				violate("%s: published %s (%s) and stored %s (%s): two outcomes", id, p.Event.Data.Outcome, p.Event.ID, d.Outcome, rs[0].ID)
			}
		}
		if n := applied[inst]; n > 1 {
			violate("%s: %d stops took effect", inst, n)
		}
		switch {
		case d.Outcome == messages.Failed && applied[inst] > 0:
			violate("%s: failed %s (%s), but a stop of ours took effect", id, d.Code, d.Message)
		case d.Outcome == messages.Forbidden && !wasStopped[inst]:
			violate("%s: forbidden, but the instance was Running and only we stopped it", id)
		case d.Outcome == messages.Succeeded && applied[inst] == 0 && !(wasStopped[inst] && d.Reconciled):
			// (An instance stopped beforehand may be reported succeeded,
			// reconciled, when an attempt's fate was unknown: the contract
			// allows it, since the worker cannot tell who stopped it.)
			violate("%s: succeeded, but no stop took effect", id)
		case d.Outcome == messages.Rejected:
			violate("%s: rejected %s: %s", id, d.Code, d.Message)
		case s.waiting[inst] && d.Outcome == messages.Succeeded && d.InstanceStatus != "Stopped":
			violate("%s: succeeded waiting until Stopped, but the instance is %q", id, d.InstanceStatus)
		}
	}
	violations = append(violations, pauses.violations...)
	violations = append(violations, resumer.violations...)
	spans := nemesisSpans(t, js)
	if len(spans) == 0 {
		violate("no pause was announced")
	}
	trips := 0
	for id, sp := range spans {
		if sp.trip {
			trips++
		}
		if sp.opened == 0 || sp.resumed != 1 {
			violate("pause %s: %d paused or tripped and %d resumed events, want at least one and exactly one", id, sp.opened, sp.resumed)
		}
		if sp.trip && sp.tripped != 1 {
			violate("pause %s: the budget tripped, and %d tripped events, want exactly one", id, sp.tripped)
		}
		if sp.pausedBy["operator-a"] && sp.resumed > 0 && sp.resumedBy != "operator-a" {
			violate("pause %s: operator A's, resumed by %q", id, sp.resumedBy)
		}
		if resumer.resumed[id] && (!sp.trip || sp.resumedBy != "operator-c") {
			violate("pause %s: resumed by operator C, but it is no budget trip (%+v)", id, sp)
		}
	}
	takenOver := ""
	if pauses.tookOver != "" {
		takenOver = " (one taken over by A)"
		if !spans[pauses.tookOver].trip {
			violate("operator A took over %s, which was no budget trip", pauses.tookOver)
		}
	}
	// The blast-radius budget, as the simulator saw it: no window of the
	// budget's length holds more than N first stop calls (see
	// nemesisBudgetWindow for why none is allowed more).
	peakStops, peakAt := peakWithin(slices.Collect(maps.Values(firstStops(sim.History()))), nemesisBudgetWindow)
	if peakStops > budget {
		violate("%d first stop calls within %s from %s, want at most %d (BCCSTOP_MAX_STOPS=%d/%s)", peakStops, nemesisBudgetWindow,
			peakAt.Sub(begin).Round(10*time.Millisecond), budget, budget, nemesisBudgetWindow)
	}
	if ci == nil || ci.NumAckPending != 0 || ci.NumPending != 0 {
		violate("consumer not settled: %+v", ci)
	}
	// The fleet's API rate, as the simulator counted it: every call it let
	// in, stops and describes, those answered with an injected fault too.
	peakRate := sim.PeakRate(time.Second)
	if peakRate > nemesisRatePeak {
		violate("%d API calls in one sliding second, want at most %d (BCCSTOP_RATE_LIMIT=%d, +10%%)", peakRate, nemesisRatePeak, nemesisRate)
	}
	var evs []string
	for _, e := range s.events {
		evs = append(evs, e.String())
	}
	line := fmt.Sprintf("nemesis seed=%d workers=%d commands=%d events=[%s] results: %d succeeded (%d reconciled), %d forbidden, %d failed, %d rejected; rate: at most %d/s of %d; budget: at most %d stops in %s of %d, %d trips%s; %d violations in %s",
		seed, s.workers, len(all), strings.Join(evs, ", "), counts[messages.Succeeded], reconciled, counts[messages.Forbidden],
		counts[messages.Failed], counts[messages.Rejected], peakRate, nemesisRate, peakStops, nemesisBudgetWindow, budget, trips, takenOver, len(violations), time.Since(begin).Round(100*time.Millisecond))
	if len(violations) > 0 {
		if len(violations) > 20 {
			violations = append(violations[:20], fmt.Sprintf("… and %d more", len(violations)-20))
		}
		t.Errorf("%s\n  %s", line, strings.Join(violations, "\n  "))
		for i, w := range workers {
			w.mu.Lock()
			t.Logf("worker %d logs:\n%s", i, tail(strings.Join(append(w.logs, w.p.Stderr.String()), "\n--- restarted ---\n"), logTail))
			w.mu.Unlock()
		}
	}
	for _, w := range workers {
		w.mu.Lock()
		w.p.Signal(syscall.SIGTERM, 20*time.Second)
		w.mu.Unlock()
	}
	return line
}

// waitForStreams waits until a worker has provisioned the streams.
func waitForStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, "no worker provisioned the streams", func() bool {
		_, err1 := js.Stream(context.Background(), "BCCSTOP_COMMANDS_V2")
		_, err2 := js.Stream(context.Background(), "BCCSTOP_RESULTS")
		return err1 == nil && err2 == nil
	})
}

// readStoredResults reads the whole results stream, by command identity.
func readStoredResults(t *testing.T, js jetstream.JetStream) map[string][]messages.ResultEvent {
	t.Helper()
	out := map[string][]messages.ResultEvent{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "BCCSTOP_RESULTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return out
	}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return out
		}
		n := 0
		var last jetstream.Msg
		for m := range batch.Messages() {
			n++
			last = m
			var ev messages.ResultEvent
			if json.Unmarshal(m.Data(), &ev) == nil {
				out[ev.Data.CommandID] = append(out[ev.Data.CommandID], ev)
			}
		}
		if n == 0 {
			return out
		}
		if meta, err := last.Metadata(); err != nil || meta.NumPending == 0 {
			return out
		}
	}
}

// nemesisLedgerTTL is the workers' BCCSTOP_LEDGER_TTL: shorter than the
// fleet pause of every schedule.
const nemesisLedgerTTL = 10 * time.Second

// nemesisPauses plays two operators: A pauses the fleet for longer than the
// ledger's TTL; meanwhile B pauses with a shorter deadline, which must be
// refused (a pause never silently replaces another); then A resumes. NATS
// may be down meanwhile: each command is tried until NATS answers.
//
// The fleet may have paused itself for the blast-radius budget when A
// comes: A's pause is refused (exit 7), and A, seeing in bccstop status that
// what holds the fleet is an automatic budget trip, takes it over with
// --force and A's terms (an incident's pause must hold whatever operator C
// decides about the budget). The span keeps the trip's id and ends with A's
// resume. A does so in turn with operator C (ops), whose look at the trip
// and resume of it would otherwise race A's takeover.
type nemesisPauses struct {
	url        string
	ops        *sync.Mutex
	mu         sync.Mutex
	tookOver   string // the trip A took over, if any
	violations []string
}

func (n *nemesisPauses) run(t *testing.T, lasts time.Duration) {
	cli := func(args ...string) int {
		_, code, _ := nemesisCLI(t, n.url, args...)
		return code
	}
	begin := time.Now()
	pauseA := []string{"pause", "--reason", "nemesis: operator A", "--requested-by", "operator-a"}
	n.ops.Lock()
	code := cli(pauseA...)
	if code == 7 {
		switch st, err := nemesisFleetStatus(t, n.url); {
		case err != nil:
			n.violate("operator A, refused, could not read the status: %v", err)
		case st.Paused && st.PausedBy == "operator-a":
			code = 0 // an earlier try paused, and its answer was lost
		case st.Paused && st.Automatic && strings.HasPrefix(st.Reason, "blast-radius budget"):
			if code = cli(append(pauseA, "--force")...); code == 0 {
				n.mu.Lock()
				n.tookOver = st.PauseID
				n.mu.Unlock()
			}
		default:
			n.violate("operator A's pause refused, but the fleet is held by %+v, not a budget trip", st)
		}
	}
	n.ops.Unlock()
	if code != 0 {
		n.violate("operator A could not pause: exit %d", code)
		return
	}
	time.Sleep(2 * time.Second)
	if code := cli("pause", "--for", "2s", "--reason", "nemesis: operator B", "--requested-by", "operator-b"); code != 7 {
		n.violate("operator B's shorter pause over A's: exit %d, want 7 (refused)", code)
	}
	time.Sleep(time.Until(begin.Add(lasts)))
	if code := cli("resume", "--reason", "nemesis: A is done", "--requested-by", "operator-a"); code != 0 {
		n.violate("operator A could not resume: exit %d", code)
	}
}

func (n *nemesisPauses) violate(format string, a ...any) {
	n.mu.Lock()
	n.violations = append(n.violations, fmt.Sprintf(format, a...))
	n.mu.Unlock()
}
