package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevAuth: `bccstop dev --auth` runs NATS with the shipped roles and
// writes a NATS context per role, in the nats CLI's format: the publisher
// stops an instance and reads its result; the publisher may not pause the
// fleet (the server refuses, and the CLI says so); the operator pauses and
// resumes; the observer sees the pause; nobody gets in without credentials.
// The README's lines with those contexts run as written (the nats CLI's
// too), and its denied actions print what it shows.
func TestDevAuth(t *testing.T) {
	t.Parallel()
	xdg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + xdg}
	dev := start(t, env, "dev", "--auth", "--nats-port", "0", "--store", t.TempDir(), "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0")
	out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", 30*time.Second)
	for _, role := range []string{"publisher", "operator", "observer", "worker"} {
		path := filepath.Join(xdg, "nats", "context", "bccstop-dev-"+role+".json")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("context of %s: %v\n%s", role, err, out)
		}
		if !strings.Contains(string(raw), `"nkey"`) || !strings.Contains(string(raw), `"url"`) {
			t.Errorf("context of %s is not url and nkey: %s", role, raw)
		}
		if !strings.Contains(out, "bccstop-dev-"+role) {
			t.Errorf("dev does not print the context of %s:\n%s", role, out)
		}
	}
	url := regexp.MustCompile(`nats://127\.0\.0\.1:\d+`).FindString(out)
	cli := func(args ...string) (string, int) {
		t.Helper()
		p := start(t, env, args...)
		code := p.Wait(30 * time.Second)
		return p.Stdout.String() + p.Stderr.String(), code
	}
	if o, code := cli("stop", "--context", "bccstop-dev-publisher", "--batch-id", "auth-try", "i-authtry1"); code != 0 || !strings.Contains(o, "1 succeeded") {
		t.Errorf("publisher stop: exit %d\n%s", code, o)
	}
	// The publisher's pause, refused, is the README's (below); it is said
	// as soon as the server refuses it, not after the request's 10 s.
	// A publisher may schedule a stop but not cancel one; an operator may.
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if o, code := cli("stop", "--context", "bccstop-dev-publisher", "--batch-id", "auth-later", "--at", at, "i-authtry2"); code != 0 || !strings.Contains(o, "1 stored") {
		t.Errorf("publisher stop --at: exit %d\n%s", code, o)
	}
	for _, args := range [][]string{{"pause", "--reason", "not mine"}, {"hold", "i-authtry1", "--for", "1m", "--reason", "not mine"},
		{"schedules", "cancel", "--batch-id", "auth-later"}} {
		began := time.Now()
		o, code := cli(append(args, "--context", "bccstop-dev-publisher")...)
		if took := time.Since(began); code != 1 || !strings.Contains(o, "NATS refused it") || took > 5*time.Second {
			t.Errorf("publisher %s: exit %d after %s, want 1 and NATS's refusal at once\n%s", args[0], code, took.Round(100*time.Millisecond), o)
		}
	}
	if o, code := cli("schedules", "cancel", "--context", "bccstop-dev-operator", "--batch-id", "auth-later"); code != 0 || !strings.Contains(o, "cancelled 1 scheduled stop: auth-later.i-authtry2") {
		t.Errorf("operator schedules cancel: exit %d\n%s", code, o)
	}
	if o, code := cli("pause", "--context", "bccstop-dev-operator", "--reason", "INC-1 hold"); code != 0 || !strings.Contains(o, "PAUSED") {
		t.Errorf("operator pause: exit %d\n%s", code, o)
	}
	if o, code := cli("status", "--context", "bccstop-dev-observer"); code != 0 || !strings.Contains(o, "PAUSED") || !strings.Contains(o, "INC-1 hold") {
		t.Errorf("observer status: exit %d\n%s", code, o)
	}
	if o, code := cli("resume", "--context", "bccstop-dev-operator"); code != 0 || !strings.Contains(o, "running") {
		t.Errorf("operator resume: exit %d\n%s", code, o)
	}
	if o, code := cli("status", "--server", url); code != 5 || !strings.Contains(o, "Authorization Violation") {
		t.Errorf("status without credentials: exit %d\n%s", code, o)
	}
	// The README's lines for the roles run as written, the nats CLI's with
	// the version the README installs.
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	shellEnv := append([]string{"PATH=" + strings.Join([]string{filepath.Dir(binary), natsCLIDir(t), os.Getenv("PATH")}, string(os.PathListSeparator))}, env...)
	ran := map[string]int{}
	for _, line := range readmeShellLines(string(raw)) {
		tool, _, _ := strings.Cut(line, " ")
		if (tool != "bccstop" && tool != "nats") || !strings.Contains(line, "--context bccstop-dev-") {
			continue
		}
		ran[tool]++
		if o, code := runLine(t, t.TempDir(), shellEnv, line); code != 0 {
			t.Errorf("README: %s\nexit %d:\n%s", line, code, o)
		}
	}
	if ran["bccstop"] < 4 || ran["nats"] < 1 {
		t.Errorf("the README shows %d bccstop lines and %d nats lines with the dev roles' contexts, want the publisher's, operator's and observer's", ran["bccstop"], ran["nats"])
	}
	// And what it shows of a denied action: each `$ ` line fails, printing
	// the lines after it.
	transcript := regexp.MustCompile("(?s)```\n(\\$ nats --context bccstop-dev-.*?)```").FindStringSubmatch(string(raw))
	if transcript == nil {
		t.Fatal("the README shows no denied action of dev --auth's roles ($ nats --context …)")
	}
	for _, part := range strings.Split(transcript[1], "$ ")[1:] {
		line, shown, _ := strings.Cut(part, "\n")
		o, code := runLine(t, t.TempDir(), shellEnv, line)
		if code == 0 {
			t.Errorf("README: %s\nsucceeds; the README shows it denied:\n%s", line, o)
		}
		for _, want := range strings.Split(strings.TrimSpace(shown), "\n") {
			if !strings.Contains(o, strings.TrimSpace(want)) {
				t.Errorf("README: %s\nprints no %q:\n%s", line, strings.TrimSpace(want), o)
			}
		}
	}
	if code := dev.Signal(syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("dev exit %d", code)
	}
}
