package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// cliEnv is the environment of `bccstop stop` against the fixture: NATS,
// and the worker's credentials and endpoint for listing by tag.
func (f stopFixture) cliEnv(t *testing.T, extra ...string) []string {
	return append([]string{"NATS_URL=" + f.url, "BCE_ACCESS_KEY_ID=" + testenv.Credentials.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + testenv.Credentials.SecretAccessKey, "BCC_ENDPOINT=" + f.simURL}, extra...)
}

// jsonResults reads `--output json` lines, each a result event or a line
// of its shape (no-result, not-sent): instance id → outcome.
func jsonResults(t *testing.T, out string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, line := range lines(out) {
		var l struct {
			Type string `json:"type"`
			Data struct {
				InstanceID string           `json:"instanceId"`
				Outcome    messages.Outcome `json:"outcome"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Data.InstanceID == "" || l.Type != "bcc.instance.stop."+string(l.Data.Outcome) {
			t.Fatalf("stdout line is not a result event or one of its shape: %q", line)
		}
		got[l.Data.InstanceID] = string(l.Data.Outcome)
	}
	return got
}

// TestStopByTag: 2,500 instances, 1,200 tagged env=staging (more than one
// list page): exactly those are stopped, except a protected one, which is
// shown as skipped.
func TestStopByTag(t *testing.T) {
	f := newStopFixture(t, "BCCSTOP_PROTECTED_INSTANCES=i-fleet0007")
	tagged := map[string]bool{}
	for i := range 2500 {
		id := fmt.Sprintf("i-fleet%04d", i)
		f.sim.SetStatus(id, fakebcc.Running)
		if i%25 < 12 {
			f.sim.SetTags(id, map[string]string{"env": "staging", "team": "web"})
			tagged[id] = true
		} else {
			f.sim.SetTags(id, map[string]string{"env": "production"})
		}
	}
	p := start(t, f.cliEnv(t, "BCCSTOP_PROTECTED_INSTANCES=i-fleet0007"), "stop", "--tag", "env=staging", "--tag", "team",
		"--batch-id", "by-tag", "--output", "json", "--timeout", "2m")
	if code := p.Wait(3 * time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(p.Stderr.String(), 2000))
	}
	got := jsonResults(t, p.Stdout.String())
	if len(got) != 1199 {
		t.Errorf("%d results, want 1,199 (1,200 tagged, one protected)", len(got))
	}
	applied := f.sim.AppliedStops()
	for id := range applied {
		if !tagged[id] {
			t.Errorf("%s stopped, but it is not tagged env=staging", id)
		}
	}
	if len(applied) != 1199 || applied["i-fleet0007"] != 0 {
		t.Errorf("%d instances stopped (protected one: %d), want 1,199 and 0", len(applied), applied["i-fleet0007"])
	}
	if out := p.Stderr.String(); !strings.Contains(out, "stopping 1199 instances (1200 by tag), batch by-tag") ||
		!strings.Contains(out, "skipped i-fleet0007 (protected): listed in BCCSTOP_PROTECTED_INSTANCES") {
		t.Errorf("stderr does not say what was targeted and skipped:\n%s", tail(out, 1500))
	}
	if n := f.sim.Stats().ListCalls; n < 2 {
		t.Errorf("%d list calls; 2,500 instances take more than one page", n)
	}
}

// TestDryRunPublishesNothing: --dry-run shows every target and its command
// and publishes nothing.
func TestDryRunPublishesNothing(t *testing.T) {
	f := newStopFixture(t)
	for i := range 30 {
		id := fmt.Sprintf("i-dry%02d", i)
		f.sim.SetStatus(id, fakebcc.Running)
		if i < 10 {
			f.sim.SetTags(id, map[string]string{"env": "staging"})
		}
	}
	p := start(t, f.cliEnv(t), "stop", "--dry-run", "--tag", "env=staging", "i-dry20", "--force", "--reason", "cleanup", "--output", "json")
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Stderr.String())
	}
	n := 0
	for _, line := range lines(p.Stdout.String()) {
		var l struct {
			InstanceID string               `json:"instanceId"`
			Command    messages.StopCommand `json:"command"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil || l.Command.InstanceID != l.InstanceID || !l.Command.ForceStop || l.Command.Reason != "cleanup" {
			t.Errorf("plan line %q", line)
		}
		n++
	}
	if n != 11 {
		t.Errorf("%d targets planned, want 11", n)
	}
	text := start(t, f.cliEnv(t), "stop", "--dry-run", "--tag", "env=staging")
	text.Wait(30 * time.Second)
	if out := text.Stdout.String(); !strings.Contains(out, "INSTANCE") || !strings.Contains(out, "i-dry09") || !strings.Contains(out, "dry run: 10 commands would be published") {
		t.Errorf("text plan:\n%s", out)
	}
	if s := f.sim.Stats(); s.StopCalls != 0 {
		t.Errorf("%d stop calls in a dry run", s.StopCalls)
	}
	s, err := f.js.Stream(context.Background(), "BCCSTOP_COMMANDS_V2")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Info(context.Background()); info.State.LastSeq != 0 {
		t.Errorf("the commands stream got %d messages in a dry run", info.State.LastSeq)
	}
	bad := start(t, f.cliEnv(t), "stop", "--dry-run", "i-ok", "not-an-id")
	if code := bad.Wait(10 * time.Second); code != 2 {
		t.Errorf("dry run with an invalid id: exit %d, want 2", code)
	}
}

// TestWavesKeepAtMostNInFlight: --max-in-flight 7 never has more than 7
// stop calls at the API at once (the worker could do 64).
func TestWavesKeepAtMostNInFlight(t *testing.T) {
	f := newStopFixture(t)
	f.sim.SetLatency(100*time.Millisecond, 50*time.Millisecond)
	var ids []string
	for i := range 60 {
		id := fmt.Sprintf("i-wave%02d", i)
		f.sim.SetStatus(id, fakebcc.Running)
		ids = append(ids, id)
	}
	p := start(t, f.cliEnv(t), append([]string{"stop", "--max-in-flight", "7", "--batch-id", "waves"}, ids...)...)
	if code := p.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.Stdout.String())
	}
	if peak := f.sim.Stats().PeakInFlight; peak > 7 {
		t.Errorf("%d calls at the API at once, want at most 7", peak)
	}
	if n := len(f.sim.AppliedStops()); n != 60 {
		t.Errorf("%d stopped, want 60", n)
	}
}

// TestErrorBudgetStopsEarlyAndResumes: 30 of 100 ids are unknown to the API;
// with an error budget of 5 the job stops publishing, reports the rest not
// sent and exits 1. Re-run with the same batch id once the cause is fixed,
// it goes on where it stopped and stops nothing twice.
func TestErrorBudgetStopsEarlyAndResumes(t *testing.T) {
	f := newStopFixture(t)
	var ids []string
	for i := range 100 {
		id := fmt.Sprintf("i-budget%03d", i)
		if i%10 >= 3 {
			f.sim.SetStatus(id, fakebcc.Running)
		}
		ids = append(ids, id)
	}
	args := append([]string{"stop", "--max-in-flight", "10", "--max-errors", "5", "--batch-id", "budget", "--output", "json"}, ids...)
	p := start(t, f.cliEnv(t), args...)
	if code := p.Wait(60 * time.Second); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, p.Stderr.String())
	}
	first := jsonResults(t, p.Stdout.String())
	notSent := 0
	for _, o := range first {
		if o == "not-sent" {
			notSent++
		}
	}
	if len(first) != 100 || notSent == 0 || notSent > 85 {
		t.Fatalf("%d lines, %d not sent", len(first), notSent)
	}
	if out := p.Stderr.String(); !strings.Contains(out, "stopped publishing after") || !strings.Contains(out, "not sent") {
		t.Errorf("stderr:\n%s", tail(out, 1500))
	}
	calls := f.sim.StopCallsByInstance()

	// The unknown instances appear (the cause is fixed); the job is run again.
	for i := range 100 {
		if i%10 < 3 {
			f.sim.SetStatus(ids[i], fakebcc.Running)
		}
	}
	p = start(t, f.cliEnv(t), args...)
	code := p.Wait(60 * time.Second)
	second := jsonResults(t, p.Stdout.String())
	for _, id := range ids {
		switch was, now := first[id], second[id]; {
		case was == "not-sent" && now != "succeeded":
			t.Errorf("%s: not sent the first time, %s the second", id, now)
		case was != "not-sent" && now != was:
			t.Errorf("%s: %s the first time, %s the second (the earlier outcome should be reported)", id, was, now)
		case was != "not-sent" && f.sim.StopCalls(id) != calls[id]:
			t.Errorf("%s: called again", id)
		}
	}
	if code != 1 {
		t.Errorf("second run: exit %d, want 1 (the earlier failures are still failures)", code)
	}
}

// TestScheduledStops: --at now+5s stores the commands and exits; nothing is
// stopped before, everything after; a cancelled schedule never fires.
func TestScheduledStops(t *testing.T) {
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-sched1", "i-sched2", "i-cancel1")
	at := time.Now().Add(5 * time.Second).UTC().Format(time.RFC3339)
	p := start(t, f.cliEnv(t), "stop", "--at", at, "--batch-id", "evening", "--reason", "nightly", "i-sched1", "i-sched2")
	if code := p.Wait(20 * time.Second); code != 0 || !strings.Contains(p.Stdout.String(), "scheduled 2 stops") {
		t.Fatalf("exit %d\n%s%s", code, p.Stdout.String(), p.Stderr.String())
	}
	c := start(t, f.cliEnv(t), "stop", "--at", at, "--batch-id", "cancelled", "i-cancel1")
	c.Wait(20 * time.Second)

	list := start(t, f.cliEnv(t), "schedules", "list", "--output", "json")
	list.Wait(20 * time.Second)
	if n := len(lines(list.Stdout.String())); n != 3 {
		t.Errorf("schedules list: %d lines, want 3\n%s%s", n, list.Stdout.String(), list.Stderr.String())
	}
	if !strings.Contains(list.Stdout.String(), `"reason":"nightly"`) || !strings.Contains(list.Stdout.String(), `"batchId":"evening"`) {
		t.Errorf("schedules list lacks batch or reason:\n%s", list.Stdout.String())
	}
	cancel := start(t, f.cliEnv(t), "schedules", "cancel", "--batch-id", "cancelled")
	if code := cancel.Wait(20 * time.Second); code != 0 || !strings.Contains(cancel.Stdout.String(), "cancelled 1 scheduled stop: cancelled.i-cancel1\n") {
		t.Errorf("cancel: exit %d\n%s%s", code, cancel.Stdout.String(), cancel.Stderr.String())
	}
	if n := f.sim.Stats().StopCalls; n != 0 {
		t.Fatalf("%d stop calls before the scheduled time", n)
	}
	testenv.Eventually(t, 30*time.Second, "the scheduled stops did not happen", func() bool {
		a := f.sim.AppliedStops()
		return a["i-sched1"] == 1 && a["i-sched2"] == 1
	})
	if took := time.Until(mustTime(t, at)); took > 0 {
		t.Errorf("stopped %v before the scheduled time", took)
	}
	time.Sleep(2 * time.Second) // the cancelled one would have fired with the others
	if n := f.sim.StopCalls("i-cancel1"); n != 0 {
		t.Errorf("a cancelled schedule fired")
	}
}

func mustTime(t *testing.T, s string) time.Time {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
