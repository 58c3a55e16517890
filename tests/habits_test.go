package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
)

// run runs bccstop to its end and returns stdout, stderr and the exit code.
func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := start(t, env, args...)
	code = p.Wait(20 * time.Second)
	return p.Stdout.String(), p.Stderr.String(), code
}

// TestHelpSpeaksDoubleDash: every command's help lists its flags as the
// README writes them (--flag; only one-letter aliases keep one dash), on
// stdout, exit 0; "bccstop help CMD" is the same help; the top-level help
// lists help, completion and --version.
func TestHelpSpeaksDoubleDash(t *testing.T) {
	singleDashLong := regexp.MustCompile(`(?m)^  -[a-z][a-z-]+`)
	env := []string{"HOME=" + t.TempDir()} // the same defaults (dev --store) in every run
	for _, cmd := range []string{"worker", "dev", "stop", "pause", "resume", "status", "schedules", "fakebcc", "probe", "version", "completion"} {
		out, errOut, code := run(t, env, cmd, "--help")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: bccstop "+cmd) {
			t.Errorf("%s --help: exit %d, stderr %q, stdout starts %q", cmd, code, errOut, tail(out, 60))
			continue
		}
		if m := singleDashLong.FindString(out); m != "" {
			t.Errorf("%s --help lists %q with a single dash", cmd, m)
		}
		if via, _, code := run(t, env, "help", cmd); code != 0 || via != out {
			t.Errorf("bccstop help %s (exit %d) differs from bccstop %s --help:\n%s", cmd, code, cmd, via)
		}
	}
	out, _, _ := run(t, nil, "stop", "--help")
	for _, want := range []string{"\n  --batch-id ID\n", "\n  --context NAME\n", "\n  --server URL\n", "\n  -s URL\n    \tshort for --server URL\n",
		"\n  --creds FILE\n", "\n  --user NAME\n", "\n  --password PASSWORD\n", "\n  --wait\n", "\n  -h, --help\n", "NATS_CONTEXT", "nats context select"} {
		if !strings.Contains(out, want) {
			t.Errorf("stop --help lacks %q", want)
		}
	}

	top, errOut, code := run(t, nil, "help")
	if code != 0 || errOut != "" {
		t.Fatalf("bccstop help: exit %d, %q", code, errOut)
	}
	if again, _, _ := run(t, nil, "--help"); again != top {
		t.Errorf("bccstop --help differs from bccstop help")
	}
	for _, want := range []string{"bccstop help COMMAND", "bccstop completion SHELL", "--version", "--help", "bccstop stop ID…"} {
		if !strings.Contains(top, want) {
			t.Errorf("top-level help lacks %q:\n%s", want, top)
		}
	}
	version, _, code := run(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(version, "bccstop ") || !strings.Contains(version, "commit:") {
		t.Errorf("--version: exit %d, %q", code, version)
	}
}

// TestUsageErrorsOnStderrOnly: a bad flag, argument or command is one
// message on stderr naming the fault and where the help is, exit 2, and
// nothing at all on stdout, so `--output json > file` never catches it.
func TestUsageErrorsOnStderrOnly(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"stop", "--output", "json", "--bogus", "i-a"}, "flag provided but not defined: --bogus"},
		{[]string{"stop", "--output", "json", "--timeout", "soon", "i-a"}, `invalid value "soon" for flag --timeout`},
		{[]string{"stop", "--output", "json", "--wait=maybe", "i-a"}, `invalid boolean value "maybe" for --wait`},
		{[]string{"stop", "--output", "json", "i-a", "--batch-id"}, "flag needs an argument: --batch-id"},
		{[]string{"stop", "--output", "json", "not-an-id"}, `"not-an-id" is not an instance id`},
		{[]string{"status", "--output", "json", "--since"}, "flag needs an argument: --since"},
		{[]string{"status", "--output", "json", "extra"}, `unexpected argument "extra"`},
		{[]string{"schedules", "list", "--output", "json", "--nope"}, "--nope"},
		{[]string{"pause", "--for", "-1s"}, "--for must be positive"},
		{[]string{"probe"}, "want exactly one URL"},
		{[]string{"worker", "now"}, `unexpected argument "now"`},
		{[]string{"dev", "--nats-port", "x"}, "--nats-port"},
		{[]string{"completion", "tcsh"}, `"tcsh"`},
		{[]string{"help", "nonsense"}, `unknown command "nonsense"`},
		{[]string{"nonsense"}, `unknown command "nonsense"`},
		{nil, "Usage:"},
	}
	for _, tc := range tests {
		out, errOut, code := run(t, nil, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.says) {
			t.Errorf("bccstop %s: exit %d (want 2), stdout %q (want none), stderr %q (want %q)", strings.Join(tc.args, " "), code, out, errOut, tc.says)
		}
		if strings.Contains(tc.says, "flag") && !strings.Contains(errOut, `Run "bccstop help `+tc.args[0]+`" for usage.`) {
			t.Errorf("bccstop %s: stderr does not say where the help is: %q", strings.Join(tc.args, " "), errOut)
		}
	}
}

// completionCases are what a user types and must be offered (and not).
var completionCases = []struct {
	line      string   // the command line, completed at its end
	want, not []string // offered, and not offered
}{
	{"bccstop st", []string{"stop", "status"}, []string{"dev"}},
	{"bccstop stop --con", []string{"--consumer", "--context", "--control-stream"}, []string{"--creds"}},
	{"bccstop pause --", []string{"--for", "--reason", "--server", "--creds", "--user", "--password", "--context"}, []string{"--since"}},
	{"bccstop status --s", []string{"--server", "--since"}, []string{"--for"}},
	{"bccstop schedules --b", []string{"--batch-id"}, nil},
	{"bccstop dev --n", []string{"--nats-port"}, nil},
	{"bccstop fakebcc --st", []string{"--stop-duration", "--stopped"}, nil},
	{"bccstop stop --context ", []string{"ctx-dev", "ctx-prod"}, []string{"--force"}},
	{"bccstop stop --output ", []string{"json", "text"}, nil},
	{"bccstop stop -o ", []string{"json", "text"}, nil},
	{"bccstop schedules ", []string{"list", "cancel"}, nil},
	{"bccstop help p", []string{"pause", "probe"}, []string{"stop"}},
	{"bccstop completion ", []string{"bash", "zsh", "fish"}, nil},
}

// completionHome is an XDG_CONFIG_HOME with two NATS contexts.
func completionHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, "nats", "context")
	os.MkdirAll(dir, 0o755)
	for _, name := range []string{"ctx-dev", "ctx-prod"} {
		os.WriteFile(filepath.Join(dir, name+".json"), []byte(`{"url":"nats://127.0.0.1:4222"}`), 0o600)
	}
	return home
}

func checkOffered(t *testing.T, shell, line string, got []string, want, not []string) {
	t.Helper()
	have := map[string]bool{}
	for _, g := range got {
		have[strings.TrimSpace(strings.SplitN(g, "\t", 2)[0])] = true
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("%s: %q does not offer %q; offers %q", shell, line, w, got)
		}
	}
	for _, n := range not {
		if have[n] {
			t.Errorf("%s: %q offers %q", shell, line, n)
		}
	}
}

// TestCompletionBash sources `bccstop completion bash` in bash and asks
// its completion function what it offers, as bash does on Tab.
func TestCompletionBash(t *testing.T) {
	script, errOut, code := run(t, nil, "completion", "bash")
	if code != 0 || errOut != "" {
		t.Fatalf("completion bash: exit %d, %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "bccstop.bash")
	os.WriteFile(file, []byte(script), 0o600)
	home := completionHome(t)
	for _, tc := range completionCases {
		words := strings.Split(tc.line, " ")
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		drive := "source " + file + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_bccstop\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", drive)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + home}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		checkOffered(t, "bash", tc.line, lines(string(out)), tc.want, tc.not)
	}
}

// TestCompletionFish asks fish itself (complete -C) what the script of
// `bccstop completion fish` offers; skipped where fish is not installed.
func TestCompletionFish(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed")
	}
	script, _, code := run(t, nil, "completion", "fish")
	if code != 0 {
		t.Fatalf("completion fish: exit %d", code)
	}
	file := filepath.Join(t.TempDir(), "bccstop.fish")
	os.WriteFile(file, []byte(script), 0o600)
	home := completionHome(t)
	for _, tc := range completionCases {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+file+"; complete -C '"+tc.line+"'")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + home}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, out)
		}
		checkOffered(t, "fish", tc.line, lines(string(out)), tc.want, tc.not)
	}
}

// TestCompletionZsh checks the zsh script's syntax with zsh itself (where
// installed) and that it completes what the others do. Driving zsh's
// completion system needs a terminal, so the offers are read from the
// script's _arguments specifications.
func TestCompletionZsh(t *testing.T) {
	script, _, code := run(t, nil, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(script, "#compdef bccstop\n") {
		t.Fatalf("completion zsh: exit %d\n%s", code, tail(script, 400))
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		file := filepath.Join(t.TempDir(), "_bccstop")
		os.WriteFile(file, []byte(script), 0o600)
		if out, err := exec.Command("zsh", "-n", file).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	for _, want := range []string{
		`'(-s --server)'{-s,--server}'[NATS server URLs, comma-separated`,
		`'--context[the NATS context NAME to use`, `:NAME:_bccstop_contexts'`,
		`'(-o --output)'{-o,--output}'[FORMAT\: text, or json`, `:FORMAT:(text json)'`,
		`'--nats-port[NATS client port on 127.0.0.1 (0 picks a free one)]:port:'`,
		`'1:argument:(list cancel)'`, `'1:argument:(bash zsh fish)'`,
		`'stop:publish stop commands and wait for their results'`,
		"compdef _bccstop bccstop",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("the zsh script lacks %q", want)
		}
	}
}

// TestHabitsDidYouMean: a mistyped command is answered with the command
// meant, in one short message on stderr, not with the whole usage.
func TestHabitsDidYouMean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"statsu"}, `bccstop: unknown command "statsu"; did you mean status?`},
		{[]string{"stpo", "i-a"}, `bccstop: unknown command "stpo"; did you mean stop?`},
		{[]string{"schedule", "list"}, `bccstop: unknown command "schedule"; did you mean schedules?`},
		{[]string{"help", "staus"}, `bccstop help: unknown command "staus"; did you mean status?`},
		{[]string{"schedules", "lsit"}, `bccstop schedules: unknown action "lsit"; did you mean list?`},
		{[]string{"xyzzy"}, `bccstop: unknown command "xyzzy"`},
	}
	for _, tc := range tests {
		out, errOut, code := run(t, nil, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.says) {
			t.Errorf("bccstop %s: exit %d (want 2), stdout %q, stderr %q (want %q)", strings.Join(tc.args, " "), code, out, errOut, tc.says)
		}
		if strings.Contains(errOut, "Usage:") || strings.Count(errOut, "\n") > 3 {
			t.Errorf("bccstop %s: prints the whole usage instead of a short answer:\n%s", strings.Join(tc.args, " "), errOut)
		}
		if !strings.Contains(errOut, `Run "bccstop help`) {
			t.Errorf("bccstop %s: does not say where the commands are listed:\n%s", strings.Join(tc.args, " "), errOut)
		}
	}
	if _, errOut, _ := run(t, nil, "xyzzy"); strings.Contains(errOut, "did you mean") {
		t.Errorf("a word like no command gets a suggestion: %q", errOut)
	}
}

// TestHabitsDurationsNameTheirForms: a duration that does not parse is
// answered with the forms that do, on every command that takes one.
func TestHabitsDurationsNameTheirForms(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"status", "--since", "1hour"},
		{"pause", "--for", "1"},
		{"hold", "i-a", "--reason", "x", "--for", "2days"},
		{"stop", "--timeout", "soon", "i-a"},
	} {
		out, errOut, code := run(t, nil, args...)
		if code != 2 || out != "" {
			t.Errorf("bccstop %s: exit %d, stdout %q", strings.Join(args, " "), code, out)
		}
		for _, want := range []string{"invalid value", "90s", "30m", "1h"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("bccstop %s: stderr lacks %q: %q", strings.Join(args, " "), want, errOut)
			}
		}
		if strings.Contains(errOut, "parse error") {
			t.Errorf("bccstop %s: says only %q", strings.Join(args, " "), errOut)
		}
	}
}

// TestHabitsInstanceIDsSayWhatIsAllowed: a bad instance id is answered
// with the characters an id may hold, wherever ids are taken.
func TestHabitsInstanceIDsSayWhatIsAllowed(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "ids")
	os.WriteFile(file, []byte("i-good\ni-bad!\n"), 0o600)
	for _, args := range [][]string{
		{"stop", "web-1"},
		{"stop", "--file", file},
		{"hold", "i-a.b", "--for", "1h", "--reason", "x"},
		{"release", "db1"},
	} {
		_, errOut, code := run(t, nil, args...)
		if code != 2 || !strings.Contains(errOut, "A-Z a-z 0-9 _ -") || !strings.Contains(errOut, "i-") {
			t.Errorf("bccstop %s: exit %d, stderr %q: want the allowed characters", strings.Join(args, " "), code, errOut)
		}
	}
}

// TestHabitsValidateBeforeSpeaking: a usage error found late in the flags
// (a bad --max-errors) is the only thing printed: no "stopping …" first.
func TestHabitsValidateBeforeSpeaking(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"stop", "i-a", "--max-errors", "lots"},
		{"stop", "i-a", "--max-errors", "120%"},
		{"stop", "i-a", "--context", "nosuch"},
		{"stop", "i-a", "--dry-run", "--context", "nosuch"},
	} {
		out, errOut, code := run(t, []string{"NATS_URL=nats://127.0.0.1:1"}, args...)
		if code != 2 || out != "" || strings.Contains(errOut, "stopping") || strings.Contains(errOut, "dry run for") || !strings.Contains(errOut, args[len(args)-1]) {
			t.Errorf("bccstop %s: exit %d, stdout %q, stderr %q: want only the usage error", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// onePlural finds a count of one with a plural noun: "1 commands".
var onePlural = regexp.MustCompile(`(^|[^0-9.,/])1 (commands|instances|stops|errors|ids|targets|results|duplicate ids)\b`)

// TestHabitsSayOneAsOne: one of anything is said in the singular, and a
// skipped instance is said to be skipped once, with why.
func TestHabitsSayOneAsOne(t *testing.T) {
	t.Parallel()
	f := newStopFixture(t)
	f.sim.Seed(fakebcc.Running, "i-one1", "i-one2", "i-one3", "i-one4")
	env := f.cliEnv(t, "BCCSTOP_PROTECTED_INSTANCES=i-prot")
	say := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := run(t, env, args...)
		all := out + errOut
		if code != wantCode {
			t.Errorf("bccstop %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, all)
		}
		if m := onePlural.FindString(all); m != "" {
			t.Errorf("bccstop %s says %q:\n%s", strings.Join(args, " "), strings.TrimSpace(m), all)
		}
		if strings.Contains(all, "protected: protected") || strings.Contains(all, "(protected): protected") {
			t.Errorf("bccstop %s repeats itself:\n%s", strings.Join(args, " "), all)
		}
		return all
	}
	out := say(0, "stop", "i-one1", "i-one1", "i-prot", "--batch-id", "one")
	for _, want := range []string{"stopping 1 instance (2 by id, 1 duplicate id ignored), batch one",
		"skipped i-prot (protected): listed in BCCSTOP_PROTECTED_INSTANCES", "1 command in"} {
		if !strings.Contains(out, want) {
			t.Errorf("stop lacks %q:\n%s", want, out)
		}
	}
	if out := say(0, "stop", "i-one1", "--batch-id", "one"); !strings.Contains(out, "1 command had been published before") {
		t.Errorf("re-run:\n%s", out)
	}
	if out := say(0, "stop", "i-one2", "--wait=false"); !strings.Contains(out, "published 1 command") {
		t.Errorf("--wait=false:\n%s", out)
	}
	out = say(1, "stop", "i-gone", "i-one3", "--max-in-flight", "1", "--max-errors", "0")
	for _, want := range []string{"stopped publishing after 1 error", "1 command was not sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("over the error budget, lacks %q:\n%s", want, out)
		}
	}
	if out := say(0, "stop", "--dry-run", "i-one4", "i-prot"); !strings.Contains(out, "skipped (protected): listed in BCCSTOP_PROTECTED_INSTANCES") {
		t.Errorf("dry run:\n%s", out)
	}
}
