package tests

import (
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
