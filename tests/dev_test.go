package tests

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
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
		out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", 20*time.Second)
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
