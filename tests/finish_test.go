package tests

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestWaitUntilStoppedThroughTheBinary: 200 instances that stay Stopping
// for 5s, stopped with `bccstop stop --wait-stopped` by workers of 4
// handlers each; the first worker is killed while the commands wait. All
// end succeeded with the instance Stopped within 10s, each stopped once,
// with the audit trail in every result.
func TestWaitUntilStoppedThroughTheBinary(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: 5 * time.Second})
	var ids []string
	for i := range 200 {
		id := fmt.Sprintf("i-ws%03d", i)
		sim.SetStatus(id, fakebcc.Running)
		ids = append(ids, id)
	}
	env := func() []string {
		return workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_CONCURRENCY=4", "BCCSTOP_RATE_LIMIT=0")
	}
	first := start(t, env(), "worker")
	waitOutput(t, first.Stderr, "consuming commands", 15*time.Second)
	second := start(t, env(), "worker")
	waitOutput(t, second.Stderr, "consuming commands", 15*time.Second)

	begin := time.Now()
	cli := start(t, []string{"NATS_URL=" + srv.ClientURL()}, append([]string{"stop", "--wait-stopped", "--batch-id", "waitjob",
		"--reason", "INC-9: isolate", "--requested-by", "incident-bot", "--output", "json", "--timeout", "60s"}, ids...)...)
	testenv.Eventually(t, 10*time.Second, "the stops were not all made", func() bool { return len(sim.AppliedStops()) == 200 })
	first.Signal(syscall.SIGKILL, 5*time.Second) // while every command waits for Stopped
	if code := cli.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(cli.Stderr.String(), 2000))
	}
	took := time.Since(begin)
	n := 0
	for _, line := range lines(cli.Stdout.String()) {
		var ev messages.ResultEvent
		if err := jsonUnmarshal(line, &ev); err != nil {
			t.Fatalf("not a result event: %q", line)
		}
		d := ev.Data
		if d.Outcome != messages.Succeeded || d.InstanceStatus != "Stopped" || d.StoppedAt == "" || d.Reason != "INC-9: isolate" || d.RequestedBy != "incident-bot" {
			t.Errorf("%s: %+v", d.InstanceID, d)
		}
		n++
	}
	if n != 200 {
		t.Errorf("%d results, want 200", n)
	}
	if took > 10*time.Second {
		t.Errorf("200 waits took %v, want at most 10s", took)
	}
	for _, id := range ids {
		if c := sim.StopCalls(id); c != 1 {
			t.Errorf("%s: %d stop calls", id, c)
		}
	}
	st := sim.Stats()
	describes := st.DescribeCalls + st.DescribeBatchCalls
	t.Logf("200 instances Stopping for 5s, waited for by 2 workers of 4 handlers (one killed mid-wait): all Stopped in %v; %d describe calls (%.2f per instance)",
		took.Round(100*time.Millisecond), describes, float64(describes)/200)
	if logs := second.Stderr.String(); !strings.Contains(logs, `"reason":"INC-9: isolate","requested_by":"incident-bot"`) {
		t.Errorf("the surviving worker's log lines lack the audit trail")
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
