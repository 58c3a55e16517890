package tests

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// resultDataFields are the data fields of a result event as the worker
// publishes it (lastCode only with RetriesExhausted).
var resultDataFields = []string{"attempts", "code", "commandId", "forceStop", "httpStatus", "instanceId", "message", "notAfter",
	"outcome", "reason", "reconciled", "region", "requestId", "requestedBy", "instanceStatus", "stopWithNoCharge", "stoppedAt",
	"waitUntilStopped", "workerId"}

// jsonLine is one line of `bccstop stop --output json`, with its keys.
type jsonLine struct {
	event    messages.ResultEvent
	top      []string // top-level keys
	dataKeys []string
}

// jsonLines reads stop's stdout: every line must be a CloudEvent of the
// one documented shape, whatever its outcome.
func jsonLines(t *testing.T, stdout string) []jsonLine {
	t.Helper()
	var out []jsonLine
	for _, line := range lines(stdout) {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("stdout line is not a JSON object: %q", line)
		}
		var data map[string]json.RawMessage
		if err := json.Unmarshal(raw["data"], &data); err != nil {
			t.Fatalf("stdout line has no data object: %q", line)
		}
		var l jsonLine
		if err := json.Unmarshal([]byte(line), &l.event); err != nil {
			t.Fatalf("stdout line is not a result event: %q: %v", line, err)
		}
		for k := range raw {
			l.top = append(l.top, k)
		}
		for k := range data {
			l.dataKeys = append(l.dataKeys, k)
		}
		slices.Sort(l.top)
		slices.Sort(l.dataKeys)
		out = append(out, l)
	}
	return out
}

// checkShape checks a line is a CloudEvent with the result's attributes
// and every data field a worker's result has; CLI-only lines (no-result,
// not-sent) carry no dataschema, since the result schema does not know
// their outcomes.
func checkShape(t *testing.T, l jsonLine) {
	t.Helper()
	ev := l.event
	want := []string{"data", "datacontenttype", "id", "source", "specversion", "subject", "time", "type"}
	cliOnly := ev.Data.Outcome == "no-result" || ev.Data.Outcome == "not-sent"
	if !cliOnly {
		want = append(want, "dataschema")
		slices.Sort(want)
	}
	if !slices.Equal(l.top, want) {
		t.Errorf("%s line: top-level fields %v, want %v", ev.Data.Outcome, l.top, want)
	}
	fields := slices.Clone(resultDataFields)
	slices.Sort(fields)
	if !slices.Equal(l.dataKeys, fields) {
		t.Errorf("%s line: data fields %v, want %v", ev.Data.Outcome, l.dataKeys, fields)
	}
	if ev.SpecVersion != "1.0" || ev.ID == "" || ev.Source == "" || ev.Type != "bcc.instance.stop."+string(ev.Data.Outcome) ||
		ev.Subject != ev.Data.InstanceID || ev.Time.IsZero() || ev.DataContentType != "application/json" {
		t.Errorf("%s line: attributes %+v", ev.Data.Outcome, ev)
	}
	if cliOnly && (ev.Data.Message == "" || ev.Data.Code == "" || !strings.HasPrefix(ev.Source, "bccstop-cli/")) {
		t.Errorf("%s line does not say why, or looks like a worker's: %+v", ev.Data.Outcome, ev)
	}
}

// byInstance indexes lines by instance id, failing on a repeat.
func byInstance(t *testing.T, ls []jsonLine) map[string]messages.ResultEvent {
	t.Helper()
	out := map[string]messages.ResultEvent{}
	for _, l := range ls {
		checkShape(t, l)
		if _, dup := out[l.event.Data.InstanceID]; dup {
			t.Errorf("%s has two lines", l.event.Data.InstanceID)
		}
		out[l.event.Data.InstanceID] = l.event
	}
	return out
}

// commandsStreamOnly is a NATS server with the commands stream and no
// worker: commands are stored and never answered.
func commandsStreamOnly(t *testing.T, cfg jetstream.StreamConfig) string {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	cfg.Name, cfg.Subjects = "BCCSTOP_COMMANDS_V2", []string{messages.CommandSubject}
	if _, err := js.CreateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL()
}

// TestStopJSONNoResultInTime: commands without a result at --timeout get
// a line each, of the result's shape, outcome no-result, code TimedOut;
// -o is --output.
func TestStopJSONNoResultInTime(t *testing.T) {
	t.Parallel()
	url := commandsStreamOnly(t, jetstream.StreamConfig{})
	out, errOut, code := run(t, []string{"NATS_URL=" + url}, "stop", "-o", "json", "--timeout", "1s", "--batch-id", "late",
		"--reason", "INC-1", "--force", "i-late1", "i-late2")
	if code != 4 {
		t.Fatalf("exit %d, want 4\n%s", code, errOut)
	}
	got := byInstance(t, jsonLines(t, out))
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(got), out)
	}
	for _, id := range []string{"i-late1", "i-late2"} {
		d := got[id].Data
		if d.Outcome != "no-result" || d.Code != "TimedOut" || d.CommandID != "late."+id || !d.ForceStop || d.Reason != "INC-1" ||
			!strings.Contains(d.Message, "--timeout 1s") {
			t.Errorf("%s: %+v", id, d)
		}
	}
}

// TestStopJSONNotSentByTheErrorBudget: past the error budget the rest are
// not-sent lines of the same shape as the result before them.
func TestStopJSONNotSentByTheErrorBudget(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-ok1", "i-ok2")
	out, errOut, code := run(t, f.cliEnv(t), "stop", "--output", "json", "--max-in-flight", "1", "--max-errors", "0", "--batch-id", "budget1",
		"i-gone", "i-ok1", "i-ok2")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errOut)
	}
	got := byInstance(t, jsonLines(t, out))
	if len(got) != 3 || got["i-gone"].Data.Outcome != messages.Failed {
		t.Fatalf("lines:\n%s", out)
	}
	for _, id := range []string{"i-ok1", "i-ok2"} {
		if d := got[id].Data; d.Outcome != "not-sent" || d.Code != "ErrorBudgetSpent" || !strings.Contains(d.Message, "--max-errors") {
			t.Errorf("%s: %+v", id, d)
		}
	}
	if strings.Contains(out, `"outcome":"not sent"`) {
		t.Errorf("a flat not-sent line is left:\n%s", out)
	}
}

// TestStopJSONPublishRefused: commands JetStream refuses (the stream is
// full) are not-sent lines saying why, the ones stored no-result lines;
// exit 5.
func TestStopJSONPublishRefused(t *testing.T) {
	t.Parallel()
	url := commandsStreamOnly(t, jetstream.StreamConfig{MaxMsgs: 2, Discard: jetstream.DiscardNew})
	out, errOut, code := run(t, []string{"NATS_URL=" + url}, "stop", "-o", "json", "--timeout", "30s", "--batch-id", "full",
		"i-full1", "i-full2", "i-full3", "i-full4")
	if code != 5 {
		t.Fatalf("exit %d, want 5\n%s", code, errOut)
	}
	got := byInstance(t, jsonLines(t, out))
	if len(got) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(got), out)
	}
	outcomes := map[messages.Outcome]int{}
	for id, ev := range got {
		outcomes[ev.Data.Outcome]++
		switch ev.Data.Outcome {
		case "not-sent":
			if ev.Data.Code != "PublishFailed" || !strings.Contains(ev.Data.Message, "maximum messages") {
				t.Errorf("%s: %+v", id, ev.Data)
			}
		case "no-result":
			if ev.Data.Code != "NotWaited" {
				t.Errorf("%s: %+v", id, ev.Data)
			}
		default:
			t.Errorf("%s: %+v", id, ev.Data)
		}
	}
	if outcomes["not-sent"] != 2 || outcomes["no-result"] != 2 {
		t.Errorf("outcomes %v, want 2 not-sent (refused) and 2 no-result (stored)", outcomes)
	}
	if !strings.Contains(errOut, "maximum messages") || !strings.Contains(errOut, "--batch-id full") {
		t.Errorf("stderr does not say what failed and how to go on:\n%s", errOut)
	}
}

// TestStopJSONNotWaitedAndInterrupted: --wait=false gives a no-result
// line per command (NotWaited); an interrupted wait one per command
// still without a result (Interrupted), exit 4.
func TestStopJSONNotWaitedAndInterrupted(t *testing.T) {
	t.Parallel()
	url := commandsStreamOnly(t, jetstream.StreamConfig{})
	out, errOut, code := run(t, []string{"NATS_URL=" + url}, "stop", "-o", "json", "--wait=false", "i-nw1", "i-nw2")
	if code != 0 {
		t.Fatalf("--wait=false: exit %d\n%s", code, errOut)
	}
	got := byInstance(t, jsonLines(t, out))
	if len(got) != 2 || got["i-nw1"].Data.Code != "NotWaited" || got["i-nw2"].Data.Outcome != "no-result" {
		t.Errorf("--wait=false lines:\n%s", out)
	}

	p := start(t, []string{"NATS_URL=" + url}, "stop", "-o", "json", "--timeout", "1m", "--batch-id", "ctrl-c", "i-int1")
	waitOutput(t, p.Stderr, "(1 published)", 10*time.Second)
	if code := p.Signal(syscall.SIGINT, 10*time.Second); code != 4 {
		t.Errorf("interrupted: exit %d, want 4\n%s", code, p.Stderr.String())
	}
	got = byInstance(t, jsonLines(t, p.Stdout.String()))
	if d := got["i-int1"].Data; len(got) != 1 || d.Outcome != "no-result" || d.Code != "Interrupted" || !strings.Contains(d.Message, "--batch-id ctrl-c") {
		t.Errorf("interrupted lines:\n%s", p.Stdout.String())
	}
}

// TestStopJSONScheduled: with --at, each command stored as a schedule has
// a no-result line (code Scheduled) saying when and how to cancel it.
func TestStopJSONScheduled(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	out, errOut, code := run(t, f.cliEnv(t), "stop", "-o", "json", "--at", at, "--batch-id", "later", "i-s1", "i-s2")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	got := byInstance(t, jsonLines(t, out))
	for _, id := range []string{"i-s1", "i-s2"} {
		if d := got[id].Data; d.Outcome != "no-result" || d.Code != "Scheduled" || !strings.Contains(d.Message, at) ||
			!strings.Contains(d.Message, "schedules cancel --batch-id later") || d.NotAfter == "" {
			t.Errorf("%s: %+v", id, d)
		}
	}
	if len(got) != 2 || !strings.Contains(errOut, "scheduled 2 stops") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}
