package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// stopFixture is NATS, the simulator and a worker, ready for `bccstop stop`.
type stopFixture struct {
	url    string
	sim    *fakebcc.Server
	simURL string
	js     jetstream.JetStream
}

func newStopFixture(t *testing.T, extraEnv ...string) stopFixture {
	t.Helper()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), append([]string{"BCCSTOP_CONCURRENCY=64"}, extraEnv...)...), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	return stopFixture{url: srv.ClientURL(), sim: sim, simURL: simURL, js: js}
}

// TestStopThousandMixed: 1,000 ids (800 running, 150 stopped, 50 unknown)
// from a file give the right summary, one JSON line per result and exit 1;
// running the same batch again makes no API call and reports the same.
func TestStopThousandMixed(t *testing.T) {
	f := newStopFixture(t)
	var fleetIDs []string
	want := map[string]messages.Outcome{}
	for i := range 1000 {
		id := fmt.Sprintf("i-bulk%04d", i)
		switch {
		case i < 800:
			f.sim.SetStatus(id, fakebcc.Running)
			want[id] = messages.Succeeded
		case i < 950:
			f.sim.SetStatus(id, fakebcc.Stopped)
			want[id] = messages.Forbidden
		default:
			want[id] = messages.Failed // unknown to the API: 404
		}
		fleetIDs = append(fleetIDs, id)
	}
	file := filepath.Join(t.TempDir(), "fleet.txt")
	content := "# the fleet to stop\n\n" + strings.Join(fleetIDs, "\n") + "\n" + fleetIDs[0] + "\n" // a duplicate
	os.WriteFile(file, []byte(content), 0o600)
	env := []string{"NATS_URL=" + f.url}

	run := func() (*proc, int) {
		p := start(t, env, "stop", "--file", file, "--batch-id", "job-42", "--output", "json", "--timeout", "60s")
		return p, p.Wait(90 * time.Second)
	}
	p, code := run()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (some failed); stderr:\n%s", code, tail(p.Stderr.String(), 2000))
	}
	checkJSON := func(p *proc) {
		t.Helper()
		got := map[string]messages.Outcome{}
		for _, line := range lines(p.Stdout.String()) {
			var ev messages.ResultEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("stdout line is not a result event: %q", line)
			}
			if _, dup := got[ev.Data.InstanceID]; dup {
				t.Errorf("%s reported twice", ev.Data.InstanceID)
			}
			got[ev.Data.InstanceID] = ev.Data.Outcome
			if ev.Data.CommandID != "job-42."+ev.Data.InstanceID {
				t.Errorf("command id %s", ev.Data.CommandID)
			}
		}
		if len(got) != 1000 {
			t.Errorf("%d JSON lines, want 1000", len(got))
		}
		for id, o := range want {
			if got[id] != o {
				t.Errorf("%s: %s, want %s", id, got[id], o)
			}
		}
		errOut := p.Stderr.String()
		for _, s := range []string{"stopping 1000 instances (1000 by id, 1 duplicate id ignored), batch job-42",
			"1000 commands in", "800 succeeded, 150 forbidden, 50 failed, 0 rejected", "Not succeeded:", "i-bulk0999  failed     NoSuchObject"} {
			if !strings.Contains(errOut, s) {
				t.Errorf("stderr lacks %q:\n%s", s, tail(errOut, 1500))
			}
		}
	}
	checkJSON(p)
	calls := f.sim.Stats().StopCalls
	if calls != 1000 {
		t.Errorf("%d stop calls, want 1000", calls)
	}

	// The same job again, at once: JetStream drops the repeats, the earlier
	// outcomes are read back from the results stream.
	p, code = run()
	if code != 1 {
		t.Fatalf("second run: exit %d", code)
	}
	checkJSON(p)
	if !strings.Contains(p.Stderr.String(), "1000 commands had been published before") {
		t.Errorf("second run does not say the commands were published before")
	}
	// And again once the de-duplication window is over: the commands are
	// stored anew and the workers answer them from the ledger.
	s, _ := f.js.Stream(context.Background(), "BCCSTOP_COMMANDS_V2")
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 100 * time.Millisecond
	if _, err := f.js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	p, code = run()
	if code != 1 {
		t.Fatalf("third run: exit %d", code)
	}
	checkJSON(p)
	if got := f.sim.Stats().StopCalls; got != calls {
		t.Errorf("re-running the batch made %d new API calls, want 0", got-calls)
	}
}

func TestStopExitCodes(t *testing.T) {
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-up1", "i-up2", "i-up3")
	f.sim.Seed(fakebcc.Stopped, "i-down1")
	env := []string{"NATS_URL=" + f.url}
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"all succeed, flags among the ids", []string{"stop", "i-up1", "--force", "i-up2"}, 0, "2 succeeded"},
		{"forbidden", []string{"stop", "i-up3", "i-down1"}, 3, "1 forbidden"},
		{"bad id", []string{"stop", "i-ok", "not-an-id"}, 2, `"not-an-id" is not an instance id`},
		{"no ids", []string{"stop"}, 2, "no targets"},
		{"bad output", []string{"stop", "--output", "xml", "i-a"}, 2, "--output must be text or json"},
		{"bad batch id", []string{"stop", "--batch-id", ".x", "i-a"}, 2, "--batch-id"},
		{"no NATS", []string{"stop", "--server", "nats://127.0.0.1:1", "i-a"}, 5, "connect to NATS"},
		{"no wait", []string{"stop", "--wait=false", "i-nowait"}, 0, "not waiting"},
		{"help", []string{"stop", "--help"}, 0, "Exit status (the same for every command):"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, env, tc.args...)
			code := p.Wait(30 * time.Second)
			out := p.Stdout.String() + p.Stderr.String()
			if code != tc.code || !strings.Contains(out, tc.says) {
				t.Fatalf("exit %d (want %d), output:\n%s", code, tc.code, out)
			}
		})
	}
}

// TestStopTimesOut: with no worker running, the wait ends at --timeout with
// exit 4 and says how to resume.
func TestStopTimesOut(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "BCCSTOP_COMMANDS_V2", Subjects: []string{messages.CommandSubject}}); err != nil {
		t.Fatal(err)
	}
	p := start(t, []string{"NATS_URL=" + srv.ClientURL()}, "stop", "--timeout", "1s", "--batch-id", "late", "i-late1", "i-late2")
	if code := p.Wait(20 * time.Second); code != 4 {
		t.Fatalf("exit %d, want 4", code)
	}
	out := p.Stdout.String()
	for _, s := range []string{"timed out after 1s", "2 without a result", "i-late1", "--batch-id late"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

// TestStopProgressOnATerminal runs a 200-id job in a pseudo-terminal and
// checks the live progress bar and the summary a user sees.
func TestStopProgressOnATerminal(t *testing.T) {
	f := newStopFixture(t)
	f.sim.SetLatency(5*time.Millisecond, 5*time.Millisecond)
	var ids []string
	for i := range 200 {
		id := fmt.Sprintf("i-tty%03d", i)
		status := fakebcc.Running
		if i%20 == 0 {
			status = fakebcc.Stopped
		}
		f.sim.SetStatus(id, status)
		ids = append(ids, id)
	}
	file := filepath.Join(t.TempDir(), "ids")
	os.WriteFile(file, []byte(strings.Join(ids, "\n")), 0o600)

	cmd := execCommand(binary, "stop", "--file", file, "--batch-id", "tty-run")
	cmd.Env = []string{"NATS_URL=" + f.url, "PATH=" + os.Getenv("PATH"), "TERM=xterm", "XDG_CONFIG_HOME=" + t.TempDir()}
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var screen strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := tty.Read(buf)
		screen.Write(buf[:n])
		if err != nil {
			break
		}
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exit %d, want 3 (some forbidden)", code)
	}
	out := screen.String()
	for _, s := range []string{"200/200", "succeeded 190 · forbidden 10", "200 commands in", "190 succeeded, 10 forbidden", "i-tty000", "\r"} {
		if !strings.Contains(out, s) {
			t.Errorf("terminal output lacks %q", s)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("terminal output:\n%s", out)
	}
}

// TestStopReRunWithOtherFlagsIsAConflict: re-running a batch with --force
// added does not quietly report the first run's results: the workers refuse
// the new commands (CommandIdConflict), nothing is stopped, and the summary
// says why and what to do.
func TestStopReRunWithOtherFlagsIsAConflict(t *testing.T) {
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-cf1", "i-cf2")
	env := []string{"NATS_URL=" + f.url}
	p := start(t, env, "stop", "--batch-id", "cf-job", "i-cf1", "i-cf2")
	if code := p.Wait(30 * time.Second); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, p.Stdout.String())
	}
	calls := f.sim.Stats().StopCalls
	p = start(t, env, "stop", "--batch-id", "cf-job", "i-cf1", "i-cf2", "--force")
	if code := p.Wait(30 * time.Second); code != 1 {
		t.Fatalf("re-run with --force: exit %d, want 1\n%s", code, p.Stdout.String())
	}
	out := p.Stdout.String()
	for _, s := range []string{"2 rejected", "2 commands conflict with an earlier use of batch cf-job", "use a new --batch-id", "CommandIdConflict"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if got := f.sim.Stats().StopCalls; got != calls {
		t.Errorf("the conflicting re-run made %d stop calls", got-calls)
	}
}

// TestStopDisplayStaysHonestWhileResultsAreLate: with no worker answering,
// the progress lines keep coming and say how long results have been late,
// instead of freezing at stale counts.
func TestStopDisplayStaysHonestWhileResultsAreLate(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "BCCSTOP_COMMANDS_V2", Subjects: []string{messages.CommandSubject}}); err != nil {
		t.Fatal(err)
	}
	p := start(t, []string{"NATS_URL=" + srv.ClientURL()}, "stop", "--timeout", "8s", "--batch-id", "late-display", "i-late1")
	p.Wait(30 * time.Second)
	out := p.Stderr.String()
	if !strings.Contains(out, "no result for 5s") && !strings.Contains(out, "no result for 6s") && !strings.Contains(out, "no result for 7s") {
		t.Errorf("the progress never said results were late:\n%s", out)
	}
	if n := strings.Count(out, "0/1 results"); n < 2 {
		t.Errorf("%d progress lines in 8s of waiting, want one every few seconds:\n%s", n, out)
	}
}

// TestStopNothingToStopExits6: tags that match no instance, or targets
// that are all skipped, are not a silent success: one clear line, exit 6
// (nothing to do), nothing on stdout, nothing published.
func TestStopNothingToStopExits6(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-stg1", "i-prot")
	f.sim.SetTags("i-stg1", map[string]string{"env": "staging"})
	env := f.cliEnv(t, "BCCSTOP_PROTECTED_INSTANCES=i-prot")
	tests := []struct {
		args []string
		says []string
	}{
		{[]string{"stop", "--tag", "env=nothing"}, []string{"nothing to stop", "no instance carries --tag env=nothing"}},
		{[]string{"stop", "--tag", "env=nothing", "--output", "json"}, []string{"nothing to stop", "--tag env=nothing"}},
		{[]string{"stop", "--tag", "env=staging", "--tag", "team=none"}, []string{"nothing to stop", "--tag env=staging --tag team=none"}},
		{[]string{"stop", "i-prot"}, []string{"skipped i-prot (protected)", "nothing to stop: the 1 instance found is skipped"}},
	}
	for _, tc := range tests {
		out, errOut, code := run(t, env, tc.args...)
		if code != 6 || out != "" {
			t.Errorf("bccstop %s: exit %d (want 6), stdout %q (want none)\n%s", strings.Join(tc.args, " "), code, out, errOut)
		}
		for _, want := range tc.says {
			if !strings.Contains(errOut, want) {
				t.Errorf("bccstop %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), want, errOut)
			}
		}
		if strings.Contains(errOut, "stopping 0") {
			t.Errorf("bccstop %s: %s", strings.Join(tc.args, " "), errOut)
		}
	}
	s, err := f.js.Stream(context.Background(), "BCCSTOP_COMMANDS_V2")
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Info(context.Background()); info.State.LastSeq != 0 || f.sim.Stats().StopCalls != 0 {
		t.Errorf("%d commands published, %d stop calls: want none", info.State.LastSeq, f.sim.Stats().StopCalls)
	}
}

// TestStopWhilePausedSaysSo: a stop sent while the fleet is paused says at
// once, on stderr, that it is paused (by whom, since when, why, how to
// resume), and is published all the same: the command waits in the stream
// and is carried out once the fleet is resumed.
func TestStopWhilePausedSaysSo(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-wait1")
	env := f.cliEnv(t)
	if _, errOut, code := run(t, env, "pause", "--reason", "INC-9 freeze", "--requested-by", "alice"); code != 0 {
		t.Fatalf("pause: exit %d\n%s", code, errOut)
	}
	p := start(t, env, "stop", "i-wait1", "--batch-id", "paused", "--timeout", "2s", "--output", "json")
	said := waitOutput(t, p.Stderr, "bccstop resume", 10*time.Second)
	for _, want := range []string{"the fleet is PAUSED", "by alice", "since ", `"INC-9 freeze"`, "until resumed",
		"published all the same", "waits in the stream", "--batch-id paused"} {
		if !strings.Contains(said, want) {
			t.Errorf("stderr lacks %q:\n%s", want, said)
		}
	}
	if strings.Contains(said, "timed out") {
		t.Errorf("the pause is said only at the end:\n%s", said)
	}
	if code := p.Wait(20 * time.Second); code != 4 {
		t.Errorf("exit %d, want 4 (no result while paused)\n%s", code, p.Stderr.String())
	}
	if n := f.sim.StopCalls("i-wait1"); n != 0 {
		t.Fatalf("%d stop calls while paused", n)
	}
	if _, errOut, code := run(t, env, "resume"); code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, errOut)
	}
	testenv.Eventually(t, 15*time.Second, "the command sent while paused was not carried out after resume", func() bool {
		return f.sim.StopCalls("i-wait1") == 1
	})
	// Running again: not a word about pauses.
	f.sim.Seed(fakebcc.Running, "i-wait2")
	if _, errOut, code := run(t, env, "stop", "i-wait2"); code != 0 || strings.Contains(errOut, "PAUSED") {
		t.Errorf("stop while running: exit %d\n%s", code, errOut)
	}
}
