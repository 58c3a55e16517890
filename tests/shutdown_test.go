package tests

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestSIGTERMFinishesInFlightCommands: commands in flight when SIGTERM
// arrives finish, their results are stored and they are acked before exit 0.
func TestSIGTERMFinishesInFlightCommands(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: time.Second})
	f := newFleet(sim, "drain", 20)
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=20", "BCCSTOP_SHUTDOWN_TIMEOUT=10s"), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	f.publish(t, js, 1)
	for sim.Stats().InFlight < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	if code := w.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// Every result was stored before the process exited.
	got := results.Wait(t, 2*time.Second, f.ids...)
	for _, id := range f.ids {
		if got[id].Event.Data.Outcome != messages.Succeeded {
			t.Errorf("%s: %+v", id, got[id].Event.Data)
		}
	}
	cons, _ := js.Consumer(t.Context(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
	info, _ := cons.Info(t.Context())
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after shutdown: %d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
	}
}

// TestShutdownTimeoutLeavesTheRestForAnotherWorker: calls slower than the
// shutdown timeout are cut short and not acked; another worker finishes them.
func TestShutdownTimeoutLeavesTheRestForAnotherWorker(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: 4 * time.Second})
	f := newFleet(sim, "cut", 10)
	env := workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_SHUTDOWN_TIMEOUT=500ms", "BCCSTOP_ACK_WAIT=2s")
	w := start(t, env, "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, nc)
	f.publish(t, js, 1)
	testenv.Eventually(t, 10*time.Second, "the calls never got in flight", func() bool { return sim.Stats().InFlight >= 10 })
	begin := time.Now()
	if code := w.Signal(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("shutdown took %v with a 500ms timeout", took)
	}
	if !strings.Contains(w.Stderr.String(), "shutdown timeout reached") {
		t.Error("no log line about the shutdown timeout")
	}
	if n := len(results.All()); n != 0 {
		t.Fatalf("%d results from calls that were cut short", n)
	}
	sim.SetLatency(0, 0)
	start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t)), "worker")
	checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
}
