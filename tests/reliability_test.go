package tests

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// fleet is a set of instances and one command per instance.
type fleet struct {
	ids      []string // command ids
	instance map[string]string
}

func newFleet(sim *fakebcc.Server, prefix string, n int) fleet {
	f := fleet{instance: map[string]string{}}
	for i := range n {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		inst := "i-" + id
		sim.SetStatus(inst, fakebcc.Running)
		f.ids = append(f.ids, id)
		f.instance[id] = inst
	}
	return f
}

// publish sends every command of the fleet (copies times each, without
// Nats-Msg-Id so JetStream stores every copy).
func (f fleet) publish(t *testing.T, js jetstream.JetStream, copies int) {
	t.Helper()
	var acks []jetstream.PubAckFuture
	for range copies {
		for _, id := range f.ids {
			payload := fmt.Sprintf(`{"instanceId":%q,"commandId":%q}`, f.instance[id], id)
			ack, err := js.PublishMsgAsync(&nats.Msg{Subject: messages.CommandSubject, Data: []byte(payload)})
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, ack)
		}
	}
	for _, a := range acks {
		select {
		case <-a.Ok():
		case err := <-a.Err():
			t.Fatalf("publish: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("publish not acknowledged")
		}
	}
}

// checkExactlyOnce waits for a stored result per command, with the wanted
// outcome, then checks "exactly once" where it can fail: the simulator saw
// exactly one stop take effect per instance, every result published for a
// command (live, repeats included, which the results stream would drop as
// duplicates) is the same event, and the consumer holds nothing. It returns
// how many results were reconciled.
func checkExactlyOnce(t *testing.T, results *testenv.Results, live *testenv.Published, sim *fakebcc.Server, js jetstream.JetStream,
	f fleet, want messages.Outcome) (reconciled int) {
	t.Helper()
	got := results.Wait(t, 60*time.Second, f.ids...)
	settled(t, js)
	applied := sim.AppliedStops()
	for _, id := range f.ids {
		d := got[id].Event.Data
		if d.Outcome != want {
			t.Errorf("%s: outcome %s (%s %s), want %s", id, d.Outcome, d.Code, d.Message, want)
		}
		if d.Reconciled {
			reconciled++
		}
		if n := applied[f.instance[id]]; want == messages.Succeeded && n != 1 {
			t.Errorf("%s: %d stops took effect, want exactly 1", f.instance[id], n)
		}
		for _, p := range live.ByID(id) {
			if p.Event.ID != got[id].Event.ID {
				t.Errorf("%s: published %s and stored %s: two decisions", id, p.Event.Data.Outcome, d.Outcome)
			}
		}
	}
	return reconciled
}

// settled waits until the consumer holds nothing: every command acked or
// terminated, none pending or waiting for a retry.
func settled(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "commands left on the consumer", func() bool {
		cons, err := js.Consumer(context.Background(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// TestKill9MidCallThenRestart: 60 slow calls are in flight when the worker
// is killed with SIGKILL; a new worker finishes them. Every command ends with
// exactly one outcome, all succeeded (stops that went through before the kill
// are reconciled, never reported forbidden).
func TestKill9MidCallThenRestart(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: 1500 * time.Millisecond})
	f := newFleet(sim, "kill", 60)
	env := workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=100", "BCCSTOP_ACK_WAIT=2s")
	first := start(t, env, "worker")
	waitOutput(t, first.Stderr, "consuming commands", 15*time.Second)

	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, nc)
	f.publish(t, js, 1)
	deadline := time.Now().Add(10 * time.Second)
	for sim.Stats().InFlight < 55 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling, bounded by the deadline
	}
	inFlight := sim.Stats().InFlight
	if inFlight < 50 {
		t.Fatalf("only %d calls in flight", inFlight)
	}
	if code := first.Signal(syscall.SIGKILL, 5*time.Second); code != -int(syscall.SIGKILL) {
		t.Fatalf("exit %d", code)
	}
	if n := len(results.All()); n > 0 {
		t.Fatalf("%d results before the kill; the calls were meant to be in flight", n)
	}

	second := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=100", "BCCSTOP_ACK_WAIT=2s"), "worker")
	reconciled := checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	s := sim.Stats()
	t.Logf("kill -9 with %d calls in flight: %d commands, all succeeded, %d reconciled; simulator saw %d stop calls, %d applied, %d describes",
		inFlight, len(f.ids), reconciled, s.StopCalls, s.StopsApplied, s.DescribeCalls)
	if s.StopsApplied != len(f.ids) {
		t.Errorf("%d stops applied, want %d", s.StopsApplied, len(f.ids))
	}
	if code := second.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Errorf("second worker exit %d", code)
	}
}

// TestNATSRestartMidRun: the NATS server is shut down and restarted on the
// same port and store while commands are being handled; nothing is lost.
func TestNATSRestartMidRun(t *testing.T) {
	dir := t.TempDir()
	// Clients reach the server through a proxy, so the address stays the
	// same across the restart and no other process can take it meanwhile.
	proxy := testenv.NewProxy(t)
	srv := testenv.NATSAt(t, dir, 0)
	proxy.SetBackend(srv.Addr().String())
	url := "nats://" + proxy.Addr()
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: 200 * time.Millisecond})
	f := newFleet(sim, "restart", 100)
	addr := freeAddr(t)
	w := start(t, workerEnv(t, url, simURL, addr, "BCCSTOP_CONCURRENCY=16", "BCCSTOP_ACK_WAIT=3s", "BCCSTOP_MAX_DELIVER=20"), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)

	nc, js := testenv.Connect(t, url)
	live := testenv.SubscribeResults(t, nc)
	f.publish(t, js, 1)
	testenv.Eventually(t, 20*time.Second, "the worker did not start calling", func() bool { return sim.Stats().StopCalls >= 20 })
	proxy.SetBackend("")
	srv.Shutdown()
	srv.WaitForShutdown()
	waitHTTP(t, "http://"+addr+"/readyz", 503, 10*time.Second)
	time.Sleep(time.Second) // NATS stays down a while: part of the scenario, not synchronisation
	srv = testenv.NATSAt(t, dir, 0)
	proxy.SetBackend(srv.Addr().String())
	waitHTTP(t, "http://"+addr+"/readyz", 200, 20*time.Second)
	testenv.Eventually(t, 20*time.Second, "the test's connection did not come back", nc.IsConnected)

	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	reconciled := checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	s := sim.Stats()
	t.Logf("NATS restarted mid-run: %d commands, all succeeded once, %d reconciled; %d stop calls, %d applied", len(f.ids), reconciled, s.StopCalls, s.StopsApplied)
	if code := w.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestRandomAPIFaults: 30% of stop calls fail at random (500, 503, or a
// timeout), a third of those after the stop took effect. Every command still
// ends succeeded; an instance that always fails ends as one failed result
// within the backoff budget.
func TestRandomAPIFaults(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	sim.SetFaults(fakebcc.Faults{Rate: 0.3, Kinds: []int{500, 503, fakebcc.Timeout}, AfterApply: 0.33, Hang: 5 * time.Second})
	f := newFleet(sim, "faulty", 200)
	sim.SetStatus("i-always-broken", fakebcc.Running)
	sim.FailInstance("i-always-broken", 500, "InternalError")
	const backoff = "50ms,100ms,200ms"
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=32", "BCCSTOP_MAX_DELIVER=10",
		"BCCSTOP_BACKOFF="+backoff, "BCCSTOP_CALL_TIMEOUT=300ms"), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, nc)

	begin := time.Now()
	if _, err := js.Publish(context.Background(), messages.CommandSubject, []byte(`{"instanceId":"i-always-broken","commandId":"broken"}`)); err != nil {
		t.Fatal(err)
	}
	f.publish(t, js, 1)
	broken := results.Wait(t, 30*time.Second, "broken")["broken"]
	elapsed := time.Since(begin)
	// 10 deliveries: 9 delays of at most 200ms+20% jitter, 10 calls, plus scheduling slack.
	if d := broken.Event.Data; d.Outcome != messages.Failed || d.Code != messages.CodeRetriesExhausted || d.Attempts != 10 || d.HTTPStatus != 500 || d.LastCode != "InternalError" {
		t.Errorf("always-failing instance: %+v", d)
	}
	if elapsed > 8*time.Second {
		t.Errorf("the failed result took %v, more than the backoff budget", elapsed)
	}

	reconciled := checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	for _, p := range live.ByID("broken") {
		if p.Event.ID != broken.Event.ID {
			t.Errorf("always-failing instance: published %s besides the stored %s", p.Event.Data.Outcome, broken.Event.Data.Outcome)
		}
	}
	s := sim.Stats()
	t.Logf("30%% faults: %d commands succeeded (%d reconciled) after %d stop calls with %d injected faults; permanently failing instance: one failed after %d calls in %v",
		len(f.ids), reconciled, s.StopCalls, s.Injected, sim.StopCalls("i-always-broken"), elapsed.Round(time.Millisecond))
	if s.Injected < 30 {
		t.Errorf("only %d faults injected", s.Injected)
	}
}

// TestTwoWorkersSameCommands: two workers share the consumer and every
// command is published twice (as a retrying publisher would); no instance
// is sent to the API twice, and each command has one stored result.
func TestTwoWorkersSameCommands(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: 100 * time.Millisecond})
	f := newFleet(sim, "twice", 100)
	var workers []*proc
	for range 2 {
		w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=20"), "worker")
		waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
		workers = append(workers, w)
	}
	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, nc)
	f.publish(t, js, 2)
	// (checkExactlyOnce waits until the second copies are answered too.)
	checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	twice := 0
	for inst, n := range sim.StopCallsByInstance() {
		if n != 1 {
			t.Errorf("%s: %d stop calls", inst, n)
			twice++
		}
	}
	handled := 0
	for _, w := range workers {
		handled += strings.Count(w.Stderr.String(), `"msg":"command finished"`)
	}
	t.Logf("2 workers, %d commands published twice: %d stop calls, %d instances called twice, %d first decisions logged", len(f.ids), sim.Stats().StopCalls, twice, handled)
	for _, w := range workers {
		if code := w.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
}

// TestRateLimitIsSharedByInFlightCommands: with BCCSTOP_RATE_LIMIT=20 and a
// burst of 1, 20 commands handled 20 at a time still reach the API at 20/s.
func TestRateLimitIsSharedByInFlightCommands(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	f := newFleet(sim, "limited", 21)
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=32", "BCCSTOP_RATE_LIMIT=20"), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, nc)
	begin := time.Now()
	f.publish(t, js, 1)
	checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	// 21 calls at 20/s with a burst of 1: at least 20 gaps of 50ms.
	if took := time.Since(begin); took < 950*time.Millisecond {
		t.Errorf("21 calls took %v; the limiter did not hold them to 20/s", took)
	}
}
