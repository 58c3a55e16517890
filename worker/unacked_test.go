package worker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/natsserver"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// lossyAckServer is a NATS server on which the user "lossy" may do
// anything but acknowledge a JetStream message (its acks are refused by
// the server, as if they were lost on the way), and "plain" anything.
// It returns both users' URLs.
func lossyAckServer(t *testing.T) (lossy, plain string) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "lossy.conf")
	err := os.WriteFile(conf, []byte(`authorization {
  users: [
    {user: lossy, password: lossy, permissions: {publish: {deny: ["$JS.ACK.>"]}}}
    {user: plain, password: plain}
  ]
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir(), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	host := strings.TrimPrefix(s.ClientURL(), "nats://")
	return "nats://lossy:lossy@" + host, "nats://plain:plain@" + host
}

// TestConcludedCommandWhoseAckWasLostIsNotStoppedAgainAfterTheTTL: a
// command is concluded (stopped, its result stored) but its
// acknowledgement never reaches JetStream, and the fleet is away for
// longer than the ledger's TTL (a long pause, an outage). The redelivery
// of that very message must be answered from what the ledger knows: no
// second stop call, no second stored result.
func TestConcludedCommandWhoseAckWasLostIsNotStoppedAgainAfterTheTTL(t *testing.T) {
	lossy, plain := lossyAckServer(t)
	h := &harness{t: t, url: lossy, logs: &testenv.Buffer{}}
	h.nc, h.js = testenv.Connect(t, plain)
	h.sim, h.simURL = testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	ttl := worker.MinLedgerTTL
	withTTL := func(o *worker.Options) { o.LedgerTTL = ttl; o.ResultsMaxAge = time.Hour }

	w0 := h.startWorker(withTTL)
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	h.sim.SetStatus("i-unacked", fakebcc.Running)
	h.publish(`{"instanceId":"i-unacked","commandId":"unacked-1"}`, nil)
	if d := h.wait("unacked-1")["unacked-1"].Event.Data; d.Outcome != messages.Succeeded {
		t.Fatalf("first result: %+v", d)
	}
	h.stop() // before AckWait: the message is delivered again to the next worker
	_ = w0

	// Away for longer than the TTL (and the results stream's duplicate
	// window, which is the TTL too).
	time.Sleep(ttl + 3*time.Second)

	h.url = plain
	h.startWorker(withTTL)
	testenv.Eventually(t, 15*time.Second, "the command acknowledged", func() bool {
		info, err := h.js.Consumer(t.Context(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
		if err != nil {
			return false
		}
		ci, err := info.Info(t.Context())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 && ci.NumRedelivered == 0
	})
	if n := h.sim.StopCalls("i-unacked"); n != 1 {
		t.Errorf("%d stop calls for a command concluded once, want 1", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n := h.results.Count("unacked-1"); n != 1 {
		for _, r := range h.results.All() {
			t.Logf("stored: %s %s attempts %d", r.Event.Data.CommandID, r.Event.Data.Outcome, r.Event.Data.Attempts)
		}
		t.Errorf("%d results stored for one command, want 1", n)
	}
}
