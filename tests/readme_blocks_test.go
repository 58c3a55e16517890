package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// readmeResult is a result event a user sees printed: by a `nats sub`, by
// `nats consumer next`.
type readmeResult struct {
	instance string
	outcome  messages.Outcome
	status   string // its instanceStatus, when that matters
}

func succeeded(ids ...string) []readmeResult {
	var out []readmeResult
	for _, id := range ids {
		out = append(out, readmeResult{instance: id, outcome: messages.Succeeded})
	}
	return out
}

func stopped(id string) []readmeResult {
	return []readmeResult{{instance: id, outcome: messages.Succeeded, status: "Stopped"}}
}

// readmeStep is what a user sees running one example of the README (a
// `bccstop` or `nats` line of a sh block, or the Go program), in the order
// the README gives them, against one `bccstop dev`.
type readmeStep struct {
	prefix string // the example starts with this (its runs of white space as one space)
	code   int    // its exit status, for an example that ends by itself
	want   string // a piece of what it prints (stdout and stderr), if any
	// shows are results the README's first subscription, left running in
	// the background, prints because of this example.
	shows []readmeResult
	// prints are results the example prints itself: a subscription in the
	// foreground runs until it has (then stopped, as a user's Ctrl-C).
	prints []readmeResult
}

// The examples in README order. The third `stop` line of "Stopping a
// fleet" stops the fleet.txt instances a second time (a new batch), so the
// user sees them forbidden and exit status 3, as the README's table of exit
// statuses says: the only forbidden results of the whole run.
var readmeSteps = []readmeStep{
	{prefix: "nats --server nats://127.0.0.1:4222 sub 'bcc.instance.stop.result.>' &"},
	{prefix: `nats --server nats://127.0.0.1:4222 pub bcc.instance.stop '{"instanceId":"i-Bq3Lz8Wd"}'`, want: "Published", shows: succeeded("i-Bq3Lz8Wd")},
	{prefix: `nats --server nats://127.0.0.1:4222 pub bcc.instance.stop '{"instanceId":"i-Wb3Tn6Xe"`, want: "Published", shows: succeeded("i-Wb3Tn6Xe")},
	{prefix: "package main", want: "incident-4711-db-2: succeeded", shows: succeeded("i-Db2Kp4Rm")},
	{prefix: "nats --server nats://127.0.0.1:4222 pub bcc.instance.stop -H Content-Type:application/cloudevents+json", want: "Published", shows: succeeded("i-Ce81Hq2w")},
	{prefix: "nats --server nats://127.0.0.1:4222 consumer add BCCSTOP_RESULTS my-service", want: "my-service"},
	{prefix: "nats --server nats://127.0.0.1:4222 consumer next BCCSTOP_RESULTS my-service --count 1", prints: succeeded("i-Bq3Lz8Wd")},
	{prefix: `nats --server nats://127.0.0.1:4222 pub bcc.instance.stop '{"instanceId":"i-Wb5Gk9Tp"`, want: "Published"},
	{prefix: "nats --server nats://127.0.0.1:4222 sub 'bcc.instance.stop.result.>'", prints: stopped("i-Wb5Gk9Tp"), shows: stopped("i-Wb5Gk9Tp")},
	{prefix: "bccstop stop i-Wb6Fd3Qa --wait-stopped", shows: stopped("i-Wb6Fd3Qa")},
	{prefix: "bccstop pause --reason", want: "PAUSED until"},
	{prefix: "bccstop status", want: "PAUSED until"},
	{prefix: "bccstop resume --reason", want: "on BCCSTOP_COMMANDS_V2: running"},
	{prefix: "bccstop stop i-YufwpQAe i-7fK2mQ9x --force", want: "2 commands in", shows: succeeded("i-YufwpQAe", "i-7fK2mQ9x")},
	{prefix: "bccstop stop --file fleet.txt", want: "2 succeeded, 0 forbidden, 0 failed, 0 rejected", shows: succeeded("i-fleet0001", "i-fleet0002")},
	{prefix: "grep -v '^#' fleet.txt | bccstop stop --file -", code: 3, want: "0 succeeded, 2 forbidden, 0 failed, 0 rejected"},
	{prefix: "bccstop stop --tag env=staging --dry-run", want: "dry run: 3 commands would be published, none was: 3 would stop"},
	{prefix: "bccstop stop --tag env=staging --max-in-flight", want: "3 succeeded, 0 forbidden, 0 failed, 0 rejected", shows: succeeded("i-stg00001", "i-stg00002", "i-stg00003")},
	{prefix: "bccstop stop --tag env=staging --at 19:30", want: "scheduled 3 stops for"},
	{prefix: "bccstop schedules list", want: "3 scheduled stops"},
	{prefix: "bccstop schedules cancel --batch-id evening", want: "cancelled 3 scheduled stops"},
}

// stoppedTwice are the instances an example stops a second time on
// purpose, forbidden then (see readmeSteps).
var stoppedTwice = []string{"i-fleet0001", "i-fleet0002"}

// TestREADMEExamplesRunInOrder runs the README's examples in order as a
// user would, against the one `bccstop dev` the README says they run
// against, with its seed (on free ports, a store of its own, and a short
// --stop-duration): every `bccstop` and `nats` line of its sh blocks, with
// bash, after exporting what dev prints (NATS_URL, the simulator's
// credentials and endpoint), and the Go program, built in a module of its
// own that depends on this one as the README says. The `nats` CLI is the
// one the README installs. It checks what each prints, and that the
// subscription the first nats line leaves running saw every command
// succeed but the two stopped twice on purpose: no example is forbidden or
// rejected (CommandIdConflict) because of an earlier one. Lines with the
// contexts of `dev --auth` run in TestDevAuth; `make` and `go` lines are
// what CI runs; the Compose lines are tests/deploycheck's.
func TestREADMEExamplesRunInOrder(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	examples := readmeDevExamples(readme)
	if len(examples) != len(readmeSteps) {
		var texts []string
		for _, e := range examples {
			texts = append(texts, firstLine(e.text))
		}
		t.Errorf("the README has %d examples to run against bccstop dev, this test knows %d:\n%s",
			len(examples), len(readmeSteps), strings.Join(texts, "\n"))
	}
	seed := regexp.MustCompile(`go run \./cmd/bccstop dev --seed (\S+)`).FindStringSubmatch(readme)
	if seed == nil {
		t.Fatal("the README does not say which `bccstop dev --seed FILE` its examples run against")
	}
	natsDir := natsCLIDir(t)

	work := t.TempDir()
	write(t, filepath.Join(work, "fleet.txt"), "# decommission 2026-11\ni-fleet0001\ni-fleet0002\n")
	dev := start(t, nil, "dev", "--nats-port", "0", "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0",
		"--store", filepath.Join(work, "store"), "--seed", filepath.Join("..", filepath.FromSlash(seed[1])), "--stop-duration", "1s")
	out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", 20*time.Second)
	waitOutput(t, dev.Stderr, "consuming commands", 10*time.Second)
	natsURL := regexp.MustCompile(`export NATS_URL=(nats://\S+)`).FindStringSubmatch(out)
	creds := regexp.MustCompile(`(BCE_ACCESS_KEY_ID=\S+) (BCE_SECRET_ACCESS_KEY=\S+) (BCC_ENDPOINT=\S+)`).FindStringSubmatch(out)
	if natsURL == nil || creds == nil {
		t.Fatalf("dev does not print NATS_URL and the simulator's credentials:\n%s", out)
	}
	// The README's examples name dev's default address.
	onDev := strings.NewReplacer("nats://127.0.0.1:4222", natsURL[1])
	env := []string{
		"PATH=" + strings.Join([]string{filepath.Dir(binary), natsDir, os.Getenv("PATH")}, string(os.PathListSeparator)),
		"HOME=" + work, // no NATS contexts of the machine's user
		"NATS_URL=" + natsURL[1], creds[1], creds[2], creds[3],
	}
	nc, _ := testenv.Connect(t, natsURL[1])

	var watcher *shellProc // the subscription the README leaves running
	for i, ex := range examples {
		if i >= len(readmeSteps) {
			break
		}
		step := readmeSteps[i]
		if !strings.HasPrefix(strings.Join(strings.Fields(ex.text), " "), step.prefix) {
			t.Errorf("README example %d is %q; this test expects one starting %q", i+1, firstLine(ex.text), step.prefix)
			continue
		}
		script := onDev.Replace(ex.script())
		var got string
		switch {
		case ex.lang == "go":
			got = runGoExample(t, work, onDev.Replace(ex.text))
		case strings.HasSuffix(ex.text, "&"):
			if watcher != nil {
				t.Fatalf("%s: a second subscription left running; this test follows the first", ex.text)
			}
			subscribed := subscribers(t, nc, messages.ResultSubjects)
			watcher = startShell(t, work, env, strings.TrimSuffix(script, "&"))
			testenv.Eventually(t, 10*time.Second, ex.text+" never subscribed", func() bool {
				return subscribers(t, nc, messages.ResultSubjects) > subscribed
			})
			continue
		case strings.Contains(ex.text, " sub "): // runs until Ctrl-C
			p := startShell(t, work, env, script)
			waitResults(t, ex.text, p.out, step.prints)
			p.stop()
			got = p.out.String()
		default:
			var code int
			got, code = runLine(t, work, env, script)
			if code != step.code {
				t.Errorf("%s\nexit status %d (want %d):\n%s", ex.text, code, step.code, got)
			}
		}
		if !strings.Contains(got, step.want) {
			t.Errorf("%s\noutput lacks %q:\n%s", ex.text, step.want, got)
		}
		if len(step.prints) > 0 {
			if missing := missingResults(got, step.prints); len(missing) > 0 {
				t.Errorf("%s\nprints no result %v:\n%s", ex.text, missing, got)
			}
		}
		if watcher != nil {
			waitResults(t, ex.text+" (on the subscription left running)", watcher.out, step.shows)
		} else if len(step.shows) > 0 {
			t.Errorf("%s: no subscription running to show its results", ex.text)
		}
	}
	if watcher == nil {
		t.Fatal("the README leaves no subscription running (nats sub … &)")
	}
	for _, ev := range resultEvents(watcher.out.String()) {
		d := ev.Data
		if d.Outcome != messages.Succeeded && !(d.Outcome == messages.Forbidden && slices.Contains(stoppedTwice, d.InstanceID)) {
			t.Errorf("the subscription left running shows %s %s for %s (%s %s): an example ran into an earlier one",
				d.CommandID, d.Outcome, d.InstanceID, d.Code, d.Message)
		}
	}

	// `--output json > results.jsonl`: one result event per line.
	jsonl, err := os.ReadFile(filepath.Join(work, "results.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	results := strings.Split(strings.TrimSpace(string(jsonl)), "\n")
	if len(results) != 2 {
		t.Fatalf("results.jsonl holds %d lines, want 2:\n%s", len(results), jsonl)
	}
	for _, r := range results {
		ev, err := messages.DecodeResultEvent([]byte(r))
		if err != nil || ev.Data.Outcome != messages.Succeeded || !strings.HasPrefix(ev.Data.CommandID, "decommission-2026-11.") {
			t.Errorf("results.jsonl line %s: %v", r, err)
		}
	}
	watcher.stop()
	if code := dev.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("dev exit status %d", code)
	}
}

// readmeExample is one example of the README: a logical line of a sh
// block, with the variables set earlier in its block, or a whole program.
type readmeExample struct {
	lang    string // "sh", "go" or "python"
	section string // the heading of its section
	text    string
	vars    []string // for sh: the block's assignments before it (deadline=$(…))
}

// script is what bash runs for a sh example: its block's assignments, then it.
func (e readmeExample) script() string {
	return strings.Join(append(slices.Clone(e.vars), e.text), "\n")
}

// composeSection is the README's section whose lines are for Compose, not
// bccstop dev: tests/deploycheck holds them to docker-compose.yml.
const composeSection = "Deploying and scaling out"

var assignment = regexp.MustCompile(`^[A-Za-z_]\w*=(\$\([^)]*\)|\S+)(\s+#.*)?$`)

// readmeExamples returns the README's examples in order: every logical
// line of its sh blocks but comments and assignments, and every Go and
// Python block.
func readmeExamples(readme string) []readmeExample {
	var out []readmeExample
	headings := regexp.MustCompile(`(?m)^## (.+)$`).FindAllStringSubmatchIndex(readme, -1)
	for _, m := range regexp.MustCompile("(?s)```(sh|go|python)\n(.*?)```").FindAllStringSubmatchIndex(readme, -1) {
		lang, text := readme[m[2]:m[3]], readme[m[4]:m[5]]
		section := ""
		for _, h := range headings {
			if h[0] < m[0] {
				section = readme[h[2]:h[3]]
			}
		}
		if lang != "sh" {
			out = append(out, readmeExample{lang: lang, section: section, text: text})
			continue
		}
		var vars []string
		for _, line := range shellLines(text) {
			switch {
			case strings.HasPrefix(line, "#"):
			case assignment.MatchString(line):
				vars = append(vars, line)
			default:
				out = append(out, readmeExample{lang: lang, section: section, text: line, vars: slices.Clone(vars)})
			}
		}
	}
	return out
}

// readmeDevExamples are the README's examples that run against bccstop
// dev: its bccstop and nats lines (not through go run, not with the
// contexts of dev --auth) and its Go program, outside the Compose section.
func readmeDevExamples(readme string) []readmeExample {
	var out []readmeExample
	for _, e := range readmeExamples(readme) {
		runs := e.lang == "go" ||
			e.lang == "sh" && (strings.HasPrefix(e.text, "bccstop ") || strings.Contains(e.text, "| bccstop ") || strings.HasPrefix(e.text, "nats "))
		if runs && e.section != composeSection && !strings.Contains(e.text, "--context bccstop-dev-") {
			out = append(out, e)
		}
	}
	return out
}

// readmeShellLines returns every logical line of the README's sh blocks.
func readmeShellLines(readme string) []string {
	var lines []string
	for _, e := range readmeExamples(readme) {
		if e.lang == "sh" {
			lines = append(lines, e.text)
		}
	}
	return lines
}

// shellLines splits a sh block into lines as bash reads them: a backslash
// at the end of a line continues it, a newline inside quotes is part of
// it, and a comment (a # starting a word) runs to the end of its line, its
// quotes ignored.
func shellLines(block string) []string {
	var lines []string
	var cur strings.Builder
	flush := func() {
		if line := strings.TrimSpace(cur.String()); line != "" {
			lines = append(lines, line)
		}
		cur.Reset()
	}
	var quote byte // ' or ", while inside one
	comment := false
	for i := 0; i < len(block); i++ {
		c := block[i]
		switch {
		case comment:
			if c == '\n' {
				comment = false
				flush()
			} else {
				cur.WriteByte(c)
			}
		case quote == '\'':
			cur.WriteByte(c)
			if c == '\'' {
				quote = 0
			}
		case c == '\\' && i+1 < len(block) && block[i+1] == '\n':
			cur.WriteByte(' ')
			i++
		case c == '\\' && i+1 < len(block):
			cur.WriteByte(c)
			cur.WriteByte(block[i+1])
			i++
		case quote == '"':
			cur.WriteByte(c)
			if c == '"' {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
			cur.WriteByte(c)
		case c == '#' && (cur.Len() == 0 || strings.ContainsRune(" \t", rune(cur.String()[cur.Len()-1]))):
			comment = true
			cur.WriteByte(c)
		case c == '\n':
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return lines
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// runLine runs one shell line with bash in dir, with only env, and returns
// what it printed and its exit status.
func runLine(t *testing.T, dir string, env []string, line string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: still running after a minute:\n%s", line, out.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return out.String(), 0
}

// shellProc is a shell line running until stopped, in a process group of
// its own so that stopping it stops everything it started.
type shellProc struct {
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{}
}

// startShell starts line with bash in dir, with only env; it is stopped at
// the end of the test if it still runs.
func startShell(t *testing.T, dir string, env []string, line string) *shellProc {
	t.Helper()
	p := &shellProc{cmd: exec.Command("bash", "-o", "pipefail", "-c", line), out: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// stop interrupts the line's process group, as Ctrl-C does, and waits for
// it (killing it after 5 s).
func (p *shellProc) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// subscribers counts the connections of dev's NATS account subscribed to
// subject, as the server reports them (the account's CONNZ).
func subscribers(t *testing.T, nc *nats.Conn, subject string) int {
	t.Helper()
	msg, err := nc.Request("$SYS.REQ.ACCOUNT.PING.CONNZ", []byte(`{"subscriptions":true}`), 5*time.Second)
	if err != nil {
		t.Fatalf("the account's connections: %v", err)
	}
	var connz struct {
		Data struct {
			Connections []struct {
				Subscriptions []string `json:"subscriptions_list"`
			} `json:"connections"`
		} `json:"data"`
	}
	if err := json.Unmarshal(msg.Data, &connz); err != nil {
		t.Fatalf("the account's connections: %v: %s", err, msg.Data)
	}
	n := 0
	for _, c := range connz.Data.Connections {
		if slices.Contains(c.Subscriptions, subject) {
			n++
		}
	}
	return n
}

// resultEvents are the result events in what a nats command printed: the
// lines that decode as one.
func resultEvents(out string) []messages.ResultEvent {
	var evs []messages.ResultEvent
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "{") {
			if ev, err := messages.DecodeResultEvent([]byte(line)); err == nil {
				evs = append(evs, ev)
			}
		}
	}
	return evs
}

// missingResults are those of want that out does not print.
func missingResults(out string, want []readmeResult) []readmeResult {
	evs := resultEvents(out)
	var missing []readmeResult
	for _, w := range want {
		if !slices.ContainsFunc(evs, func(ev messages.ResultEvent) bool {
			return ev.Data.InstanceID == w.instance && ev.Data.Outcome == w.outcome && (w.status == "" || ev.Data.InstanceStatus == w.status)
		}) {
			missing = append(missing, w)
		}
	}
	return missing
}

// waitResults waits until out prints every result of want.
func waitResults(t *testing.T, what string, out *testenv.Buffer, want []readmeResult) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for missing := missingResults(out.String(), want); len(missing) > 0; missing = missingResults(out.String(), want) {
		if time.Now().After(deadline) {
			t.Errorf("%s: after 20s, no result %v printed:\n%s", what, missing, tail(out.String(), 4000))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runGoExample builds the README's Go program in a module of its own that
// depends on this one as the README says (its `go mod` lines, the clone's
// directory for /path/to/bccstop), runs it and returns what it printed.
func runGoExample(t *testing.T, work, src string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var modLines []string
	for _, line := range readmeShellLines(string(raw)) {
		if strings.HasPrefix(line, "go mod ") {
			modLines = append(modLines, line)
		}
	}
	const placeholder = "/path/to/bccstop"
	if len(modLines) == 0 || !strings.Contains(strings.Join(modLines, "\n"), placeholder) {
		t.Fatalf("the README's `go mod` lines do not say how to depend on a clone at %s: %q", placeholder, modLines)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "publisher")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "main.go"), src)
	// This module's checksums, so that modules it verified already are not
	// looked up again; tidy keeps only those the program needs.
	sums, err := os.ReadFile("../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "go.sum"), string(sums))
	// nats.go at this module's version, as a program that has it already:
	// tidy then looks nothing up.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	natsGo := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats\.go (v\S+)`).FindSubmatch(mod)
	if natsGo == nil {
		t.Fatal("go.mod does not require github.com/nats-io/nats.go")
	}
	steps := []string{"go mod init example.com/publisher", "go mod edit -require github.com/nats-io/nats.go@" + string(natsGo[1])}
	steps = append(steps, modLines...)
	steps = append(steps, "go build -o publisher .")
	for _, line := range steps {
		if out, code := runLine(t, dir, goEnv(), strings.ReplaceAll(line, placeholder, root)); code != 0 {
			t.Fatalf("the README's Go program, %s: exit %d\n%s\n%s", line, code, out, src)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(dir, "publisher")).CombinedOutput()
	if err != nil {
		t.Errorf("the README's Go program: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`stored in BCCSTOP_COMMANDS_V2 as message \d+`).Match(out) {
		t.Errorf("the README's Go program does not say where its command was stored:\n%s", out)
	}
	return string(out)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestREADMEExamplesUseTheirOwnIDs: no two examples of the README name the
// same instance or the same command identity (a commandId, a Nats-Msg-Id,
// a CloudEvent's source#id, the --batch-id of bccstop stop), the Python
// program (which no test runs) included, so that none is forbidden or
// rejected because of another, whatever order they are tried in; and every
// instance they name is in the seed they run against. The Compose lines,
// against a simulator of their own, are tests/deploycheck's.
func TestREADMEExamplesUseTheirOwnIDs(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	seed := regexp.MustCompile(`go run \./cmd/bccstop dev --seed (\S+)`).FindStringSubmatch(readme)
	if seed == nil {
		t.Fatal("the README does not say which `bccstop dev --seed FILE` its examples run against")
	}
	sim := fakebcc.New(fakebcc.Options{})
	if _, err := sim.LoadSeedFile(filepath.Join("..", filepath.FromSlash(seed[1]))); err != nil {
		t.Fatal(err)
	}
	instance := regexp.MustCompile(`\bi-[A-Za-z0-9_-]+`)
	identities := []*regexp.Regexp{
		regexp.MustCompile(`"commandId":\s*"([^"]+)"`),
		regexp.MustCompile(`CommandID:\s*"([^"]+)"`),
		regexp.MustCompile(`Nats-Msg-Id:(\S+)`),
	}
	cloudEvent := regexp.MustCompile(`"id":"([^"]+)","source":"([^"]+)"`)
	batch := regexp.MustCompile(`^bccstop stop .*--batch-id (\S+)`)
	seen := map[string]string{} // "instance i-…" or "identity …" → the example naming it first
	checked := 0
	for _, ex := range readmeExamples(readme) {
		if ex.section == composeSection {
			continue
		}
		names := map[string]bool{}
		for _, id := range instance.FindAllString(ex.text, -1) {
			names["instance "+id] = true
			if _, ok := sim.Status(id); !ok {
				t.Errorf("README example %q names %s, which %s does not have: it would fail, 404 NoSuchObject", firstLine(ex.text), id, seed[1])
			}
		}
		for _, re := range identities {
			for _, m := range re.FindAllStringSubmatch(ex.text, -1) {
				names["identity "+m[1]] = true
			}
		}
		for _, m := range cloudEvent.FindAllStringSubmatch(ex.text, -1) {
			names["identity "+m[2]+"#"+m[1]] = true
		}
		if m := batch.FindStringSubmatch(ex.text); m != nil {
			names["batch "+m[1]] = true
		}
		for _, name := range slices.Sorted(maps.Keys(names)) {
			checked++
			if first, ok := seen[name]; ok {
				t.Errorf("README: %s is named by two examples:\n  %s\n  %s", name, first, firstLine(ex.text))
			} else {
				seen[name] = firstLine(ex.text)
			}
		}
	}
	if checked < 10 {
		t.Errorf("found only %d instance ids and identities in the README's examples: the patterns are broken", checked)
	}
}

// TestReadmeJQReadsStopOutput runs the README's jq lines on what `bccstop
// stop --output json` printed for a run with every kind of line (a result
// of each kind, and one not sent), and checks what they print; skipped
// where jq is not installed.
func TestReadmeJQReadsStopOutput(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq is not installed")
	}
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var jqLines []string
	for _, line := range readmeShellLines(string(raw)) {
		if strings.HasPrefix(line, "jq ") && strings.Contains(line, "results.jsonl") {
			jqLines = append(jqLines, line)
		}
	}
	want := []struct{ prefix, out string }{
		{"jq -r .data.outcome results.jsonl | sort | uniq -c", "      1 failed\n      1 forbidden\n      1 not-sent\n      1 succeeded\n"},
		{`jq -r 'select(.data.outcome == "failed") | .data.instanceId' results.jsonl`, "i-jq-gone\n"},
		{`jq -r 'select(.data.outcome != "succeeded")`, "i-jq-down\tforbidden\tInstance.StopInstanceOperationForbidden\ni-jq-gone\tfailed\tNoSuchObject\ni-jq-ok2\tnot-sent\tErrorBudgetSpent\n"},
	}
	if len(jqLines) != len(want) {
		t.Fatalf("the README has %d jq lines reading results.jsonl, this test knows %d:\n%s", len(jqLines), len(want), strings.Join(jqLines, "\n"))
	}

	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-jq-ok1", "i-jq-ok2")
	f.sim.Seed(fakebcc.Stopped, "i-jq-down")
	out, errOut, code := run(t, f.cliEnv(t), "stop", "-o", "json", "--max-in-flight", "1", "--max-errors", "0", "i-jq-ok1", "i-jq-down", "i-jq-gone", "i-jq-ok2")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, errOut)
	}
	work := t.TempDir()
	write(t, filepath.Join(work, "results.jsonl"), out)
	for i, line := range jqLines {
		if !strings.HasPrefix(line, want[i].prefix) {
			t.Errorf("README jq line %d is %q; this test expects one starting %q", i+1, line, want[i].prefix)
			continue
		}
		got, code := runLine(t, work, []string{"PATH=" + os.Getenv("PATH")}, line)
		if code != 0 || fields(got) != fields(want[i].out) {
			t.Errorf("%s\nexit %d, printed:\n%q\nwant:\n%q", line, code, got, want[i].out)
		}
	}
}

// fields is s with each line's white space made one space (uniq -c pads
// its counts differently on different systems).
func fields(s string) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		out = append(out, strings.Join(strings.Fields(line), " "))
	}
	return strings.Join(out, "\n")
}
