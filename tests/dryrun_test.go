package tests

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/bccstop/bccstop/internal/fakebcc"
)

// planRow finds the row of a text plan for an instance.
func planRow(out, id string) string {
	for _, line := range lines(out) {
		if strings.HasPrefix(line, id+" ") {
			return line
		}
	}
	return ""
}

// TestDryRunSaysWhatEachTargetWillGet: a dry run shows, for each target,
// what its command would get — stopped, rejected (held), forbidden (not
// Running: described with the batch describe for ids named explicitly,
// from the listing for tagged ones), failed (no such instance), skipped
// (protected) — counts each in its last line, and publishes nothing.
func TestDryRunSaysWhatEachTargetWillGet(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-dr-run1", "i-dr-run2", "i-dr-held", "i-dr-prot")
	f.sim.Seed(fakebcc.Stopped, "i-dr-stopped", "i-dr-stoptag")
	f.sim.SetTags("i-dr-run2", map[string]string{"env": "dr"})
	f.sim.SetTags("i-dr-stoptag", map[string]string{"env": "dr"})
	env := f.cliEnv(t, "BCCSTOP_PROTECTED_INSTANCES=i-dr-prot")
	if _, errOut, code := run(t, env, "hold", "i-dr-held", "--for", "1h", "--reason", "CHG-12 patching", "--requested-by", "bob"); code != 0 {
		t.Fatalf("hold: exit %d\n%s", code, errOut)
	}
	args := []string{"stop", "--dry-run", "--tag", "env=dr", "i-dr-run1", "i-dr-stopped", "i-dr-held", "i-dr-gone", "i-dr-prot"}
	before := f.sim.Stats()
	out, errOut, code := run(t, env, args...)
	if code != 0 {
		t.Fatalf("exit %d, want 0 (some would be stopped)\n%s%s", code, out, errOut)
	}
	for id, want := range map[string][]string{
		"i-dr-run1":    {"Running", "stop"},
		"i-dr-run2":    {"Running", "stop", "env=dr"},
		"i-dr-stopped": {"Stopped", "forbidden: not Running"},
		"i-dr-stoptag": {"Stopped", "forbidden: not Running"},
		"i-dr-held":    {"rejected: held by bob until", "CHG-12 patching"},
		"i-dr-gone":    {"failed: no such instance"},
		"i-dr-prot":    {"skipped (protected): listed in BCCSTOP_PROTECTED_INSTANCES"},
	} {
		row := planRow(out, id)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s: row %q lacks %q", id, row, w)
			}
		}
	}
	if row := planRow(out, "i-dr-stopped"); strings.Contains(row, " stop ") {
		t.Errorf("a Stopped instance is shown as one to stop: %q", row)
	}
	summary := "dry run: 6 commands would be published, none was: 2 would stop, 1 held (rejected), 2 not Running (forbidden), 1 no such instance (failed); 1 skipped (protected)"
	if !strings.Contains(out, summary) {
		t.Errorf("no summary %q:\n%s", summary, out)
	}
	after := f.sim.Stats()
	if n := after.DescribeBatchCalls - before.DescribeBatchCalls; n != 1 || after.DescribeCalls != before.DescribeCalls {
		t.Errorf("%d batch describes and %d single ones, want one batch for the 4 ids named", n, after.DescribeCalls-before.DescribeCalls)
	}

	jsonOut, errOut, code := run(t, env, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("-o json: exit %d\n%s", code, errOut)
	}
	expect := map[string]string{}
	for _, line := range lines(jsonOut) {
		var l struct {
			InstanceID string `json:"instanceId"`
			Expect     string `json:"expect"`
			Why        string `json:"why"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("plan line %q: %v", line, err)
		}
		expect[l.InstanceID] = l.Expect
		if l.Expect != "succeeded" && l.Why == "" {
			t.Errorf("%s: expect %s, but not why", l.InstanceID, l.Expect)
		}
	}
	for id, want := range map[string]string{"i-dr-run1": "succeeded", "i-dr-run2": "succeeded", "i-dr-stopped": "forbidden",
		"i-dr-stoptag": "forbidden", "i-dr-held": "rejected", "i-dr-gone": "failed", "i-dr-prot": "skipped"} {
		if expect[id] != want {
			t.Errorf("%s: expect %q, want %q", id, expect[id], want)
		}
	}
	if !strings.Contains(errOut, summary) {
		t.Errorf("-o json: the summary is not on stderr:\n%s", errOut)
	}
	if n := f.sim.Stats().StopCalls; n != 0 {
		t.Errorf("%d stop calls in a dry run", n)
	}
	s, _ := f.js.Stream(context.Background(), "BCCSTOP_COMMANDS_V2")
	if info, _ := s.Info(context.Background()); info.State.LastSeq != 0 {
		t.Errorf("%d commands published in a dry run", info.State.LastSeq)
	}
}

// TestDryRunNothingWouldStopExits6: a dry run in which no command would
// stop anything (all Stopped, held or unknown; or no instance matches)
// says so and exits 6; without BCE credentials the status is not checked,
// which it says, and the targets count as ones to stop.
func TestDryRunNothingWouldStopExits6(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Stopped, "i-dn-stopped")
	f.sim.Seed(fakebcc.Running, "i-dn-run")
	for _, args := range [][]string{
		{"stop", "--dry-run", "i-dn-stopped", "i-dn-gone"},
		{"stop", "--dry-run", "--tag", "env=none"},
	} {
		out, errOut, code := run(t, f.cliEnv(t), args...)
		if code != 6 || !strings.Contains(out+errOut, "nothing") {
			t.Errorf("bccstop %s: exit %d, want 6\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if out, _, _ := run(t, f.cliEnv(t), "stop", "--dry-run", "i-dn-stopped"); !strings.Contains(out, "0 would stop") || !strings.Contains(out, "nothing would be stopped") {
		t.Errorf("all forbidden:\n%s", out)
	}

	out, errOut, code := run(t, []string{"NATS_URL=" + f.url}, "stop", "--dry-run", "i-dn-stopped", "i-dn-run")
	if code != 0 || !strings.Contains(errOut, "status not checked") || !strings.Contains(errOut, "BCE_ACCESS_KEY_ID") ||
		!strings.Contains(planRow(out, "i-dn-stopped"), "unknown") || !strings.Contains(out, "2 status unknown") {
		t.Errorf("without credentials: exit %d\n%s%s", code, out, errOut)
	}
}
