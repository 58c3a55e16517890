package tests

// Issue 19: the fleet's guardrails through the binary: a fleet-wide API
// rate, a blast-radius budget that pauses the fleet by itself, holds that
// expire, a cap on targets.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// guardFleet is a NATS server, the simulator and n workers.
type guardFleet struct {
	url     string
	sim     *fakebcc.Server
	simURL  string
	workers []*proc
	// env is the environment of worker i, serving on addr.
	env func(i int, addr string) []string
}

func startGuardFleet(t *testing.T, n int, sim fakebcc.Options, extra ...string) *guardFleet {
	t.Helper()
	srv := testenv.NATS(t)
	s, simURL := testenv.Simulator(t, sim)
	f := &guardFleet{url: srv.ClientURL(), sim: s, simURL: simURL}
	f.env = func(i int, addr string) []string {
		return workerEnv(t, f.url, simURL, addr, append([]string{"BCCSTOP_WORKER_ID=w" + fmt.Sprint(i), "BCCSTOP_LOG_LEVEL=warn"}, extra...)...)
	}
	var addrs []string
	for i := range n {
		addrs = append(addrs, freeAddr(t))
		f.workers = append(f.workers, start(t, f.env(i, addrs[i]), "worker"))
	}
	for _, addr := range addrs {
		waitHTTP(t, "http://"+addr+"/readyz", 200, 30*time.Second)
	}
	_, js := testenv.Connect(t, f.url)
	waitForStreams(t, js)
	return f
}

// publishCommands stores n commands for fresh Running instances.
func (f *guardFleet) publishCommands(t *testing.T, prefix string, n int, extra string) []string {
	t.Helper()
	_, js := testenv.Connect(t, f.url)
	var ids []string
	for i := range n {
		inst := fmt.Sprintf("i-%s%05d", prefix, i)
		f.sim.SetStatus(inst, fakebcc.Running)
		id := prefix + "-" + fmt.Sprint(i)
		ids = append(ids, id)
		if _, err := js.PublishAsync(messages.CommandSubject, []byte(fmt.Sprintf(`{"instanceId":%q,"commandId":%q%s}`, inst, id, extra))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("commands not stored")
	}
	return ids
}

// TestFleetWideRate: BCCSTOP_RATE_LIMIT is the calls per second of the
// whole fleet: with 1, 3 and 5 workers under load for 30 s, no sliding
// second at the simulator holds more than 40 calls (+10%), and a worker
// killed mid-run does not let the others exceed it.
func TestFleetWideRate(t *testing.T) {
	for _, n := range []int{1, 3, 5} {
		t.Run(fmt.Sprintf("%d workers", n), func(t *testing.T) {
			t.Parallel()
			f := startGuardFleet(t, n, fakebcc.Options{StopDuration: time.Hour, Latency: 5 * time.Millisecond},
				"BCCSTOP_RATE_LIMIT=40", "BCCSTOP_CONCURRENCY=16")
			begin := time.Now()
			f.publishCommands(t, fmt.Sprintf("rate%d", n), 40*32, "")
			if n == 3 {
				time.Sleep(10 * time.Second)
				f.workers[0].Cmd.Process.Kill() // its registration expires; the others take its share
			}
			time.Sleep(time.Until(begin.Add(30 * time.Second)))
			peak := f.sim.PeakRate(time.Second)
			calls := f.sim.Stats().StopCalls
			t.Logf("%d workers: %d calls in 30s, at most %d in any sliding second", n, calls, peak)
			if peak > 44 {
				t.Errorf("%d calls in one sliding second, want at most 40 (+10%%)", peak)
			}
			if calls < 20*25 {
				t.Errorf("only %d calls in 30s: the fleet is far below its rate", calls)
			}
		})
	}
}

// TestThrottlingSlowsTheWholeFleet: a burst of 429s, each answered to one
// worker or another, slows all three: the fleet's rate drops to about half
// at once, and recovers gradually.
func TestThrottlingSlowsTheWholeFleet(t *testing.T) {
	t.Parallel()
	f := startGuardFleet(t, 3, fakebcc.Options{StopDuration: time.Hour, Latency: 5 * time.Millisecond},
		"BCCSTOP_RATE_LIMIT=40", "BCCSTOP_CONCURRENCY=16", "BCCSTOP_BACKOFF=100ms")
	f.publishCommands(t, "thr", 40*25, "")
	time.Sleep(5 * time.Second) // all three at their share
	f.sim.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{429}})
	time.Sleep(300 * time.Millisecond)
	f.sim.SetFaults(fakebcc.Faults{})
	healed := time.Now()
	time.Sleep(3 * time.Second)
	after := 0
	for _, c := range f.sim.History() {
		if c.Op == fakebcc.OpStop && c.At.After(healed.Add(500*time.Millisecond)) && c.At.Before(healed.Add(2500*time.Millisecond)) {
			after++
		}
	}
	t.Logf("%d calls in the 2 s after the 429s (the fleet's rate is 40/s)", after)
	if after > 2*26 {
		t.Errorf("%d calls in 2s after a burst of 429s: the fleet did not slow down (one worker alone would leave 2/3 of the rate)", after)
	}
	if after == 0 {
		t.Errorf("no call at all after the 429s")
	}
}

// TestBudgetPausesTheFleet: BCCSTOP_MAX_STOPS=50/1m with 5 workers and 300
// commands: exactly 50 stop calls reach the simulator, the fleet pauses
// itself with the reason, one tripped event is published, 250 commands
// wait; after bccstop resume once the window has moved on, the next 50.
func TestBudgetPausesTheFleet(t *testing.T) {
	t.Parallel()
	f := startGuardFleet(t, 5, fakebcc.Options{StopDuration: time.Hour}, "BCCSTOP_MAX_STOPS=50/1m", "BCCSTOP_CONCURRENCY=64", "BCCSTOP_RATE_LIMIT=0")
	_, js := testenv.Connect(t, f.url)
	cli := cliAt(t, f.url)
	f.publishCommands(t, "budget", 300, "")
	first := time.Now()
	testenv.Eventually(t, 30*time.Second, "the fleet did not pause itself", func() bool {
		out, _ := cli("status")
		return strings.Contains(out, "PAUSED") && strings.Contains(out, "blast-radius budget: 50 stops in 1m reached")
	})
	time.Sleep(3 * time.Second) // nothing more may happen
	if n := f.sim.Stats().StopCalls; n != 50 {
		t.Fatalf("%d stop calls, want exactly 50", n)
	}
	out, _ := cli("status", "--output", "json")
	var st struct {
		Waiting, InFlight int
		Budget            string
		BudgetUsed        int
		PauseAutomatic    bool
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if st.Waiting+st.InFlight != 250 || st.Budget != "50/1m" || st.BudgetUsed != 50 || !st.PauseAutomatic {
		t.Errorf("status: %+v\n%s", st, out)
	}
	tripped := 0
	for _, ev := range controlEvents(t, js) {
		if ev.Data.Action == messages.ControlTripped {
			tripped++
			if ev.Data.Budget != "50/1m" || ev.Data.BudgetUsed != 50 || !ev.Data.Automatic {
				t.Errorf("tripped event: %+v", ev.Data)
			}
		}
	}
	if tripped != 1 {
		t.Errorf("%d tripped events, want 1", tripped)
	}
	// Once the window has moved past the first 50 (it is counted in slots
	// of D/60, with a margin for the workers' clocks), a resume lets 50
	// more go.
	time.Sleep(time.Until(first.Add(70 * time.Second)))
	out, code := cli("resume", "--reason", "budget reviewed")
	if code != 0 || !strings.Contains(out, "50 left") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	testenv.Eventually(t, 30*time.Second, "the fleet did not pause itself again", func() bool { return f.sim.Stats().StopCalls >= 100 })
	time.Sleep(3 * time.Second)
	if n := f.sim.Stats().StopCalls; n != 100 {
		t.Errorf("%d stop calls after the resume, want 100", n)
	}
}

// TestHolds: a hold rejects commands for the instance on every worker
// within a second of bccstop hold returning, with who, why and until when;
// it ends by itself, or early with release; a worker started after the
// hold sees it; each change is a control event.
func TestHolds(t *testing.T) {
	t.Parallel()
	f := startGuardFleet(t, 2, fakebcc.Options{StopDuration: time.Hour})
	f.sim.Seed(fakebcc.Running, "i-held1", "i-held2", "i-held3")
	_, js := testenv.Connect(t, f.url)
	results := testenv.ReadResults(t, js, layout.ResultsStream)
	cli := cliAt(t, f.url)
	publish := func(id, inst string) {
		t.Helper()
		if _, err := js.Publish(context.Background(), messages.CommandSubject, []byte(fmt.Sprintf(`{"instanceId":%q,"commandId":%q}`, inst, id))); err != nil {
			t.Fatal(err)
		}
	}
	out, code := cli("hold", "i-held1", "i-held2", "--for", "4s", "--reason", "CHG-12 patching", "--requested-by", "carol")
	if code != 0 {
		t.Fatalf("hold: exit %d\n%s", code, out)
	}
	var ids []string
	for i := range 6 { // on both workers
		ids = append(ids, fmt.Sprintf("held-a%d", i))
		publish(ids[i], "i-held1")
	}
	for _, r := range results.Wait(t, 15*time.Second, ids...) {
		d := r.Event.Data
		if d.Outcome != messages.Rejected || d.Code != messages.CodeInstanceHeld || !strings.Contains(d.Message, "carol") ||
			!strings.Contains(d.Message, "CHG-12 patching") || !strings.Contains(d.Message, "until") {
			t.Errorf("%s: %s %s %q", d.CommandID, d.Outcome, d.Code, d.Message)
		}
	}
	if out, _ := cli("holds"); !strings.Contains(out, "i-held1") || !strings.Contains(out, "carol") {
		t.Errorf("holds:\n%s", out)
	}
	if out, code := cli("hold", "i-held1", "--for", "1h", "--reason", "mine now", "--requested-by", "dave"); code != 7 || !strings.Contains(out, "carol") {
		t.Errorf("hold over another's: exit %d\n%s", code, out)
	}
	// A worker started after the hold sees it; the first two go away.
	lateAddr := freeAddr(t)
	start(t, f.env(9, lateAddr), "worker")
	waitHTTP(t, "http://"+lateAddr+"/readyz", 200, 30*time.Second)
	for _, w := range f.workers {
		w.Signal(syscall.SIGTERM, 20*time.Second)
	}
	publish("held-late", "i-held2")
	if d := results.Wait(t, 20*time.Second, "held-late")["held-late"].Event.Data; d.Code != messages.CodeInstanceHeld {
		t.Errorf("held-late: %s %s %q", d.Outcome, d.Code, d.Message)
	}
	// It runs out: the next command stops the instance.
	time.Sleep(5 * time.Second)
	publish("held-after", "i-held1")
	if d := results.Wait(t, 20*time.Second, "held-after")["held-after"].Event.Data; d.Outcome != messages.Succeeded {
		t.Errorf("after the hold ran out: %s %s %q", d.Outcome, d.Code, d.Message)
	}
	// Release ends a hold early.
	if out, code := cli("hold", "i-held3", "--for", "1h", "--reason", "until further notice"); code != 0 {
		t.Fatalf("hold: exit %d\n%s", code, out)
	}
	// The holder may change its own hold, even shorten it, and is told
	// what it replaced.
	if out, code := cli("hold", "i-held3", "--for", "30m", "--reason", "half an hour will do"); code != 0 ||
		!strings.Contains(out, `i-held3: replaces the hold by `) || !strings.Contains(out, `"until further notice"`) || !strings.Contains(out, "shortened by 30m") {
		t.Errorf("hold over one's own: exit %d\n%s", code, out)
	}
	if out, code := cli("release", "i-held3", "i-not-held"); code != 6 || !strings.Contains(out, "released 1 instance") || !strings.Contains(out, "not held: i-not-held") {
		t.Errorf("release: exit %d\n%s", code, out)
	}
	publish("held-released", "i-held3")
	if d := results.Wait(t, 20*time.Second, "held-released")["held-released"].Event.Data; d.Outcome != messages.Succeeded {
		t.Errorf("after release: %s %s %q", d.Outcome, d.Code, d.Message)
	}
	var held, released int
	testenv.Eventually(t, 10*time.Second, "hold changes were not all announced", func() bool {
		held, released = 0, 0
		for _, ev := range controlEvents(t, js) {
			switch ev.Data.Action {
			case messages.ControlHeld:
				held++
			case messages.ControlReleased:
				released++
			}
		}
		return held >= 4 && released >= 3
	})
	// Held: i-held1, i-held2, i-held3 and its replacement; released: the
	// two that ran out and the one released by hand (a replaced hold is
	// not released: the new one says it replaced it).
	if held != 4 || released != 3 {
		t.Errorf("%d held and %d released events, want 4 and 3", held, released)
	}
}

// TestMaxTargets: more targets than --max-targets (or
// BCCSTOP_MAX_TARGETS) resolve: nothing is published, exit 2, with the
// count and the tags; the dry run shows the count against the cap.
func TestMaxTargets(t *testing.T) {
	f := newStopFixture(t)
	for i := range 12 {
		id := fmt.Sprintf("i-cap%02d", i)
		f.sim.SetStatus(id, fakebcc.Running)
		if err := f.sim.SetTags(id, map[string]string{"env": "staging"}); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"NATS_URL=" + f.url, "BCE_ACCESS_KEY_ID=" + testenv.Credentials.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + testenv.Credentials.SecretAccessKey, "BCC_ENDPOINT=" + f.simURL}
	run := func(extra []string, args ...string) (string, int) {
		p := start(t, append(env, extra...), args...)
		code := p.Wait(30 * time.Second)
		return p.Stdout.String() + p.Stderr.String(), code
	}
	out, code := run(nil, "stop", "--tag", "env=staging", "i-cap99", "--max-targets", "10")
	if code != 2 || !strings.Contains(out, "13 targets resolve") || !strings.Contains(out, "--tag env=staging") || !strings.Contains(out, "cap of 10") {
		t.Errorf("over --max-targets: exit %d\n%s", code, out)
	}
	out, code = run([]string{"BCCSTOP_MAX_TARGETS=5"}, "stop", "--tag", "env=staging")
	if code != 2 || !strings.Contains(out, "12 targets resolve") {
		t.Errorf("over BCCSTOP_MAX_TARGETS: exit %d\n%s", code, out)
	}
	out, code = run([]string{"BCCSTOP_MAX_TARGETS=5"}, "stop", "--tag", "env=staging", "--max-targets", "20", "--dry-run")
	if code != 0 || !strings.Contains(out, "12 of at most 20 targets") {
		t.Errorf("dry run under the cap: exit %d\n%s", code, out)
	}
	if n := f.sim.Stats().StopCalls; n != 0 {
		t.Errorf("%d stop calls: something was published", n)
	}
}
