package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
)

// TestStopSaysWhenTheFleetPausesMidRun: a bccstop stop whose commands trip
// the blast-radius budget waited out its whole --timeout showing only "no
// result for 9m58s", and said the fleet was paused nowhere. Now it says so
// within seconds of the trip (whose pause, why), the progress lines carry
// it, and the end of the report says what the commands without a result
// wait for. A pause that ends during the run is said too.
func TestStopSaysWhenTheFleetPausesMidRun(t *testing.T) {
	t.Parallel()
	t.Run("budget trips", func(t *testing.T) {
		t.Parallel()
		f := startGuardFleet(t, 1, fakebcc.Options{}, "BCCSTOP_MAX_STOPS=2/1m")
		var ids []string
		for i := range 5 {
			id := fmt.Sprintf("i-midrun%d", i)
			f.sim.SetStatus(id, fakebcc.Running)
			ids = append(ids, id)
		}
		began := time.Now()
		p := start(t, []string{"NATS_URL=" + f.url}, append([]string{"stop", "--timeout", "20s", "--batch-id", "midrun"}, ids...)...)
		out := waitOutput(t, p.Stderr, "the fleet was PAUSED while this ran", 12*time.Second)
		t.Logf("said %s after the stop began", time.Since(began).Round(100*time.Millisecond))
		if !strings.Contains(out, `"blast-radius budget: 2 stops in 1m reached"`) {
			t.Errorf("the pause's line does not say why:\n%s", out)
		}
		waitOutput(t, p.Stderr, "fleet PAUSED: blast-radius budget", 10*time.Second) // in a progress line
		if code := p.Wait(30 * time.Second); code != 4 {
			t.Errorf("exit %d, want 4 (results missing)", code)
		}
		if s := p.Stdout.String(); !strings.Contains(s, "3 without a result") || !strings.Contains(s, "The fleet is PAUSED") {
			t.Errorf("the report does not say the fleet is paused:\n%s", s)
		}
		if n := f.sim.Stats().StopCalls; n != 2 {
			t.Errorf("%d stop calls, want 2 (the budget)", n)
		}
	})
	t.Run("operator pauses then resumes", func(t *testing.T) {
		t.Parallel()
		// The answer takes 6 s, so the run is still waiting when the
		// resume is read.
		f := startGuardFleet(t, 1, fakebcc.Options{Latency: 6 * time.Second})
		cli := cliAt(t, f.url)
		if out, code := cli("pause", "--reason", "INC-7 look first"); code != 0 {
			t.Fatalf("pause: exit %d\n%s", code, out)
		}
		f.sim.SetStatus("i-midrun9", fakebcc.Running)
		p := start(t, []string{"NATS_URL=" + f.url}, "stop", "--timeout", "30s", "i-midrun9")
		waitOutput(t, p.Stderr, "the fleet is PAUSED", 10*time.Second)
		time.Sleep(time.Second)
		if out, code := cli("resume", "--reason", "looked"); code != 0 {
			t.Fatalf("resume: exit %d\n%s", code, out)
		}
		waitOutput(t, p.Stderr, "the fleet was resumed", 10*time.Second)
		if code := p.Wait(30 * time.Second); code != 0 {
			t.Errorf("exit %d, want 0\n%s\n%s", code, p.Stdout, p.Stderr)
		}
		if s := p.Stderr.String(); strings.Contains(s, "the fleet was PAUSED while this ran") {
			t.Errorf("the pause in force at the start is said again as a new one:\n%s", s)
		}
	})
}
