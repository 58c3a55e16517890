package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestPauseAndResumeTheFleet: `bccstop pause` holds every worker at once
// (no API call while paused, nothing lost), status tells the truth, the
// workers show it (metric, log line, /readyz still 200), and resume and the
// end of a --for pause let the commands through; each change is a control
// event.
func TestPauseAndResumeTheFleet(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, AutoCreate: true})
	addr := freeAddr(t)
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, addr), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)
	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	events := make(chan messages.ControlEvent, 10)
	sub, err := nc.Subscribe(messages.ControlSubjects, func(m *nats.Msg) {
		var ev messages.ControlEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			events <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	env := []string{"NATS_URL=" + srv.ClientURL()}
	cli := func(args ...string) (string, int) {
		t.Helper()
		p := start(t, env, args...)
		code := p.Wait(20 * time.Second)
		return p.Stdout.String() + p.Stderr.String(), code
	}
	send := func(prefix string, n int) []string {
		var ids []string
		for i := range n {
			id := fmt.Sprintf("%s-%02d", prefix, i)
			ids = append(ids, id)
			if _, err := js.Publish(context.Background(), messages.CommandSubject,
				[]byte(fmt.Sprintf(`{"instanceId":"i-%s","commandId":%q}`, id, id))); err != nil {
				t.Fatal(err)
			}
		}
		return ids
	}
	nextEvent := func(action string) messages.ControlEvent {
		t.Helper()
		select {
		case ev := <-events:
			if ev.Data.Action != action || ev.Type != "bcc.instance.stop.control."+action {
				t.Fatalf("control event %+v, want %s", ev, action)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", action)
		}
		return messages.ControlEvent{}
	}

	results.Wait(t, 15*time.Second, send("before", 3)...)

	out, code := cli("pause", "--reason", "INC-4711 maintenance", "--requested-by", "alice")
	if code != 0 || !strings.Contains(out, "PAUSED until resumed") || !strings.Contains(out, "reason: INC-4711 maintenance, by alice") {
		t.Fatalf("pause: exit %d\n%s", code, out)
	}
	if ev := nextEvent(messages.ControlPaused); ev.Data.Reason != "INC-4711 maintenance" || ev.Data.RequestedBy != "alice" || ev.Data.PausedUntil != "" {
		t.Errorf("paused event: %+v", ev.Data)
	}
	waitOutput(t, w.Stderr, "the fleet is paused", 10*time.Second)
	testenv.Eventually(t, 10*time.Second, "bccstop_consumer_paused is not 1", func() bool {
		return strings.Contains(httpGet(t, "http://"+addr+"/metrics"), "bccstop_consumer_paused 1")
	})
	waitHTTP(t, "http://"+addr+"/readyz", 200, time.Second) // paused is healthy

	calls := sim.Stats().StopCalls
	held := send("held", 20)
	time.Sleep(3 * time.Second) // paused: nothing may happen meanwhile
	if got := sim.Stats().StopCalls; got != calls {
		t.Fatalf("%d stop calls while paused", got-calls)
	}
	out, code = cli("status", "--output", "json")
	var st struct {
		Paused      bool           `json:"paused"`
		PauseReason string         `json:"pauseReason"`
		PausedBy    string         `json:"pausedBy"`
		Waiting     int            `json:"waiting"`
		InFlight    int            `json:"inFlight"`
		Outcomes    map[string]int `json:"outcomes"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	if !st.Paused || st.PauseReason != "INC-4711 maintenance" || st.PausedBy != "alice" || st.Waiting != 20 || st.InFlight != 0 || st.Outcomes["succeeded"] != 3 {
		t.Errorf("status while paused: %+v", st)
	}
	text, _ := cli("status")
	t.Logf("bccstop status while paused:\n%s", text)

	out, code = cli("resume", "--reason", "maintenance over")
	if code != 0 || !strings.Contains(out, "running") {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	nextEvent(messages.ControlResumed)
	results.Wait(t, 15*time.Second, held...)
	waitOutput(t, w.Stderr, "the fleet is resumed", 10*time.Second)

	// A pause that runs out by itself.
	begin := time.Now()
	out, code = cli("pause", "--for", "3s")
	if code != 0 || !strings.Contains(out, "PAUSED until") {
		t.Fatalf("pause --for: exit %d\n%s", code, out)
	}
	later := send("later", 5)
	nextEvent(messages.ControlPaused)
	results.Wait(t, 20*time.Second, later...)
	if took := time.Since(begin); took < 2*time.Second {
		t.Errorf("commands went through %v after a 3s pause began", took)
	}
	if ev := nextEvent(messages.ControlResumed); !ev.Data.Automatic {
		t.Errorf("resumed event when the pause ran out: %+v", ev.Data)
	}
	if applied := sim.AppliedStops(); len(applied) != 28 {
		t.Errorf("%d instances stopped, want 28", len(applied))
	}
}
