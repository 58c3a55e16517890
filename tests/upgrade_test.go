package tests

// Issue 22: upgrades that lose nothing. The previous release is built
// from git history and run on a store; this version then carries it over.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// previousRelease is the release an upgrade starts from: the commit whose
// store layout deployments have now. Move it forward with each release.
const previousRelease = "7733bc52a6b9bd364cbf575bdd60cb357117e284"

var (
	previousOnce sync.Once
	previousBin  string
	previousErr  error
)

// previousBinary builds bccstop at previousRelease (once per test run) from
// this clone's git history.
func previousBinary(t *testing.T) string {
	t.Helper()
	previousOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(binary), "previous")
		if previousErr = os.MkdirAll(dir, 0o755); previousErr != nil {
			return
		}
		if out, err := exec.Command("git", "cat-file", "-e", previousRelease+"^{commit}").CombinedOutput(); err != nil {
			previousErr = fmt.Errorf("the previous release %s is not in this clone's history (a shallow clone? fetch it with git fetch --unshallow): %v %s", previousRelease, err, out)
			return
		}
		archive := exec.Command("sh", "-c", "git archive "+previousRelease+" | tar -x -C "+dir)
		archive.Dir = ".." // the whole tree, not this directory's
		if out, err := archive.CombinedOutput(); err != nil {
			previousErr = fmt.Errorf("git archive %s: %v %s", previousRelease, err, out)
			return
		}
		previousBin = filepath.Join(dir, "bccstop-previous")
		build := exec.Command("go", "build", "-o", previousBin, "./cmd/bccstop")
		build.Dir = dir
		if out, err := build.CombinedOutput(); err != nil {
			previousErr = fmt.Errorf("build the previous release: %v\n%s", err, out)
		}
	})
	if previousErr != nil {
		t.Fatal(previousErr)
	}
	return previousBin
}

// upgradeStore is a NATS server, the simulator, and the environments of
// workers and command lines of either release against them.
type upgradeStore struct {
	url     string
	sim     *fakebcc.Server
	simURL  string
	js      jetstream.JetStream
	results *testenv.Results
	live    *testenv.Published
	old     string // the previous release's binary
}

func newUpgradeStore(t *testing.T) *upgradeStore {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	nc, js := testenv.Connect(t, srv.ClientURL())
	return &upgradeStore{url: srv.ClientURL(), sim: sim, simURL: simURL, js: js, live: testenv.SubscribeResults(t, nc), old: previousBinary(t)}
}

// oldEnv is the environment of a worker of the previous release (which
// takes the secret from BCE_SECRET_ACCESS_KEY).
func (s *upgradeStore) oldEnv(addr, id string, extra ...string) []string {
	return append([]string{
		"NATS_URL=" + s.url,
		"BCE_ACCESS_KEY_ID=" + testenv.Credentials.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + testenv.Credentials.SecretAccessKey,
		"BCC_ENDPOINT=" + s.simURL,
		"BCCSTOP_HTTP_ADDR=" + addr,
		"BCCSTOP_WORKER_ID=" + id,
		"BCCSTOP_BACKOFF=100ms,200ms",
		"BCCSTOP_ACK_WAIT=3s",
		"BCCSTOP_RATE_LIMIT=0",
		"BCCSTOP_STOP_WAIT_INTERVALS=300ms",
		"BCCSTOP_LOG_LEVEL=info",
		"HOME=/nonexistent",
	}, extra...)
}

func (s *upgradeStore) newEnv(t *testing.T, addr, id string, extra ...string) []string {
	return workerEnv(t, s.url, s.simURL, addr, append([]string{"BCCSTOP_WORKER_ID=" + id, "BCCSTOP_STOP_WAIT_INTERVALS=300ms", "BCCSTOP_LOG_LEVEL=info"}, extra...)...)
}

// oldCLI runs the previous release's command line.
func (s *upgradeStore) oldCLI(t *testing.T, args ...string) string {
	t.Helper()
	p := startBinary(t, s.old, []string{"NATS_URL=" + s.url, "HOME=" + t.TempDir()}, args...)
	if code := p.Wait(20 * time.Second); code != 0 {
		t.Fatalf("previous release: bccstop %s: exit %d\n%s%s", strings.Join(args, " "), code, p.Stdout, p.Stderr)
	}
	return p.Stdout.String()
}

// newCLI runs this version's command line.
func (s *upgradeStore) newCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	p := start(t, []string{"NATS_URL=" + s.url, "HOME=" + t.TempDir()}, args...)
	code := p.Wait(20 * time.Second)
	return p.Stdout.String() + p.Stderr.String(), code
}

// publish stores a command for a Running instance i-<id>.
func (s *upgradeStore) publish(t *testing.T, id, extra string) {
	t.Helper()
	s.sim.SetStatus("i-"+id, fakebcc.Running)
	publishCommand(t, s.js, fmt.Sprintf(`{"commandId":%q,"instanceId":"i-%s"%s}`, id, id, extra))
}

// stopCalls counts the stop calls the simulator served for instance.
func (s *upgradeStore) stopCalls(instance string) int { return s.sim.StopCalls(instance) }

// TestUpgradeFromThePreviousRelease: the previous release concludes
// commands, leaves one waiting for Stopped, one scheduled and a backlog
// queued behind an operator's pause, and stops. This version, started on
// the same store (and, in the second case, killed in the middle of its
// migration and started again), carries it all over: the pause still
// holds the backlog and names its operator; once resumed, the backlog gets
// its results once, in order; a concluded command repeated gets its first
// result with no call; the waiting one ends Stopped with its one stop; the
// schedule fires at its time, once. Every count is the simulator's.
func TestUpgradeFromThePreviousRelease(t *testing.T) {
	for _, killed := range []bool{false, true} {
		name := map[bool]string{false: "in place", true: "killed mid-migration"}[killed]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newUpgradeStore(t)
			began := time.Now()

			// The previous release at work.
			oldAddr := freeAddr(t)
			old := startBinary(t, s.old, s.oldEnv(oldAddr, "old"), "worker")
			waitHTTP(t, "http://"+oldAddr+"/readyz", 200, 30*time.Second)
			s.results = testenv.ReadResults(t, s.js, "BCCSTOP_RESULTS")
			for i := range 3 {
				s.publish(t, fmt.Sprintf("done-%d", i), "")
			}
			first := s.results.Wait(t, 15*time.Second, "done-0", "done-1", "done-2")
			s.publish(t, "wait-1", `,"waitUntilStopped":true`)
			testenv.Eventually(t, 15*time.Second, "wait-1's stop", func() bool { return s.sim.AppliedStops()["i-wait-1"] == 1 })
			fireAt := began.Add(40 * time.Second).UTC().Truncate(time.Second)
			s.sim.SetStatus("i-sched-1", fakebcc.Running)
			s.oldCLI(t, "stop", "--at", fireAt.Format(time.RFC3339), "--batch-id", "upg", "--wait=false", "i-sched-1")
			s.oldCLI(t, "pause", "--reason", "upgrading bccstop", "--requested-by", "alice")
			var queued []string
			for i := range 10 {
				id := fmt.Sprintf("queued-%d", i)
				queued = append(queued, id)
				s.publish(t, id, "")
			}
			if code := old.Signal(syscall.SIGTERM, 20*time.Second); code != 0 {
				t.Fatalf("the previous release exited %d", code)
			}
			if n := len(s.results.All()); n != 3 {
				t.Fatalf("%d results before the upgrade, want done-0..2's", n)
			}

			// This version on the same store.
			addr := freeAddr(t)
			env := s.newEnv(t, addr, "new", "BCCSTOP_CONCURRENCY=1")
			if killed {
				w := start(t, env, "worker")
				testenv.Eventually(t, 30*time.Second, "the migration to begin", func() bool {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					defer cancel()
					st, err := s.js.Stream(ctx, "BCCSTOP_COMMANDS")
					return err == nil && !slices.Contains(st.CachedInfo().Config.Subjects, messages.CommandSubject)
				})
				w.Signal(syscall.SIGKILL, 10*time.Second)
			}
			w := start(t, env, "worker")
			waitHTTP(t, "http://"+addr+"/readyz", 200, 30*time.Second)

			// The operator's pause holds, on both layouts.
			s.publish(t, "after-1", "")
			time.Sleep(3 * time.Second)
			if n := len(s.results.All()); n != 3 {
				t.Fatalf("%d results while the fleet is paused, want 3:\n%s", n, testenv.Tail(w.Stderr.String(), 3000))
			}
			status, code := s.newCLI(t, "status")
			if code != 0 || !strings.Contains(status, "alice") || !strings.Contains(status, "upgrading bccstop") {
				t.Errorf("status (exit %d) does not show alice's pause:\n%s", code, status)
			}
			if out, code := s.newCLI(t, "resume", "--reason", "upgraded", "--requested-by", "alice"); code != 0 {
				t.Fatalf("resume: exit %d\n%s", code, out)
			}

			// The backlog, once each, in order.
			got := s.results.Wait(t, 30*time.Second, append(queued, "after-1")...)
			var order []string
			for _, r := range s.results.All() {
				if strings.HasPrefix(r.Event.Data.CommandID, "queued-") {
					order = append(order, r.Event.Data.CommandID)
				}
			}
			if !slices.Equal(order, queued) {
				t.Errorf("the backlog's results came in the order %v, want %v", order, queued)
			}
			for _, id := range append(queued, "after-1") {
				if d := got[id].Event.Data; d.Outcome != messages.Succeeded {
					t.Errorf("%s: %s %s (%s)", id, d.Outcome, d.Code, d.Message)
				}
			}

			// A command concluded before the upgrade, repeated.
			calls := s.stopCalls("i-done-0")
			publishCommand(t, s.js, `{"commandId":"done-0","instanceId":"i-done-0"}`)
			testenv.Eventually(t, 15*time.Second, "done-0's repeat", func() bool { return len(s.live.ByID("done-0")) == 2 })
			if again := s.live.ByID("done-0")[1].Event; again.ID != first["done-0"].Event.ID || again.Data.Outcome != messages.Succeeded {
				t.Errorf("done-0's repeat answered %s %s, its first result was %s", again.ID, again.Data.Outcome, first["done-0"].Event.ID)
			}
			if n := s.stopCalls("i-done-0"); n != calls {
				t.Errorf("done-0's repeat made %d stop calls", n-calls)
			}

			// The command waiting for Stopped.
			s.sim.SetStatus("i-wait-1", fakebcc.Stopped)
			if d := s.results.Wait(t, 15*time.Second, "wait-1")["wait-1"].Event.Data; d.Outcome != messages.Succeeded || d.InstanceStatus != fakebcc.Stopped {
				t.Errorf("wait-1: %s %s, instanceStatus %q (%s)", d.Outcome, d.Code, d.InstanceStatus, d.Message)
			}

			// The schedule, at its time.
			sched := s.results.Wait(t, time.Until(fireAt)+20*time.Second, "upg.i-sched-1")["upg.i-sched-1"]
			if d := sched.Event.Data; d.Outcome != messages.Succeeded {
				t.Errorf("the schedule: %s %s (%s)", d.Outcome, d.Code, d.Message)
			}
			if at := sched.Event.Time; at.Before(fireAt) {
				t.Errorf("the schedule fired at %s, before its time %s", at, fireAt)
			}
			time.Sleep(2 * time.Second)

			for inst, n := range s.sim.StopCallsByInstance() {
				if n != 1 {
					t.Errorf("%s: %d stop calls, want 1", inst, n)
				}
			}
			for _, r := range s.live.IDs() {
				if n := len(s.live.ByID(r)); n != 1 && r != "done-0" {
					t.Errorf("%s published %d results", r, n)
				}
			}
			if n := len(s.sim.StopCallsByInstance()); n != 3+1+1+10+1 {
				t.Errorf("%d instances stopped, want 16", n)
			}

			// Drained, as status says; the operator removes the old stream,
			// and the worker goes on.
			if out, _ := s.newCLI(t, "status"); !strings.Contains(out, "is drained: remove it") {
				t.Errorf("status does not say the old stream is drained:\n%s", out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.js.DeleteStream(ctx, "BCCSTOP_COMMANDS"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			s.publish(t, "last-1", "")
			if d := s.results.Wait(t, 15*time.Second, "last-1")["last-1"].Event.Data; d.Outcome != messages.Succeeded {
				t.Errorf("last-1: %s %s", d.Outcome, d.Code)
			}
			if code, b := readyz(t, addr); code != 200 {
				t.Errorf("/readyz after the old stream was removed: %d %s", code, b)
			}
			if strings.Contains(w.Stderr.String(), `"level":"ERROR"`) {
				t.Errorf("the worker logged errors:\n%s", grepLines(w.Stderr.String(), `"level":"ERROR"`))
			}
		})
	}
}

// TestRollingUpdateActsOnce: a rolling update. A worker of the previous
// release is busy with a backlog when a worker of this version starts on
// the same store: both drain the old commands stream together, and every
// instance is stopped once, every command answered once. A worker of the
// previous release that starts anew (provisioning, as by default) refuses,
// loudly: it never becomes ready and says why. One that starts without
// provisioning works beside this version, and still nothing is acted on
// twice.
func TestRollingUpdateActsOnce(t *testing.T) {
	t.Parallel()
	const backlog = 300
	s := newUpgradeStore(t)
	s.sim.SetLatency(20*time.Millisecond, 10*time.Millisecond)
	oldAddr := freeAddr(t)
	old := startBinary(t, s.old, s.oldEnv(oldAddr, "old", "BCCSTOP_CONCURRENCY=4"), "worker")
	waitHTTP(t, "http://"+oldAddr+"/readyz", 200, 30*time.Second)
	s.results = testenv.ReadResults(t, s.js, "BCCSTOP_RESULTS")
	var ids []string
	for i := range backlog {
		id := fmt.Sprintf("roll-%03d", i)
		ids = append(ids, id)
		s.publish(t, id, "")
	}
	testenv.Eventually(t, 15*time.Second, "the previous release to be busy", func() bool { return len(s.results.All()) >= 20 })

	addr := freeAddr(t)
	w := start(t, s.newEnv(t, addr, "new", "BCCSTOP_CONCURRENCY=4"), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 30*time.Second)
	got := s.results.Wait(t, 60*time.Second, ids...)
	bySource := map[string]int{}
	for _, id := range ids {
		r := got[id].Event
		bySource[r.Source]++
		if r.Data.Outcome != messages.Succeeded {
			t.Errorf("%s: %s %s (%s)", id, r.Data.Outcome, r.Data.Code, r.Data.Message)
		}
	}
	if bySource["bccstop/old"] == 0 || bySource["bccstop/new"] == 0 {
		t.Errorf("results by worker %v: both releases should have drained the backlog together", bySource)
	}
	if code := old.Signal(syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Errorf("the previous release exited %d", code)
	}

	// The previous release, started anew with provisioning: it refuses.
	again := startBinary(t, s.old, s.oldEnv(freeAddr(t), "old-again"), "worker")
	testenv.Eventually(t, 20*time.Second, "the previous release to say why it cannot start", func() bool {
		return strings.Contains(again.Stderr.String(), "overlap")
	})
	select {
	case <-again.Done():
	case <-time.After(3 * time.Second):
		if strings.Contains(again.Stderr.String(), "consuming commands") {
			t.Error("the previous release started consuming on a store of the new layout")
		}
	}
	again.Signal(syscall.SIGKILL, 10*time.Second)
	t.Logf("the previous release, started anew, says:\n%s", testenv.Tail(again.Stderr.String(), 1500))

	// Without provisioning, beside this version.
	besideAddr := freeAddr(t)
	startBinary(t, s.old, s.oldEnv(besideAddr, "old-beside", "BCCSTOP_PROVISION=false"), "worker")
	waitHTTP(t, "http://"+besideAddr+"/readyz", 200, 30*time.Second)
	var more []string
	for i := range 50 {
		id := fmt.Sprintf("beside-%02d", i)
		more = append(more, id)
		s.publish(t, id, "")
	}
	// A command of the backlog repeated, and one more for an instance
	// stopped already by the backlog under another id.
	publishCommand(t, s.js, `{"commandId":"roll-000","instanceId":"i-roll-000"}`)
	for id, r := range s.results.Wait(t, 30*time.Second, more...) {
		if r.Event.Data.Outcome != messages.Succeeded {
			t.Errorf("%s: %s %s", id, r.Event.Data.Outcome, r.Event.Data.Code)
		}
	}
	testenv.Eventually(t, 15*time.Second, "roll-000's repeat", func() bool { return len(s.live.ByID("roll-000")) == 2 })
	if rs := s.live.ByID("roll-000"); rs[1].Event.ID != rs[0].Event.ID {
		t.Errorf("roll-000's repeat answered %s, its result was %s", rs[1].Event.ID, rs[0].Event.ID)
	}
	time.Sleep(time.Second)
	for inst, n := range s.sim.StopCallsByInstance() {
		if n != 1 {
			t.Errorf("%s: %d stop calls, want 1", inst, n)
		}
	}
	if n := len(s.sim.StopCallsByInstance()); n != backlog+50 {
		t.Errorf("%d instances stopped, want %d", n, backlog+50)
	}
	for _, id := range append(ids[1:], more...) {
		if n := s.results.Count(id); n != 1 {
			t.Errorf("%s has %d results stored", id, n)
		}
	}

	// An operator still using the previous release's command line during
	// the update: its pause (of the old consumer alone) holds the whole
	// fleet; this version's resume ends it.
	s.oldCLI(t, "pause", "--reason", "mid-update", "--requested-by", "bob")
	time.Sleep(3 * time.Second) // the workers look every 2 s
	s.publish(t, "held-1", "")
	time.Sleep(3 * time.Second)
	if n := s.results.Count("held-1"); n != 0 {
		t.Error("a command ran while the previous release's bccstop pause held the fleet")
	}
	if out, code := s.newCLI(t, "resume", "--requested-by", "bob"); code != 0 {
		t.Fatalf("resume: exit %d\n%s", code, out)
	}
	s.results.Wait(t, 15*time.Second, "held-1")
	if n := s.stopCalls("i-held-1"); n != 1 {
		t.Errorf("held-1: %d stop calls", n)
	}

	if strings.Contains(w.Stderr.String(), `"level":"ERROR"`) {
		t.Errorf("this version logged errors:\n%s", grepLines(w.Stderr.String(), `"level":"ERROR"`))
	}
}
