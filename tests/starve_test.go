package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestNoCommandDroppedWhenStarved: a worker on a loaded machine (CPU hogs
// beyond the cores) is frozen while it waits for commands, longer than its
// pull heartbeats, then thawed into a burst its rate-limited handlers cannot
// take at once, round after round. With nats.go's Consumer.Messages this
// dropped commands: the late timers made the client reset its pull count
// and ask for a full batch while the server still held the old request, and
// the channel overflowed ("slow consumer, messages dropped"); each dropped
// command came back only after the ack wait. The test asserts no slow
// consumer event (metric and log), and that every command was handled on
// its first delivery: a dropped or handed-back command would need a second.
//
// BCCSTOP_STARVE_BINARY runs the same scenario against another build of
// bccstop (to compare with an older version by hand).
func TestNoCommandDroppedWhenStarved(t *testing.T) {
	bin := binary
	if b := os.Getenv("BCCSTOP_STARVE_BINARY"); b != "" {
		bin = b
	}
	const (
		rounds   = 4
		perRound = 12
		ackWait  = 60 * time.Second
	)
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, AutoCreate: true})
	addr := freeAddr(t)
	p := startBinary(t, bin, workerEnv(t, srv.ClientURL(), simURL, addr, "BCCSTOP_CONCURRENCY=4", "BCCSTOP_RATE_LIMIT=8",
		"BCCSTOP_ACK_WAIT="+ackWait.String()), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)

	hogs := 8
	if n, err := strconv.Atoi(os.Getenv("BCCSTOP_STARVE_HOGS")); err == nil {
		hogs = n
	}
	for range hogs {
		hog := exec.Command("sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hog.Process.Kill(); hog.Wait() })
	}

	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	begin := time.Now()
	var ids []string
	for round := range rounds {
		p.Cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(2500 * time.Millisecond)
		p.Cmd.Process.Signal(syscall.SIGCONT)
		time.Sleep(time.Duration(round*20) * time.Millisecond)
		for i := range perRound {
			id := fmt.Sprintf("starve-%d-%02d", round, i)
			ids = append(ids, id)
			payload := fmt.Sprintf(`{"instanceId":"i-starve%d%02d","commandId":%q}`, round, i, id)
			if _, err := js.PublishMsgAsync(&nats.Msg{Subject: messages.CommandSubject, Data: []byte(payload)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 48 stops at 8 a second: 6s after the last burst, well inside one ack
	// wait; a dropped command would come back only after it.
	results.Wait(t, ackWait*3/4, ids...)
	elapsed := time.Since(begin)

	for _, r := range results.All() {
		if d := r.Event.Data; d.Attempts != 1 || d.Outcome != messages.Succeeded {
			t.Errorf("%s: %s after %d deliveries; every command should be handled on its first", d.CommandID, d.Outcome, d.Attempts)
		}
	}
	if metrics := httpGet(t, "http://"+addr+"/metrics"); strings.Contains(metrics, "bccstop_nats_slow_consumers_total") &&
		!strings.Contains(metrics, "bccstop_nats_slow_consumers_total 0") {
		t.Errorf("slow-consumer events counted:\n%s", grepLines(metrics, "slow_consumers"))
	}
	if logs := p.Stderr.String(); strings.Contains(logs, "slow consumer") {
		t.Errorf("the worker dropped messages:\n%s", grepLines(logs, "slow consumer"))
	}
	if applied := sim.AppliedStops(); len(applied) != rounds*perRound {
		t.Errorf("%d instances stopped, want %d", len(applied), rounds*perRound)
	}
	t.Logf("%d commands in %d frozen-then-burst rounds on a loaded machine: done in %s", len(ids), rounds, elapsed.Round(100*time.Millisecond))
	cons, err := js.Consumer(context.Background(), "BCCSTOP_COMMANDS_V2", "bccstop-worker")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "commands left unacknowledged", func() bool {
		ci, err := cons.Info(context.Background())
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	p.Signal(syscall.SIGTERM, 15*time.Second)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return tail(strings.Join(out, "\n"), 2000)
}
