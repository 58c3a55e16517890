// Package deploycheck holds the deployment files (deploy/Dockerfile,
// .dockerignore, docker-compose.yml, deploy/kubernetes, deploy/grafana) to
// the code they deploy. No image can be built or pulled here, so each file is
// read by the parser its own tool uses (BuildKit, Docker's pattern matcher,
// compose-go, kustomize and the Kubernetes API types, the PromQL parser,
// promlint) and every name, flag, port and duration in it is compared with
// what the binary accepts and serves: a renamed variable, flag, metric or
// stream fails here rather than in someone's cluster. The READMEs' lines
// for them are held to them too: the Compose lines of README.md, and the
// order of deploy/kubernetes/README.md.
//
// Each check returns the problems it finds instead of failing the test, so
// mutation_test.go can drop a required line from a copy of a file and assert
// that the check names what went missing.
package deploycheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/testenv"
)

// binary is bccstop, built once by TestMain into a temporary directory.
var binary string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bccstop-deploycheck-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "bccstop")
	if err := testenv.Build("../../cmd/bccstop", binary); err != nil {
		fmt.Fprintln(os.Stderr, "building bccstop:", err)
		return 1
	}
	return m.Run()
}

// repo reads the repository's files, with some replaced in memory: the
// mutation tests check a copy with one line dropped without touching the
// working tree.
type repo struct {
	root  string
	edits map[string][]byte // slash-separated path from root → content
}

// theRepo is the working tree, seen from this package's directory.
var theRepo = repo{root: filepath.Join("..", "..")}

func (r repo) read(rel string) ([]byte, error) {
	if b, ok := r.edits[rel]; ok {
		return b, nil
	}
	return os.ReadFile(filepath.Join(r.root, filepath.FromSlash(rel)))
}

func (r repo) abs(rel string) string {
	p, err := filepath.Abs(filepath.Join(r.root, filepath.FromSlash(rel)))
	if err != nil {
		panic(err)
	}
	return p
}

// with returns a copy of r in which rel reads as data.
func (r repo) with(rel string, data []byte) repo {
	edits := map[string][]byte{rel: data}
	for k, v := range r.edits {
		if k != rel {
			edits[k] = v
		}
	}
	return repo{root: r.root, edits: edits}
}

// problems collects what a check finds, one sentence each, naming the file.
type problems []string

func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// report fails t with every problem.
func report(t *testing.T, ps problems) {
	t.Helper()
	for _, p := range ps {
		t.Error(p)
	}
}

// envProblem says what is wrong with setting the variable name on a
// bccstop container, or "" if the binary reads it.
func envProblem(name string) string {
	vars := map[string]config.Variable{}
	for _, v := range config.WorkerVariables() {
		vars[v.Name] = v
	}
	if _, ok := vars[name]; ok || strings.HasPrefix(name, "OTEL_") {
		return ""
	}
	if base, ok := strings.CutSuffix(name, "_FILE"); ok {
		if v, ok := vars[base]; ok && v.Secret {
			return ""
		}
		if _, ok := vars[base]; ok {
			return fmt.Sprintf("%s is no secret, so the binary reads no %s", base, name)
		}
	}
	var similar []string
	for _, v := range config.WorkerVariables() {
		if strings.HasPrefix(v.Name, strings.SplitN(name, "_", 2)[0]+"_") {
			similar = append(similar, v.Name)
		}
	}
	sort.Strings(similar)
	if len(similar) == 0 {
		return "bccstop reads no such variable (bccstop worker --help lists them)"
	}
	return fmt.Sprintf("bccstop reads no such variable (similar ones it reads: %s)", strings.Join(similar, ", "))
}

// loadWorker loads the worker configuration from exactly env, as the binary
// would. Each *_FILE variable in files gets a temporary file with a stand-in
// secret, since the real path exists only in the container.
func loadWorker(t *testing.T, env, files map[string]string) (config.Worker, error) {
	t.Helper()
	for _, v := range config.WorkerVariables() {
		for _, name := range []string{v.Name, v.Name + "_FILE"} {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for k, v := range env {
		if _, ok := files[k]; ok {
			tmp := filepath.Join(t.TempDir(), strings.ToLower(k))
			if err := os.WriteFile(tmp, []byte("stand-in-"+strings.ToLower(k)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			v = tmp
		}
		t.Setenv(k, v)
	}
	return config.LoadWorker()
}

// workerDefault is the default of one of the worker's variables.
func workerDefault(t *testing.T, name string) string {
	t.Helper()
	for _, v := range config.WorkerVariables() {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("config.WorkerVariables has no %s", name)
	return ""
}

// port is the port of a HOST:PORT address, or "" if addr is not one.
func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

// listenProblem: in a container, the ops server must listen on every
// interface, or the kubelet's probes and published ports cannot reach it.
func listenProblem(addr string) string {
	host, p, err := net.SplitHostPort(addr)
	switch {
	case err != nil || p == "":
		return fmt.Sprintf("BCCSTOP_HTTP_ADDR %q is not HOST:PORT", addr)
	case host == "" || host == "0.0.0.0" || host == "::":
		return ""
	}
	return fmt.Sprintf("BCCSTOP_HTTP_ADDR %q listens on %s only; use :PORT so probes and Prometheus reach it", addr, host)
}

// probeProblem checks `probe` arguments: a valid command asking /healthz or
// /readyz on the port of httpAddr, on the container's loopback.
func probeProblem(t *testing.T, args []string, httpAddr string) string {
	t.Helper()
	if len(args) == 0 || args[0] != "probe" {
		return "want `probe URL`"
	}
	if p := commandProblem(t, args); p != "" {
		return p
	}
	u, err := url.Parse(args[len(args)-1])
	if err != nil {
		return err.Error()
	}
	want := port(httpAddr)
	switch {
	case u.Path != "/healthz" && u.Path != "/readyz":
		return fmt.Sprintf("asks %s; the worker serves /healthz and /readyz", u.Path)
	case u.Port() != want:
		return fmt.Sprintf("asks port %s, but BCCSTOP_HTTP_ADDR %q serves on %s", u.Port(), httpAddr, want)
	case u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost":
		return fmt.Sprintf("asks host %s; a health check runs inside the container, so 127.0.0.1", u.Hostname())
	}
	return ""
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]string{}
)

// help returns `bccstop <sub> --help`, or "" if there is no such subcommand.
func help(t *testing.T, sub string) string {
	t.Helper()
	helpMu.Lock()
	defer helpMu.Unlock()
	if out, ok := helpCache[sub]; ok {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, sub, "--help")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	out := ""
	err := cmd.Run()
	if text := stdout.String() + stderr.String(); err == nil && strings.Contains(text, "Usage: bccstop "+sub) {
		out = text
	} else if err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Fatal(err)
	}
	helpCache[sub] = out
	return out
}

// commandProblem checks a bccstop command line (after the entrypoint)
// against the binary's own --help: the subcommand, each flag, whether it
// takes a value, and the number of positional arguments.
func commandProblem(t *testing.T, args []string) string {
	t.Helper()
	if len(args) == 0 {
		return "no subcommand"
	}
	h := help(t, args[0])
	if h == "" {
		return fmt.Sprintf("`bccstop %s --help` fails: the binary has no %q command", args[0], args[0])
	}
	flags := map[string]bool{} // name → takes a value
	for _, m := range regexp.MustCompile(`(?m)^\s+--?([\w-]+)( [^\s-]\S*)?$`).FindAllStringSubmatch(h, -1) {
		flags[m[1]] = m[2] != ""
	}
	var positional []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, ok := flags[name]
		if !ok {
			return fmt.Sprintf("`bccstop %s` has no flag --%s (it has: %s)", args[0], name, keys(flags))
		}
		if takes && !hasValue {
			if i+1 >= len(args) {
				return fmt.Sprintf("flag --%s needs a value", name)
			}
			i++
		}
	}
	// The usage line names the positional arguments: "Usage: bccstop probe [--timeout 3s] URL".
	usage := regexp.MustCompile(`Usage: bccstop \S+(.*)`).FindStringSubmatch(h)[1]
	usage = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(usage, "")
	want := strings.Fields(usage)
	variadic := len(want) > 0 && strings.HasSuffix(want[len(want)-1], "…")
	if len(positional) < len(want) || (!variadic && len(positional) > len(want)) {
		return fmt.Sprintf("`bccstop %s` takes %d argument(s) %v, got %d %q", args[0], len(want), want, len(positional), positional)
	}
	return ""
}

// flagValue returns the value of -name or --name in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		flag, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || flag != name {
			continue
		}
		if ok {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// start runs bccstop with args and exactly env (see testenv.Start); the
// process is killed at the end of the test.
func start(t *testing.T, env []string, args ...string) (stdout *testenv.Buffer) {
	t.Helper()
	return testenv.Start(t, binary, env, args...).Stdout
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
