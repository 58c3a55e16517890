package tests

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestDevRefusesAStoreInUse: a second `bccstop dev` (on other ports, as the
// README's port-taken fallback runs it) does not share the first one's
// JetStream store: it refuses, saying how to give it its own.
func TestDevRefusesAStoreInUse(t *testing.T) {
	store := t.TempDir()
	first := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0")
	waitOutput(t, first.Stdout, "Ctrl-C stops everything", 20*time.Second)
	second := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0")
	if code := second.Wait(15 * time.Second); code != 2 {
		t.Fatalf("second dev on the same store: exit %d, want 2", code)
	}
	if out := second.Stderr.String(); !strings.Contains(out, "in use by another bccstop dev") || !strings.Contains(out, "--store") {
		t.Errorf("stderr: %s", out)
	}
	if code := first.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("first dev exit %d", code)
	}
	// Once the first is gone, the store is free again.
	third := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0")
	waitOutput(t, third.Stdout, "Ctrl-C stops everything", 20*time.Second)
	third.Signal(syscall.SIGINT, 15*time.Second)
}

// TestDevSeedKnowsOnlyItsInstances: with --seed the simulator holds the
// seed's instances and nothing else, as a real account does: a command for
// an id not in the seed fails, 404 NoSuchObject, instead of stopping an
// instance made up on the spot. dev's banner and --help say so; without a
// seed any id is a Running instance (TestDevPrintedCommandGetsAResult).
func TestDevSeedKnowsOnlyItsInstances(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	seed := filepath.Join(work, "seed.txt")
	write(t, seed, "i-seeded01 Running env=staging\ni-seeded02 Stopped env=staging\n")
	dev := start(t, nil, "dev", "--nats-port", "0", "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0",
		"--store", filepath.Join(work, "store"), "--seed", seed)
	out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", 20*time.Second)
	waitOutput(t, dev.Stderr, "consuming commands", 10*time.Second)
	if !strings.Contains(out, "2 instances from "+seed) || !strings.Contains(out, "any other id is unknown: 404 NoSuchObject") {
		t.Errorf("dev's banner does not say the simulator knows only the seed's instances:\n%s", out)
	}
	url := regexp.MustCompile(`nats://127\.0\.0\.1:\d+`).FindString(out)
	env := []string{"NATS_URL=" + url}

	if o, e, code := run(t, env, "stop", "i-seeded01"); code != 0 || !strings.Contains(o+e, "1 succeeded") {
		t.Errorf("stop of a seeded Running instance: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := run(t, env, "stop", "i-notseeded"); code != 1 || !strings.Contains(o+e, "NoSuchObject") {
		t.Errorf("stop of an id the seed does not have: exit %d (want 1, failed NoSuchObject)\n%s%s", code, o, e)
	}
	if code := dev.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("dev exit status %d", code)
	}

	help, _, _ := run(t, nil, "dev", "--help")
	if flat := strings.Join(strings.Fields(help), " "); !strings.Contains(flat, "with --seed, only the seed's instances exist") {
		t.Errorf("dev --help does not say that with --seed only the seed's instances exist:\n%s", help)
	}
}

// devSimulatorURL is the simulator's URL in dev's banner.
var devSimulatorURL = regexp.MustCompile(`BCC simulator\s+(http://\S+)`)

// TestDevSimulatorKeepsItsAddress: dev's simulator listens on the same
// address every run (127.0.0.1:8900 unless --bcc-addr says otherwise), so a
// BCC_ENDPOINT exported from one run still works in the next, as the NATS
// URL does; an address in use is refused, naming the flag.
func TestDevSimulatorKeepsItsAddress(t *testing.T) {
	const defaultAddr = "127.0.0.1:8900"
	if ln, err := net.Listen("tcp", defaultAddr); err != nil {
		t.Skipf("%s, dev's default simulator address, is in use on this machine: %v", defaultAddr, err)
	} else {
		ln.Close()
	}
	store := t.TempDir()
	var urls []string
	for range 2 {
		dev := start(t, nil, "dev", "--nats-port", "0", "--http-addr", freeAddr(t), "--store", store)
		testenv.Eventually(t, 20*time.Second, "dev printed no banner and did not exit", func() bool {
			select {
			case <-dev.Done():
				return true
			default:
				return strings.Contains(dev.Stdout.String(), "Ctrl-C stops everything")
			}
		})
		if errOut := dev.Stderr.String(); strings.Contains(errOut, defaultAddr+" is in use") {
			// Another program on this machine took it meanwhile.
			t.Skipf("dev could not have its default simulator address: %s", errOut)
		}
		out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", time.Second)
		m := devSimulatorURL.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("dev's banner names no simulator URL:\n%s", out)
		}
		urls = append(urls, m[1])
		if !strings.Contains(out, "BCC_ENDPOINT="+m[1]) {
			t.Errorf("dev's BCC_ENDPOINT hint is not its simulator, %s:\n%s", m[1], out)
		}
		if code := dev.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
			t.Fatalf("dev exit status %d", code)
		}
	}
	if urls[0] != "http://"+defaultAddr || urls[1] != urls[0] {
		t.Errorf("two runs of dev on one store: simulator at %s, then %s; want http://%s both times", urls[0], urls[1], defaultAddr)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, errOut, code := run(t, nil, "dev", "--nats-port", "0", "--http-addr", freeAddr(t), "--store", t.TempDir(), "--bcc-addr", taken.Addr().String())
	if code != 2 || !strings.Contains(errOut, taken.Addr().String()+" is in use") || !strings.Contains(errOut, "--bcc-addr") {
		t.Errorf("dev with its simulator's address taken: exit %d (want 2), stderr:\n%s", code, errOut)
	}
}

// startDev starts bccstop dev on store (free ports) and waits until its
// worker consumes commands; it returns dev, its banner and the environment
// that points bccstop at its NATS.
func startDev(t *testing.T, env []string, store string, args ...string) (*proc, string, []string) {
	t.Helper()
	dev := start(t, env, append([]string{"dev", "--nats-port", "0", "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0", "--store", store}, args...)...)
	out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", 20*time.Second)
	waitOutput(t, dev.Stderr, "consuming commands", 10*time.Second)
	url := regexp.MustCompile(`nats://127\.0\.0\.1:\d+`).FindString(out)
	return dev, out, append(slices.Clone(env), "NATS_URL="+url)
}

// TestDevResetStartsClean: dev keeps its JetStream state between runs (a
// batch stopped in one run is remembered in the next: the same batch with
// other flags is refused, CommandIdConflict), and --reset, after saying what
// it removes, starts clean: the same batch is a new command, and the only
// outcome there is.
func TestDevResetStartsClean(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	stop := func(env []string, args ...string) (string, int) {
		t.Helper()
		o, e, code := run(t, env, append([]string{"stop", "--batch-id", "keep", "i-keep0001"}, args...)...)
		return o + e, code
	}

	dev, _, env := startDev(t, nil, store)
	if out, code := stop(env); code != 0 || !strings.Contains(out, "1 succeeded") {
		t.Fatalf("first run, stop: exit %d\n%s", code, out)
	}
	dev.Signal(syscall.SIGINT, 15*time.Second)

	dev, out, env := startDev(t, nil, store)
	if strings.Contains(out, "--reset") && strings.Contains(out, "removing") {
		t.Errorf("dev without --reset says it removes something:\n%s", out)
	}
	if out, code := stop(env, "--force"); code != 1 || !strings.Contains(out, "CommandIdConflict") {
		t.Errorf("second run: the batch with --force added: exit %d, want 1 and CommandIdConflict (the first run's command is remembered)\n%s", code, out)
	}
	dev.Signal(syscall.SIGINT, 15*time.Second)

	dev, out, env = startDev(t, nil, store, "--reset")
	if want := "bccstop dev --reset: removing " + filepath.Join(store, "jetstream"); !strings.Contains(out, want) {
		t.Errorf("dev --reset does not say what it removes (%q):\n%s", want, out)
	}
	if out, code := stop(env, "--force"); code != 0 || !strings.Contains(out, "1 succeeded") {
		t.Errorf("after --reset, the batch with --force: exit %d, want 0 (a new command)\n%s", code, out)
	}
	if o, e, code := run(t, env, "status"); code != 0 || !strings.Contains(o, "outcomes in the last 1h: 1 succeeded · 0 forbidden · 0 failed · 0 rejected") {
		t.Errorf("after --reset, status (exit %d) shows outcomes of earlier runs:\n%s%s", code, o, e)
	}
	if code := dev.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("dev --reset exit status %d", code)
	}
}

// TestDevResetRemovesAuthMaterial: --reset also removes what dev --auth
// made, the nkey seeds and the server configuration in the store, and the
// NATS contexts that pointed at those seeds, after saying so.
func TestDevResetRemovesAuthMaterial(t *testing.T) {
	t.Parallel()
	store, xdg := t.TempDir(), t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + xdg}
	dev, _, _ := startDev(t, env, store, "--auth")
	dev.Signal(syscall.SIGINT, 15*time.Second)
	context := filepath.Join(xdg, "nats", "context", "bccstop-dev-publisher.json")
	seed := filepath.Join(store, "auth", "publisher.nk")
	for _, f := range []string{context, seed} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("dev --auth did not write %s: %v", f, err)
		}
	}

	dev, out, _ := startDev(t, env, store, "--reset")
	for _, f := range []string{filepath.Join(store, "auth"), context} {
		if !strings.Contains(out, f) {
			t.Errorf("dev --reset does not say it removes %s:\n%s", f, out)
		}
	}
	for _, f := range []string{context, seed} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after dev --reset (%v)", f, err)
		}
	}
	if code := dev.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("dev --reset exit status %d", code)
	}
}

// TestDevBannerExamplesRun: the commands dev's banner shows run as
// written, in order (its export carried on to the lines after it, as in
// one shell), against that dev with the README's seed, and with a seed of
// a user's own (whose instances the banner then names: it named the
// README's, unknown to that seed, 404): each exits 0, and every command
// they send succeeds, none forbidden because an earlier line stopped its
// instance. (Its `nats sub`, which runs until Ctrl-C, is the README's, run
// in TestREADMEExamplesRunInOrder.)
func TestDevBannerExamplesRun(t *testing.T) {
	t.Parallel()
	own := filepath.Join(t.TempDir(), "seed.txt")
	if err := os.WriteFile(own, []byte("i-web1 Running env=prod team=web\ni-web2 Running env=prod\ni-web3 Running env=prod team=web\ni-off1 Stopped env=prod\ni-db1 Running team=db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, seed := range map[string]string{"README's seed": "../deploy/compose/seed.txt", "own seed": own} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runDevBanner(t, seed)
		})
	}
}

// runDevBanner runs the commands of the banner of a dev with seed.
func runDevBanner(t *testing.T, seed string) {
	work := t.TempDir()
	dev, out, _ := startDev(t, nil, filepath.Join(work, "store"), "--seed", seed)
	natsURL := regexp.MustCompile(`nats://127\.0\.0\.1:\d+`).FindString(out)
	nc, _ := testenv.Connect(t, natsURL)
	published := testenv.SubscribeResults(t, nc)

	_, hints, _ := strings.Cut(out, "Send a command:")
	hints, _, _ = strings.Cut(hints, "Ctrl-C stops everything")
	env := []string{
		"PATH=" + strings.Join([]string{filepath.Dir(binary), natsCLIDir(t), os.Getenv("PATH")}, string(os.PathListSeparator)),
		"HOME=" + work,
	}
	var commands []string // the indented lines; the others are captions
	for _, line := range strings.Split(hints, "\n") {
		if strings.HasPrefix(line, "  ") {
			commands = append(commands, line)
		}
	}
	var exports []string
	ran := 0
	for _, line := range shellLines(strings.Join(commands, "\n")) {
		switch {
		case strings.Contains(line, " sub "):
		case strings.HasPrefix(line, "export "):
			exports = append(exports, line)
		default:
			ran++
			if o, code := runLine(t, work, env, strings.Join(append(slices.Clone(exports), line), "\n")); code != 0 {
				t.Errorf("dev's banner: %s\nexit %d:\n%s", line, code, o)
			}
		}
	}
	if ran < 4 {
		t.Fatalf("ran %d of the commands dev's banner shows; want its nats pub, bccstop stop, its dry run by tag and its pause:\n%s", ran, hints)
	}
	testenv.Eventually(t, 10*time.Second, "the banner's nats pub got no result", func() bool { return len(published.IDs()) >= 3 })
	for _, id := range published.IDs() {
		for _, r := range published.ByID(id) {
			if d := r.Event.Data; d.Outcome != messages.Succeeded {
				t.Errorf("a command of dev's banner: %s %s for %s (%s %s)", id, d.Outcome, d.InstanceID, d.Code, d.Message)
			}
		}
	}
	dev.Signal(syscall.SIGINT, 15*time.Second)
}
