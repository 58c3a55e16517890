package tests

import (
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
	first := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t))
	waitOutput(t, first.Stdout, "Ctrl-C stops everything", 20*time.Second)
	second := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t))
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
	third := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t))
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
