package tests

// The reproductions of issue 18, each as a test: what an attacker with an
// ordinary NATS connection (or a clumsy operator) did on the release before
// layout 2, and what happens now.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// cli runs the bccstop command line against url and returns what it
// printed (stdout, then stderr) and its exit status.
func cliAt(t *testing.T, url string) func(args ...string) (string, int) {
	return func(args ...string) (string, int) {
		t.Helper()
		p := start(t, []string{"NATS_URL=" + url}, args...)
		code := p.Wait(30 * time.Second)
		return p.Stdout.String() + p.Stderr.String(), code
	}
}

// TestRollupHeaderErasesNothing: one command published with
// "Nats-Rollup: all" erased every queued command and schedule. Now the
// commands stream refuses it (the publisher gets the error), as it refuses
// a TTL, a JetStream schedule or a counter header on a command; the queued
// commands and the schedule are all there after, and get their results.
func TestRollupHeaderErasesNothing(t *testing.T) {
	f := newStopFixture(t)
	cli := cliAt(t, f.url)
	f.sim.Seed(fakebcc.Running, "i-roll1", "i-roll2", "i-roll3", "i-roll4", "i-rollsched")
	if out, code := cli("pause", "--reason", "queue some"); code != 0 {
		t.Fatalf("pause: %d\n%s", code, out)
	}
	for i := 1; i <= 3; i++ {
		if _, err := f.js.Publish(context.Background(), messages.CommandSubject, []byte(fmt.Sprintf(`{"instanceId":"i-roll%d","commandId":"roll-%d"}`, i, i))); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out, code := cli("stop", "--at", at, "--batch-id", "later", "i-rollsched"); code != 0 {
		t.Fatalf("stop --at: %d\n%s", code, out)
	}
	for _, h := range []nats.Header{
		{"Nats-Rollup": {"all"}},
		{"Nats-Rollup": {"sub"}},
		{"Nats-TTL": {"1s"}},
		{"Nats-Schedule": {"@at " + time.Now().Add(time.Second).UTC().Format(time.RFC3339)}, "Nats-Schedule-Target": {messages.CommandSubject}},
		{"Nats-Incr": {"+1"}},
	} {
		_, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: messages.CommandSubject, Header: h, Data: []byte(`{"instanceId":"i-roll4","commandId":"roll-evil"}`)})
		if err == nil {
			t.Errorf("a command with %v was stored", h)
		}
	}
	cons, err := f.js.Consumer(context.Background(), layout.CommandsStream, layout.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := cons.Info(context.Background()); info.NumPending != 3 {
		t.Errorf("%d commands wait after the attempts, want 3", info.NumPending)
	}
	if out, _ := cli("schedules", "list"); !strings.Contains(out, "later.i-rollsched") {
		t.Errorf("the schedule is gone:\n%s", out)
	}
	if out, code := cli("resume"); code != 0 {
		t.Fatalf("resume: %d\n%s", code, out)
	}
	results := testenv.ReadResults(t, f.js, layout.ResultsStream)
	results.Wait(t, 20*time.Second, "roll-1", "roll-2", "roll-3")
	if n := f.sim.StopCalls("i-roll4"); n != 0 {
		t.Errorf("i-roll4 was called %d times", n)
	}
}

// TestRepeatingScheduleIsNeverActedOn: a message on a schedule subject with
// "@every 2s" aimed at bcc.instance.stop stopped its instance, then
// produced a forbidden every 2s under a new identity. Now JetStream's own
// schedule headers are refused by the commands stream, and a schedule
// request that is not a one-shot @at aimed at bcc.instance.stop with a
// valid command is refused with a rejected result, removed, and never
// acted on; one that is fires once, with one identity.
func TestRepeatingScheduleIsNeverActedOn(t *testing.T) {
	f := newStopFixture(t)
	cli := cliAt(t, f.url)
	f.sim.Seed(fakebcc.Running, "i-evil1", "i-evil2", "i-evil3", "i-good1")
	results := testenv.ReadResults(t, f.js, layout.ResultsStream)
	publish := func(subject string, h nats.Header, payload string) error {
		_, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: h, Data: []byte(payload)})
		return err
	}
	// JetStream's schedule, as the attacker sent it: refused at publish.
	err := publish(messages.ScheduleSubjectPrefix+"evil", nats.Header{"Nats-Schedule": {"@every 2s"}, "Nats-Schedule-Target": {messages.CommandSubject}},
		`{"instanceId":"i-evil1"}`)
	if err == nil || !strings.Contains(err.Error(), "schedules") {
		t.Errorf("a JetStream schedule on the commands stream: %v", err)
	}
	// bccstop's schedule headers with what is never accepted.
	for id, h := range map[string]nats.Header{
		"evil-every":  {messages.HeaderSchedule: {"@every 2s"}},
		"evil-cron":   {messages.HeaderSchedule: {"0 * * * * *"}},
		"evil-target": {messages.HeaderSchedule: {"@at " + time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)}, messages.HeaderScheduleTarget: {"bcc.instance.stop.result.succeeded"}},
	} {
		if err := publish(messages.ScheduleSubjectPrefix+id, h, `{"instanceId":"i-evil2","commandId":"`+id+`"}`); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if err := publish(messages.ScheduleSubjectPrefix+"evil-bad-command", nats.Header{messages.HeaderSchedule: {"@at " + time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)}},
		`{"instanceId":"i-evil3","forceStop":"yes"}`); err != nil {
		t.Fatal(err)
	}
	got := results.Wait(t, 20*time.Second, "evil-every", "evil-cron", "evil-target", "evil-bad-command")
	for id, r := range got {
		if d := r.Event.Data; d.Outcome != messages.Rejected || d.Code != messages.CodeInvalidSchedule {
			t.Errorf("%s: %s %s (%s), want rejected InvalidSchedule", id, d.Outcome, d.Code, d.Message)
		}
	}
	if msg := got["evil-every"].Event.Data.Message; !strings.Contains(msg, "repeating schedules are never accepted") {
		t.Errorf("the refusal does not say why: %s", msg)
	}
	// A good one-shot, without a commandId: named by its schedule id, once.
	if err := publish(messages.ScheduleSubjectPrefix+"good.once", nats.Header{messages.HeaderSchedule: {"@at " + time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)}},
		`{"instanceId":"i-good1"}`); err != nil {
		t.Fatal(err)
	}
	if d := results.Wait(t, 20*time.Second, "good.once")["good.once"].Event.Data; d.Outcome != messages.Succeeded || d.InstanceID != "i-good1" {
		t.Errorf("good.once: %+v", d)
	}
	time.Sleep(5 * time.Second) // an @every 2s would have fired twice more
	if out, _ := cli("schedules", "list"); !strings.Contains(out, "no stops scheduled") {
		t.Errorf("schedules left:\n%s", out)
	}
	for _, id := range []string{"i-evil1", "i-evil2", "i-evil3"} {
		if n := f.sim.StopCalls(id); n != 0 {
			t.Errorf("%s: %d stop calls", id, n)
		}
	}
	if n := f.sim.StopCalls("i-good1"); n != 1 {
		t.Errorf("i-good1: %d stop calls, want 1", n)
	}
	if n := len(results.All()); n != 5 {
		t.Errorf("%d results stored, want 5 (four refusals and one stop)", n)
	}
}

// TestResultsAreReadFromTheStream: a process answering each command on the
// core result subjects made bccstop stop print "2 succeeded" while the fleet
// was paused. Now the command line believes only results stored in the
// results stream: a message seen on the subject but never stored is
// ignored, and a stored result that answers another command under the same
// identity is reported, not counted. (With the shipped authorization no one
// but a worker may publish there at all: TestRolesAreEnforcedByTheServer.)
func TestResultsAreReadFromTheStream(t *testing.T) {
	f := newStopFixture(t)
	cli := cliAt(t, f.url)
	f.sim.Seed(fakebcc.Running, "i-forge1", "i-forge2")
	if out, code := cli("pause", "--reason", "nothing may be stopped"); code != 0 {
		t.Fatalf("pause: %d\n%s", code, out)
	}
	nc, _ := testenv.Connect(t, f.url)
	forge := func(commandID, instanceID string) []byte {
		ev := messages.NewResultEvent("forged-"+commandID, "evil", time.Now(), messages.ResultData{CommandID: commandID, InstanceID: instanceID,
			Outcome: messages.Succeeded, HTTPStatus: 200, Attempts: 1})
		b, _ := json.Marshal(ev)
		return b
	}
	// A forger answering every command on the core subject, never stored
	// (the results stream refuses what expects another stream).
	sub, err := nc.Subscribe(messages.CommandSubject, func(m *nats.Msg) {
		var c messages.StopCommand
		if json.Unmarshal(m.Data, &c) == nil {
			_ = nc.PublishMsg(&nats.Msg{Subject: messages.ResultSubject(messages.Succeeded), Data: forge(c.CommandID, c.InstanceID),
				Header: nats.Header{"Nats-Expected-Stream": {"NOT-THE-RESULTS"}}})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// And one stored result for forge.i-forge2 that answers another command.
	if _, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: messages.ResultSubject(messages.Succeeded), Data: forge("forge.i-forge2", "i-other"),
		Header: nats.Header{"Nats-Msg-Id": {"forge.i-forge2"}}}); err != nil {
		t.Fatal(err)
	}
	out, code := cli("stop", "--batch-id", "forge", "--timeout", "5s", "i-forge1", "i-forge2")
	if code != 4 || strings.Contains(out, "2 succeeded") || strings.Contains(out, "1 succeeded") {
		t.Errorf("stop while paused, with forged results: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "1 stored result under this batch's command ids (forge.i-forge2) answers other commands than the ones published") {
		t.Errorf("the mismatched stored result is not reported:\n%s", out)
	}
	if n := f.sim.Stats().StopCalls; n != 0 {
		t.Errorf("%d stop calls while paused", n)
	}
}

// TestLongPauseNeverStopsTwice: with BCCSTOP_LEDGER_TTL=1m, a
// waitUntilStopped command whose stop had gone through, paused 65s, came
// back with an empty ledger and was stopped a second time. Now an entry of
// a command not yet concluded never expires: paused longer than the ledger
// TTL, it resumes waiting and ends Stopped with one stop call.
func TestLongPauseNeverStopsTwice(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: 25 * time.Second})
	sim.Seed(fakebcc.Running, "i-longpause")
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_LEDGER_TTL=10s", "BCCSTOP_STOP_WAIT_INTERVALS=1s"), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, layout.ResultsStream)
	cli := cliAt(t, srv.ClientURL())
	if _, err := js.Publish(context.Background(), messages.CommandSubject,
		[]byte(`{"instanceId":"i-longpause","commandId":"long-pause","waitUntilStopped":true}`)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, "the stop did not go through", func() bool { return sim.StopCalls("i-longpause") == 1 })
	if out, code := cli("pause", "--reason", "longer than the ledger's TTL"); code != 0 {
		t.Fatalf("pause: %d\n%s", code, out)
	}
	time.Sleep(15 * time.Second) // past BCCSTOP_LEDGER_TTL
	if out, code := cli("resume"); code != 0 {
		t.Fatalf("resume: %d\n%s", code, out)
	}
	d := results.Wait(t, 40*time.Second, "long-pause")["long-pause"].Event.Data
	if d.Outcome != messages.Succeeded || d.InstanceStatus != "Stopped" {
		t.Errorf("long-pause: %s %s (%s)", d.Outcome, d.InstanceStatus, d.Message)
	}
	if n := sim.StopCalls("i-longpause"); n != 1 {
		t.Errorf("%d stop calls, want 1", n)
	}
}

// controlEvents reads every control event stored so far.
func controlEvents(t *testing.T, js jetstream.JetStream) []messages.ControlEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, layout.ControlStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []messages.ControlEvent
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev messages.ControlEvent
			if json.Unmarshal(m.Data(), &ev) == nil {
				out = append(out, ev)
			}
		}
		if n == 0 {
			return out
		}
	}
}

// TestPauseIsNeverSilentlyReplaced: an indefinite incident hold was
// replaced by another operator's pause --for 5s, and the fleet ran again 5s
// later (and in a variant no resumed event was ever published). Now a
// pause in force is changed only with --force, saying whose it is; the
// span keeps its id across a --force change (a paused event with the new
// terms), and ends with exactly one resumed event; resume while running
// changes nothing and publishes nothing.
func TestPauseIsNeverSilentlyReplaced(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	cli := cliAt(t, f.url)
	if out, code := cli("pause", "--reason", "INC-1 hold everything", "--requested-by", "alice"); code != 0 {
		t.Fatalf("pause: %d\n%s", code, out)
	}
	out, code := cli("pause", "--for", "5s", "--reason", "quick test", "--requested-by", "bob")
	if code != 7 || !strings.Contains(out, "alice") || !strings.Contains(out, "INC-1 hold everything") || !strings.Contains(out, "--force") {
		t.Fatalf("a second pause: exit %d\n%s", code, out)
	}
	time.Sleep(6 * time.Second)
	if out, _ := cli("status"); !strings.Contains(out, "PAUSED until resumed") || !strings.Contains(out, "INC-1 hold everything") {
		t.Fatalf("the incident hold did not hold:\n%s", out)
	}
	if out, code := cli("pause", "--for", "3s", "--reason", "handing over", "--requested-by", "bob", "--force"); code != 0 {
		t.Fatalf("pause --force: %d\n%s", code, out)
	}
	testenv.Eventually(t, 20*time.Second, "no resumed event after the forced pause ran out", func() bool {
		for _, ev := range controlEvents(t, f.js) {
			if ev.Data.Action == messages.ControlResumed {
				return true
			}
		}
		return false
	})
	if out, code := cli("resume"); code != 6 || !strings.Contains(out, "not paused") {
		t.Errorf("resume while running: exit %d\n%s", code, out)
	}
	time.Sleep(3 * time.Second) // a worker would announce a resume within 2s
	var paused, resumed []messages.ControlEvent
	for _, ev := range controlEvents(t, f.js) {
		switch ev.Data.Action {
		case messages.ControlPaused:
			paused = append(paused, ev)
		case messages.ControlResumed:
			resumed = append(resumed, ev)
		}
	}
	if len(paused) != 2 || len(resumed) != 1 {
		t.Fatalf("%d paused and %d resumed events, want 2 (the pause and its forced change) and 1", len(paused), len(resumed))
	}
	if id := paused[0].Data.PauseID; paused[1].Data.PauseID != id || resumed[0].Data.PauseID != id {
		t.Errorf("pause ids %s %s %s: one span", id, paused[1].Data.PauseID, resumed[0].Data.PauseID)
	}
	if paused[0].Data.RequestedBy != "alice" || paused[1].Data.RequestedBy != "bob" || paused[1].Data.Reason != "handing over" || paused[1].Data.PausedUntil == "" {
		t.Errorf("paused events: %+v / %+v", paused[0].Data, paused[1].Data)
	}
	if !resumed[0].Data.Automatic {
		t.Errorf("resumed event: %+v", resumed[0].Data)
	}
}

// TestScheduleCancelMatchesExactly: cancel --batch-id evening also
// cancelled evening.eu; cancel '>' cancelled every team's schedules; an id
// that names nothing said "cancelled 0" and exited 0; the listing never
// showed the id cancel takes; --batch-id 'odd.' was accepted and then
// failed. Now cancel matches exactly, validates its arguments, and exits 6
// saying what matched nothing.
func TestScheduleCancelMatchesExactly(t *testing.T) {
	f := newStopFixture(t)
	cli := cliAt(t, f.url)
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for batch, ids := range map[string][]string{"evening": {"i-s1", "i-s2"}, "evening.eu": {"i-s3"}} {
		if out, code := cli(append([]string{"stop", "--at", at, "--batch-id", batch}, ids...)...); code != 0 || !strings.Contains(out, "stored") {
			t.Fatalf("stop --at %s: %d\n%s", batch, code, out)
		}
	}
	out, _ := cli("schedules", "list")
	for _, id := range []string{"evening.i-s1", "evening.i-s2", "evening.eu.i-s3"} {
		if !strings.Contains(out, id) {
			t.Errorf("list does not show the id %s:\n%s", id, out)
		}
	}
	if !strings.Contains(out, "@at ") || !strings.Contains(out, messages.CommandSubject) {
		t.Errorf("list shows no pattern or target:\n%s", out)
	}
	for _, args := range [][]string{{">"}, {"evening.*"}, {"--batch-id", "odd."}, {"--batch-id", "a..b"}} {
		if out, code := cli(append([]string{"schedules", "cancel"}, args...)...); code != 2 {
			t.Errorf("cancel %v: exit %d, want 2\n%s", args, code, out)
		}
	}
	if out, code := cli("stop", "--at", at, "--batch-id", "odd.", "i-s9"); code != 2 {
		t.Errorf("stop --at --batch-id odd.: exit %d, want 2\n%s", code, out)
	}
	for _, id := range []string{"i-s3", "no-such-thing"} {
		if out, code := cli("schedules", "cancel", id); code != 6 || !strings.Contains(out, "nothing scheduled matches "+id) {
			t.Errorf("cancel %s: exit %d\n%s", id, code, out)
		}
	}
	if out, code := cli("schedules", "cancel", "--batch-id", "evening"); code != 0 || !strings.Contains(out, "cancelled 2 scheduled stops") {
		t.Errorf("cancel --batch-id evening: exit %d\n%s", code, out)
	}
	out, _ = cli("schedules", "list", "--output", "json")
	if strings.Contains(out, `"evening.i-s1"`) || !strings.Contains(out, `"evening.eu.i-s3"`) {
		t.Errorf("after cancelling batch evening:\n%s", out)
	}
}

// TestCommandsStreamIsBounded: a flood while paused filled the storage the
// ledger and results share. Now the commands stream holds at most
// BCCSTOP_COMMANDS_MAX_MSGS; past it a publish fails and nothing stored is
// dropped.
func TestCommandsStreamIsBounded(t *testing.T) {
	f := newStopFixture(t, "BCCSTOP_COMMANDS_MAX_MSGS=1000")
	cli := cliAt(t, f.url)
	if out, code := cli("pause"); code != 0 {
		t.Fatalf("pause: %d\n%s", code, out)
	}
	for i := range 1000 {
		if _, err := f.js.PublishAsync(messages.CommandSubject, []byte(fmt.Sprintf(`{"instanceId":"i-flood%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("the flood was not acknowledged")
	}
	_, err := f.js.Publish(context.Background(), messages.CommandSubject, []byte(`{"instanceId":"i-one-too-many"}`))
	if err == nil || !strings.Contains(err.Error(), "maximum messages") {
		t.Fatalf("the 1001st command: %v", err)
	}
	st, _ := f.js.Stream(context.Background(), layout.CommandsStream)
	if info, _ := st.Info(context.Background()); info.State.Msgs != 1000 {
		t.Errorf("%d commands stored, want the first 1000", info.State.Msgs)
	}
}

// TestMalformedNumbersAreRefused: --max-errors NaN% disabled the error
// budget. Now NaN, Inf, negative and overflowing values of the command
// line's numbers are usage errors naming the flag, before anything is
// published (the worker's settings: internal/config's tests).
func TestMalformedNumbersAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"stop", "i-nan1", "--max-errors", "NaN%"},
		{"stop", "i-nan1", "--max-errors", "Inf%"},
		{"stop", "i-nan1", "--max-errors", "-1"},
		{"stop", "i-nan1", "--max-errors", "99999999999999999999"},
		{"stop", "i-nan1", "--max-in-flight", "-1"},
		{"stop", "i-nan1", "--timeout", "-1s"},
		{"fakebcc", "--fail-rate", "NaN"},
		{"pause", "--for", "-5m"},
		{"status", "--since", "-1h"},
	} {
		p := start(t, []string{"NATS_URL=nats://" + freeAddr(t), "BCE_ACCESS_KEY_ID=ak", "BCE_SECRET_ACCESS_KEY=sk"}, args...)
		if code := p.Wait(20 * time.Second); code != 2 {
			t.Errorf("bccstop %s: exit %d, want 2\n%s", strings.Join(args, " "), code, p.Stderr.String())
		}
		flag := args[len(args)-2]
		if !strings.Contains(p.Stderr.String(), flag) {
			t.Errorf("bccstop %s: the error does not name %s:\n%s", strings.Join(args, " "), flag, p.Stderr.String())
		}
	}
}
