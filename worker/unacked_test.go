package worker_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/layout"
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

// TestResultStoredBeforeATakeoverIsNotStoredTwice: a delivery stops the
// instance and stores its result, but loses its ledger record to another
// delivery that took the command over (its ack wait ran out meanwhile);
// the taker finds the instance Stopping and decides the same result, which
// the results stream drops as a duplicate. A repeat of the command later
// than the ledger's TTL after the first copy was stored, but within the
// TTL of the taker's record, must not store that result a second time (the
// stream's duplicate window, which counts from the first copy, is over).
// Seen in make soak (seed 46): two copies of one result event.
func TestResultStoredBeforeATakeoverIsNotStoredTwice(t *testing.T) {
	ttl := worker.MinLedgerTTL
	h := startHarness(t, fastOptions, func(o *worker.Options) { o.LedgerTTL = ttl; o.ResultsMaxAge = time.Hour })
	h.sim.SetStatus("i-taken", fakebcc.Running)
	const cmd = `{"instanceId":"i-taken","commandId":"taken-1"}`
	h.publish(cmd, nil)
	first := h.wait("taken-1")["taken-1"].Event
	settled := func() {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, "the command acknowledged", func() bool {
			c, err := h.js.Consumer(t.Context(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
			if err != nil {
				return false
			}
			ci, err := c.Info(t.Context())
			return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
		})
	}
	settled()

	// As the first delivery's record would be had it lost the
	// compare-and-set: still attempting, its call made, its owner gone.
	kv, err := h.js.KeyValue(t.Context(), "bccstop-ledger")
	if err != nil {
		t.Fatal(err)
	}
	key := layout.LedgerKey("taken-1")
	kve, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	raw := kve.Value()
	at := bytes.IndexByte(raw, '{')
	var entry map[string]any
	if err := json.Unmarshal(raw[at:], &entry); err != nil {
		t.Fatal(err)
	}
	entry["state"], entry["owner"], entry["calls"], entry["unsure"] = "attempting", "bccstop/gone", 1, true
	entry["updated"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	delete(entry, "subject")
	delete(entry, "event")
	delete(entry, "settled")
	rewritten, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(t.Context(), key, append(append([]byte(nil), raw[:at]...), rewritten...), kve.Revision()); err != nil {
		t.Fatal(err)
	}

	// The takeover, some seconds after the first copy was stored.
	time.Sleep(4 * time.Second)
	h.publish(cmd, nil)
	settled()
	// A repeat after the first copy's duplicate window, within the
	// takeover record's TTL.
	time.Sleep(time.Until(first.Time.Add(ttl + 1500*time.Millisecond)))
	h.publish(cmd, nil)
	settled()
	time.Sleep(500 * time.Millisecond)

	copies := 0
	for _, r := range h.results.All() {
		t.Logf("stored: %s %s %s attempts %d at %s", r.Event.ID, r.Event.Data.CommandID, r.Event.Data.Outcome, r.Event.Data.Attempts, r.Event.Time.Format(time.RFC3339Nano))
		if r.Event.ID == first.ID {
			copies++
		}
	}
	if copies != 1 {
		t.Errorf("the result event %s is stored %d times, want once", first.ID, copies)
	}
	// The last repeat came after the ledger's TTL counted from the first
	// copy: a new command, answered forbidden (the instance is stopping).
	if all := h.results.All(); len(all) != 2 || all[1].Event.Data.Outcome != messages.Forbidden {
		t.Errorf("%d results stored, want the first and the late repeat's forbidden", len(all))
	}
}
