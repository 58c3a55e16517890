package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/messages"
)

// readmeLine is what a user sees when running one `bccstop` line of the
// README, in the order the README gives them, against `bccstop dev`.
type readmeLine struct {
	prefix string // the README line starts with this
	code   int    // its exit status
	want   string // a piece of what it prints (stdout and stderr)
}

// The lines in README order. The third `stop` line stops the fleet.txt
// instances a second time (a new batch), so the user sees them forbidden
// and exit status 3, as the README's table of exit statuses says.
var readmeLines = []readmeLine{
	{"bccstop pause --reason", 0, "PAUSED until"},
	{"bccstop status", 0, "PAUSED until"},
	{"bccstop resume --reason", 0, "on BCCSTOP_COMMANDS_V2: running"},
	{"bccstop stop i-YufwpQAe i-7fK2mQ9x --force", 0, "2 commands in"},
	{"bccstop stop --file fleet.txt", 0, "2 succeeded, 0 forbidden, 0 failed, 0 rejected"},
	{"grep -v '^#' fleet.txt | bccstop stop --file -", 3, "0 succeeded, 2 forbidden, 0 failed, 0 rejected"},
	{"bccstop stop --tag env=staging --dry-run", 0, "dry run: 3 commands would be published; nothing was"},
	{"bccstop stop --tag env=staging --max-in-flight", 0, "3 succeeded, 0 forbidden, 0 failed, 0 rejected"},
	{"bccstop stop --tag env=staging --at 19:30", 0, "scheduled 3 stops for"},
	{"bccstop schedules list", 0, "3 scheduled stops"},
	{"bccstop schedules cancel --batch-id evening", 0, "cancelled 3 scheduled stops"},
}

// TestREADMECommandsRun runs every `bccstop` line of the README's shell
// blocks, in order, with bash, as a user would after starting `bccstop dev`
// with a seed of tagged instances and exporting what dev prints (NATS_URL,
// the simulator's credentials and endpoint). The `nats` CLI lines need a
// tool the project does not install; `make` and `go` lines are what CI runs.
func TestREADMECommandsRun(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := readmeBccstopLines(string(raw))
	if len(lines) != len(readmeLines) {
		t.Errorf("the README has %d bccstop lines in shell blocks, this test knows %d:\n%s",
			len(lines), len(readmeLines), strings.Join(lines, "\n"))
	}

	work := t.TempDir()
	// With a seed the simulator knows nothing else: every id the lines
	// name is in it.
	seed := "i-stg00001 Running env=staging\ni-stg00002 Running env=staging\ni-stg00003 Running env=staging\n" +
		"i-YufwpQAe Running\ni-7fK2mQ9x Running\ni-fleet0001 Running\ni-fleet0002 Running\n"
	write(t, filepath.Join(work, "seed.txt"), seed)
	write(t, filepath.Join(work, "fleet.txt"), "# decommission 2026-11\ni-fleet0001\ni-fleet0002\n")
	dev := start(t, nil, "dev", "--nats-port", "0", "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0",
		"--store", filepath.Join(work, "store"), "--seed", filepath.Join(work, "seed.txt"))
	out := waitOutput(t, dev.Stdout, "Ctrl-C stops everything", 20*time.Second)
	waitOutput(t, dev.Stderr, "consuming commands", 10*time.Second)
	natsURL := regexp.MustCompile(`export NATS_URL=(nats://\S+)`).FindStringSubmatch(out)
	creds := regexp.MustCompile(`(BCE_ACCESS_KEY_ID=\S+) (BCE_SECRET_ACCESS_KEY=\S+) (BCC_ENDPOINT=\S+)`).FindStringSubmatch(out)
	if natsURL == nil || creds == nil {
		t.Fatalf("dev does not print NATS_URL and the simulator's credentials:\n%s", out)
	}
	env := []string{
		"PATH=" + filepath.Dir(binary) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + work, // no NATS contexts of the machine's user
		"NATS_URL=" + natsURL[1], creds[1], creds[2], creds[3],
	}

	for i, line := range lines {
		if i >= len(readmeLines) {
			break
		}
		want := readmeLines[i]
		if !strings.HasPrefix(line, want.prefix) {
			t.Errorf("README line %d is %q; this test expects one starting %q", i+1, line, want.prefix)
			continue
		}
		got, code := runLine(t, work, env, line)
		if code != want.code || !strings.Contains(got, want.want) {
			t.Errorf("%s\nexit status %d (want %d), output lacks %q:\n%s", line, code, want.code, want.want, got)
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
	if code := dev.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Errorf("dev exit status %d", code)
	}
}

// composeSection is the README's section whose lines are for Compose, not
// bccstop dev: tests/deploycheck holds them to docker-compose.yml.
const composeSection = "## Deploying and scaling out"

// withoutSection is readme without the section that starts with heading.
func withoutSection(readme, heading string) string {
	before, section, found := strings.Cut(readme, "\n"+heading+"\n")
	if !found {
		return readme
	}
	_, after, _ := strings.Cut(section, "\n## ")
	return before + "\n## " + after
}

// readmeBccstopLines are the logical lines (continuations joined) of the
// README's ```sh blocks that run bccstop itself, not through go run, against
// bccstop dev.
func readmeBccstopLines(readme string) []string {
	var lines []string
	for _, line := range readmeShellLines(withoutSection(readme, composeSection)) {
		// The lines of `bccstop dev --auth`'s contexts run in TestDevAuth.
		if (strings.HasPrefix(line, "bccstop ") || strings.Contains(line, "| bccstop ")) && !strings.Contains(line, "--context bccstop-dev-") {
			lines = append(lines, line)
		}
	}
	return lines
}

// readmeShellLines returns every line of the README's sh blocks, a line
// continued with a backslash joined to the next.
func readmeShellLines(readme string) []string {
	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(readme, -1) {
		for _, line := range strings.Split(strings.ReplaceAll(block[1], "\\\n", " "), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, line)
			}
		}
	}
	return lines
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

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
