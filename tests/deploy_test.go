package tests

// The deployment files (deploy/Dockerfile, .dockerignore, docker-compose.yml,
// deploy/kubernetes, deploy/grafana) checked against the code they deploy.
// No image can be built or pulled here, so the files are parsed strictly
// and every name, flag, port and duration in them is compared with what
// the binary accepts and serves: a renamed variable, flag, metric or stream
// fails here rather than in someone's cluster.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// deployRoot is the repository root, seen from the tests directory.
const deployRoot = ".."

// ---------------------------------------------------------------------------
// Dockerfile and .dockerignore

type deployInstruction struct {
	line int
	cmd  string // upper case: FROM, RUN, …
	args string
}

type deployStage struct {
	from         string // base image
	instructions []deployInstruction
}

func TestDeployDockerfile(t *testing.T) {
	const file = "deploy/Dockerfile"
	stages := deployParseDockerfile(t, file)
	if len(stages) < 2 {
		t.Fatalf("%s: want a build stage and a runtime stage, found %d stage(s)", file, len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The build stage compiles a static binary of ./cmd/bccstop with the Go
	// release go.mod asks for.
	goVersion := deployGoModVersion(t)
	if m := regexp.MustCompile(`^golang:(\d+\.\d+)`).FindStringSubmatch(build.from); m == nil {
		t.Errorf("%s: the build stage starts FROM %q; want an official golang:<version> image", file, build.from)
	} else if !strings.HasPrefix(goVersion+".", m[1]+".") {
		t.Errorf("%s: the build stage uses Go %s but go.mod says go %s; keep them on the same release", file, m[1], goVersion)
	}
	var buildRun string
	for _, in := range build.instructions {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildRun = in.args
		}
	}
	switch {
	case buildRun == "":
		t.Errorf("%s: the build stage has no RUN … go build", file)
	case !strings.Contains(buildRun, "CGO_ENABLED=0"):
		t.Errorf("%s: go build runs without CGO_ENABLED=0; the runtime image has no libc, so the binary must be static", file)
	case !strings.Contains(buildRun, "./cmd/bccstop"):
		t.Errorf("%s: go build does not build ./cmd/bccstop", file)
	}
	// -X on a variable that does not exist is silently ignored by the linker.
	vars := deployMainStringVars(t)
	for _, m := range regexp.MustCompile(`-X\s+main\.(\w+)=`).FindAllStringSubmatch(buildRun, -1) {
		if !vars[m[1]] {
			t.Errorf("%s: -ldflags sets main.%s, but cmd/bccstop declares no package-level string %s (it has: %s)", file, m[1], m[1], deployKeys(vars))
		}
	}
	// The Makefile's `make image` passes build args; each must be declared.
	args := map[string]bool{}
	for _, st := range stages {
		for _, in := range st.instructions {
			if in.cmd == "ARG" {
				name, _, _ := strings.Cut(strings.Fields(in.args)[0], "=")
				args[name] = true
			}
		}
	}
	makefile := string(deployRead(t, "Makefile"))
	if !strings.Contains(makefile, "-f "+file) {
		t.Errorf("Makefile: `make image` does not build with -f %s", file)
	}
	for _, m := range regexp.MustCompile(`--build-arg\s+(\w+)=`).FindAllStringSubmatch(makefile, -1) {
		if !args[m[1]] {
			t.Errorf("%s: the Makefile passes --build-arg %s, but the Dockerfile declares no ARG %s", file, m[1], m[1])
		}
	}

	// The runtime stage: non-root, the binary as entrypoint, a valid command.
	user := deployLast(final, "USER")
	uid, _, _ := strings.Cut(user, ":")
	switch {
	case user == "" && !strings.HasSuffix(final.from, ":nonroot"):
		t.Errorf("%s: the final stage (FROM %s) sets no USER, so the worker would run as root", file, final.from)
	case uid == "0" || uid == "root":
		t.Errorf("%s: the final stage runs as USER %s; it must not be root", file, user)
	case user != "" && !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user):
		t.Errorf("%s: USER %q is not numeric; Kubernetes' runAsNonRoot can only verify a numeric user", file, user)
	}
	entrypoint := deployExecForm(t, file, "ENTRYPOINT", deployLast(final, "ENTRYPOINT"))
	cmd := deployExecForm(t, file, "CMD", deployLast(final, "CMD"))
	if len(entrypoint) != 1 {
		t.Fatalf("%s: ENTRYPOINT %q: want exactly the binary, like [\"/bccstop\"], so CMD and `docker run IMAGE <command>` pick the subcommand", file, entrypoint)
	}
	copied := false
	for _, in := range final.instructions {
		if in.cmd == "COPY" && strings.Contains(in.args, "--from=") {
			f := strings.Fields(in.args)
			copied = copied || f[len(f)-1] == entrypoint[0]
		}
	}
	if !copied {
		t.Errorf("%s: ENTRYPOINT runs %s, but no COPY --from=… puts the binary there", file, entrypoint[0])
	}
	if p := deployCommandProblem(t, cmd); p != "" {
		t.Errorf("%s: CMD %q: %s", file, cmd, p)
	}

	// EXPOSE and HEALTHCHECK follow the worker's default BCCSTOP_HTTP_ADDR.
	defaultAddr := deployWorkerDefault(t, "BCCSTOP_HTTP_ADDR")
	port := deployPort(t, defaultAddr)
	if exposed := strings.Fields(deployLast(final, "EXPOSE")); !slices.Contains(exposed, port) && !slices.Contains(exposed, port+"/tcp") {
		t.Errorf("%s: EXPOSE %v does not include %s, the port of the default BCCSTOP_HTTP_ADDR %q", file, exposed, port, defaultAddr)
	}
	hc := deployLast(final, "HEALTHCHECK")
	hcOpts := regexp.MustCompile(`^(--\S+\s+)*`).FindString(hc)
	hcCmd, ok := strings.CutPrefix(strings.TrimSpace(hc[len(hcOpts):]), "CMD")
	if !ok {
		t.Fatalf("%s: HEALTHCHECK %q: want HEALTHCHECK [options] CMD [\"%s\", \"probe\", URL]", file, hc, entrypoint[0])
	}
	probe := deployExecForm(t, file, "HEALTHCHECK CMD", strings.TrimSpace(hcCmd))
	if probe[0] != entrypoint[0] {
		t.Errorf("%s: HEALTHCHECK runs %s; the image has no shell or curl, only %s", file, probe[0], entrypoint[0])
	} else if p := deployProbeProblem(t, probe[1:], defaultAddr); p != "" {
		t.Errorf("%s: HEALTHCHECK %q: %s", file, probe, p)
	}

	t.Run("dockerignore", func(t *testing.T) {
		patterns := deployDockerignore(t)
		if !deployIgnored(patterns, ".git") {
			t.Errorf(".dockerignore: .git is not excluded, so every build sends the repository history")
		}
		var excluded []string
		for _, need := range deployBuildInputs(t) {
			if deployIgnored(patterns, need) {
				excluded = append(excluded, need)
			}
		}
		if len(excluded) > 0 {
			if len(excluded) > 5 {
				excluded = append(excluded[:5], fmt.Sprintf("… (%d files in all)", len(excluded)))
			}
			t.Errorf(".dockerignore excludes files the image build needs: %s", strings.Join(excluded, ", "))
		}
	})
}

func deployParseDockerfile(t *testing.T, file string) []deployStage {
	t.Helper()
	var stages []deployStage
	sc := bufio.NewScanner(bytes.NewReader(deployRead(t, file)))
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			start = n
		} else if strings.HasPrefix(line, "#") {
			continue // comments inside a continued instruction are dropped by Docker too
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		word, rest, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := deployInstruction{line: start, cmd: strings.ToUpper(word), args: strings.TrimSpace(rest)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			st := deployStage{}
			if len(f) > 0 {
				st.from = f[0]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", file, in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
	}
	return stages
}

// deployLast returns the arguments of the stage's last cmd instruction, the
// one that takes effect.
func deployLast(st deployStage, cmd string) string {
	for i := len(st.instructions) - 1; i >= 0; i-- {
		if st.instructions[i].cmd == cmd {
			return st.instructions[i].args
		}
	}
	return ""
}

// deployExecForm decodes an exec-form (JSON array) instruction; the shell
// form would need /bin/sh, which the distroless image lacks.
func deployExecForm(t *testing.T, file, what, args string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil || len(out) == 0 {
		t.Fatalf("%s: %s %s: want the exec form, a JSON array like [\"/bccstop\", \"worker\"]; the image has no shell", file, what, args)
	}
	return out
}

func deployGoModVersion(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(deployRead(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	return string(m[1])
}

// deployMainStringVars lists cmd/bccstop's package-level string variables,
// the ones -ldflags -X can set.
func deployMainStringVars(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	dir := filepath.Join(deployRoot, "cmd", "bccstop")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					isString := false
					if id, ok := vs.Type.(*ast.Ident); ok {
						isString = id.Name == "string"
					} else if vs.Type == nil && i < len(vs.Values) {
						lit, ok := vs.Values[i].(*ast.BasicLit)
						isString = ok && lit.Kind == token.STRING
					}
					if isString {
						vars[name.Name] = true
					}
				}
			}
		}
	}
	return vars
}

func deployDockerignore(t *testing.T) []string {
	t.Helper()
	var patterns []string
	for _, line := range strings.Split(string(deployRead(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%q) are not understood by this test; extend deployIgnored", line)
		}
		patterns = append(patterns, path.Clean(strings.TrimPrefix(line, "/")))
	}
	return patterns
}

// deployIgnored reports whether a .dockerignore pattern excludes name (a
// slash-separated path from the context root) or one of its parents.
func deployIgnored(patterns []string, name string) bool {
	parts := strings.Split(name, "/")
	for _, p := range patterns {
		for i := 1; i <= len(parts); i++ {
			prefix := strings.Join(parts[:i], "/")
			if rest, ok := strings.CutPrefix(p, "**/"); ok {
				// ** matches any number of directories, none included.
				for j := 0; j < i; j++ {
					if ok, _ := path.Match(rest, strings.Join(parts[j:i], "/")); ok {
						return true
					}
				}
				continue
			}
			if ok, _ := path.Match(p, prefix); ok {
				return true
			}
		}
	}
	return false
}

// deployBuildInputs lists what go build ./cmd/bccstop reads: go.mod, go.sum
// and the Go files of every package of this module.
func deployBuildInputs(t *testing.T) []string {
	t.Helper()
	out := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir(deployRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(deployRoot, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || rel == "tests") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ---------------------------------------------------------------------------
// docker-compose.yml

type deployCompose struct {
	Name     string                          `json:"name"`
	Services map[string]deployComposeService `json:"services"`
	Volumes  map[string]*struct {
		Driver string `json:"driver"`
	} `json:"volumes"`
	Configs map[string]struct {
		Content string `json:"content"`
		File    string `json:"file"`
	} `json:"configs"`
}

type deployComposeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string            `json:"context"`
		Dockerfile string            `json:"dockerfile"`
		Args       map[string]string `json:"args"`
	} `json:"build"`
	Command     []string          `json:"command"`
	Entrypoint  []string          `json:"entrypoint"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
		Restart   bool   `json:"restart"`
		Required  *bool  `json:"required"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval"`
		Timeout     string   `json:"timeout"`
		Retries     int      `json:"retries"`
		StartPeriod string   `json:"start_period"`
		Disable     bool     `json:"disable"`
	} `json:"healthcheck"`
	NetworkMode     string   `json:"network_mode"`
	StopGracePeriod string   `json:"stop_grace_period"`
	Restart         string   `json:"restart"`
	Profiles        []string `json:"profiles"`
	Configs         []struct {
		Source string `json:"source"`
		Target string `json:"target"`
	} `json:"configs"`
}

func TestDeployCompose(t *testing.T) {
	const file = "docker-compose.yml"
	var c deployCompose
	deployDecode(t, file, deployRead(t, file), &c, true)

	for _, name := range []string{"nats", "worker", "fakebcc", "jaeger"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("%s: no service %q", file, name)
		}
	}
	worker, sim, nats := c.Services["worker"], c.Services["fakebcc"], c.Services["nats"]

	// Every service built from deploy/Dockerfile runs a valid bccstop command
	// with variables the binary reads.
	for _, name := range deployKeys(c.Services) {
		svc := c.Services[name]
		if svc.Build == nil || path.Clean(svc.Build.Dockerfile) != "deploy/Dockerfile" {
			continue
		}
		if len(svc.Entrypoint) > 0 {
			t.Errorf("%s: service %s overrides the entrypoint; give bccstop's subcommand as command instead", file, name)
		}
		if p := deployCommandProblem(t, svc.Command); p != "" {
			t.Errorf("%s: service %s: command %q: %s", file, name, svc.Command, p)
		}
		for _, v := range deployKeys(svc.Environment) {
			if p := deployEnvProblem(v); p != "" {
				t.Errorf("%s: service %s sets %s: %s", file, name, v, p)
			}
		}
	}
	for _, name := range []string{"worker", "fakebcc"} {
		if b := c.Services[name].Build; b == nil || path.Clean(b.Dockerfile) != "deploy/Dockerfile" {
			t.Errorf("%s: service %s is not built from deploy/Dockerfile", file, name)
		}
	}
	if len(worker.Command) == 0 || worker.Command[0] != "worker" {
		t.Errorf("%s: service worker runs %q, not `worker`", file, worker.Command)
	}

	// The worker's configuration loads as the binary would load it.
	cfg, err := deployLoadWorker(t, worker.Environment, nil)
	if err != nil {
		t.Fatalf("%s: service worker: its environment does not start a worker: %v", file, err)
	}
	port := deployPort(t, cfg.HTTPAddr)
	if p := deployListenProblem(cfg.HTTPAddr); p != "" {
		t.Errorf("%s: service worker: %s", file, p)
	}
	if !slices.ContainsFunc(worker.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) || p == port }) {
		t.Errorf("%s: service worker publishes %v, not the port of BCCSTOP_HTTP_ADDR %q (%s)", file, worker.Ports, cfg.HTTPAddr, port)
	}
	if hc := worker.Healthcheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/bccstop" {
		t.Errorf("%s: service worker: want healthcheck test [\"CMD\", \"/bccstop\", \"probe\", URL] (the image has no shell)", file)
	} else if p := deployProbeProblem(t, hc.Test[2:], cfg.HTTPAddr); p != "" {
		t.Errorf("%s: service worker: healthcheck %q: %s", file, hc.Test, p)
	}
	if d, err := time.ParseDuration(worker.StopGracePeriod); err != nil || d <= cfg.ShutdownTimeout {
		t.Errorf("%s: service worker: stop_grace_period %q must be longer than BCCSTOP_SHUTDOWN_TIMEOUT (%s), or docker kills in-flight commands", file, worker.StopGracePeriod, cfg.ShutdownTimeout)
	}
	if dep, ok := worker.DependsOn["nats"]; !ok || dep.Condition != "service_healthy" {
		t.Errorf("%s: service worker must depend on nats with condition service_healthy", file)
	}
	for _, raw := range strings.Split(cfg.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Hostname() == "" {
			t.Errorf("%s: NATS_URL %q is not a list of URLs", file, cfg.URL)
			continue
		}
		if _, ok := c.Services[u.Hostname()]; !ok {
			t.Errorf("%s: NATS_URL names host %s, which is no service of this file", file, u.Hostname())
		}
	}
	if ep := worker.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "" {
		if u, err := url.Parse(ep); err != nil || c.Services[u.Hostname()].Image == "" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q does not name a service of this file", file, ep)
		} else if u.Port() != "4318" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q: the worker exports OTLP over HTTP, port 4318", file, ep)
		}
	}

	// The simulator: plain http is allowed only on loopback, so it must live
	// in the worker's network namespace, on the address BCC_ENDPOINT names.
	endpoint, err := bcc.ParseEndpoint(cfg.Endpoint)
	if err != nil {
		t.Fatalf("%s: service worker: BCC_ENDPOINT: %v", file, err)
	}
	if endpoint.Scheme == "http" && sim.NetworkMode != "service:worker" {
		t.Errorf("%s: service fakebcc has network_mode %q; it must be \"service:worker\", because the worker reaches an http:// endpoint only on its own loopback (BCC_ENDPOINT=%s)", file, sim.NetworkMode, cfg.Endpoint)
	}
	simAddr := deployFlagValue(sim.Command, "addr")
	if simAddr != endpoint.Host {
		t.Errorf("%s: service fakebcc listens on --addr %q, but the worker calls BCC_ENDPOINT=%s", file, simAddr, cfg.Endpoint)
	}
	if len(sim.Ports) > 0 {
		t.Errorf("%s: service fakebcc publishes ports; with network_mode service:worker, ports belong on the worker", file)
	}
	if hc := sim.Healthcheck; hc == nil || !hc.Disable {
		t.Errorf("%s: service fakebcc inherits the image's health check, which would probe the worker's /readyz in the shared namespace; disable it", file)
	}
	// The simulator, run with the file's command and environment, accepts
	// calls the worker signs with its own credentials.
	t.Run("simulator accepts the worker", func(t *testing.T) {
		deploySimulatorAcceptsWorker(t, sim, cfg)
	})

	// NATS: JetStream on, persisted, monitored, and reachable by the README's
	// `nats --server nats://127.0.0.1:4222 pub …`.
	joined := " " + strings.Join(nats.Command, " ") + " "
	if !strings.Contains(joined, " -js ") && !strings.Contains(joined, " --jetstream ") {
		t.Errorf("%s: service nats runs without -js; the worker needs JetStream", file)
	}
	store := deployFlagValue(nats.Command, "sd")
	if store == "" || !slices.ContainsFunc(nats.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+store) }) {
		t.Errorf("%s: service nats keeps JetStream in %q without a volume there; commands would be lost with the container", file, store)
	}
	if !slices.Contains(nats.Ports, "4222:4222") {
		t.Errorf("%s: service nats does not publish 4222:4222, so the README's nats pub line cannot reach it", file)
	}
	monitor := deployFlagValue(nats.Command, "m")
	if hc := nats.Healthcheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "127.0.0.1:"+monitor+"/healthz") {
		t.Errorf("%s: service nats: the health check must query /healthz on the monitoring port (-m %s)", file, monitor)
	} else if slices.Contains(hc.Test, "wget") && !strings.Contains(nats.Image, "alpine") {
		t.Errorf("%s: service nats: image %s has no wget for its health check; use an -alpine tag", file, nats.Image)
	}
	if c.Services["jaeger"].Environment["COLLECTOR_OTLP_ENABLED"] != "true" {
		t.Errorf("%s: service jaeger needs COLLECTOR_OTLP_ENABLED=true to receive OTLP", file)
	}

	// Bind mounts and configs refer to things that exist.
	for _, name := range deployKeys(c.Services) {
		for _, v := range c.Services[name].Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(deployRoot, src)); err != nil {
					t.Errorf("%s: service %s mounts %s, which does not exist", file, name, src)
				}
			} else if _, ok := c.Volumes[src]; !ok && !strings.HasPrefix(src, "/") {
				t.Errorf("%s: service %s mounts volume %s, which is not declared under volumes", file, name, src)
			}
		}
		for _, cf := range c.Services[name].Configs {
			if _, ok := c.Configs[cf.Source]; !ok {
				t.Errorf("%s: service %s uses config %s, which is not declared under configs", file, name, cf.Source)
			}
		}
	}
	if prom, ok := c.Configs["prometheus-config"]; ok && !strings.Contains(prom.Content, "worker:"+port) {
		t.Errorf("%s: the Prometheus config does not scrape worker:%s", file, port)
	}
}

// deploySimulatorAcceptsWorker runs `bccstop fakebcc` with the compose
// service's command and environment (on a free port) and stops an instance
// through it with the worker's credentials.
func deploySimulatorAcceptsWorker(t *testing.T, sim deployComposeService, cfg config.Worker) {
	args := slices.Clone(sim.Command)
	for i, a := range args {
		switch {
		case strings.TrimLeft(a, "-") == "addr" && i+1 < len(args):
			args[i+1] = "127.0.0.1:0"
		case strings.HasPrefix(strings.TrimLeft(a, "-"), "addr="):
			args[i] = "--addr=127.0.0.1:0"
		}
	}
	var env []string
	for _, k := range deployKeys(sim.Environment) {
		env = append(env, k+"="+sim.Environment[k])
	}
	p := start(t, env, args...)
	out := waitOutput(t, p.stdout, "listening on http://", 10*time.Second)
	addr := regexp.MustCompile(`listening on http://(\S+)`).FindStringSubmatch(out)[1]
	client, err := bcc.New(bcc.Options{
		Endpoint:    "http://" + addr,
		Credentials: bce.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey.Reveal()},
		Timeout:     5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.StopInstance(ctx, bcc.StopRequest{InstanceID: "i-composecheck"}); err != nil {
		t.Errorf("docker-compose.yml: the simulator started as `bccstop %s` refuses the worker's stop call: %v (do both services get the same BCE credentials, and does fakebcc have --auto-create?)", strings.Join(sim.Command, " "), err)
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

type deployMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type deployTypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type deployKustomization struct {
	deployTypeMeta
	Namespace string `json:"namespace"`
	Labels    []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
		IncludeTemplates bool              `json:"includeTemplates"`
	} `json:"labels"`
	Resources  []string `json:"resources"`
	Components []string `json:"components"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
		Digest  string `json:"digest"`
	} `json:"images"`
}

type deployNamespace struct {
	deployTypeMeta
	Metadata deployMeta `json:"metadata"`
}

type deployServiceAccount struct {
	deployTypeMeta
	Metadata                     deployMeta `json:"metadata"`
	AutomountServiceAccountToken *bool      `json:"automountServiceAccountToken"`
}

type deployConfigMap struct {
	deployTypeMeta
	Metadata deployMeta        `json:"metadata"`
	Data     map[string]string `json:"data"`
}

type deploySecret struct {
	deployTypeMeta
	Metadata   deployMeta        `json:"metadata"`
	Type       string            `json:"type"`
	StringData map[string]string `json:"stringData"`
	Data       map[string]string `json:"data"`
}

// deployIntOrString is a Kubernetes IntOrString: 8080 or "http".
type deployIntOrString string

func (v *deployIntOrString) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = deployIntOrString(s)
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a number or a name, got %s", b)
	}
	*v = deployIntOrString(strconv.Itoa(n))
	return nil
}

type deployLabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type deployProbe struct {
	HTTPGet *struct {
		Path   string            `json:"path"`
		Port   deployIntOrString `json:"port"`
		Scheme string            `json:"scheme"`
	} `json:"httpGet"`
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
	InitialDelaySeconds int `json:"initialDelaySeconds"`
	PeriodSeconds       int `json:"periodSeconds"`
	TimeoutSeconds      int `json:"timeoutSeconds"`
	FailureThreshold    int `json:"failureThreshold"`
	SuccessThreshold    int `json:"successThreshold"`
}

type deployContainer struct {
	Name            string   `json:"name"`
	Image           string   `json:"image"`
	ImagePullPolicy string   `json:"imagePullPolicy"`
	Command         []string `json:"command"`
	Args            []string `json:"args"`
	EnvFrom         []struct {
		ConfigMapRef *struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
		SecretRef *struct {
			Name string `json:"name"`
		} `json:"secretRef"`
	} `json:"envFrom"`
	Env []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
			ResourceFieldRef *struct {
				Resource string `json:"resource"`
				Divisor  string `json:"divisor"`
			} `json:"resourceFieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	} `json:"ports"`
	LivenessProbe  *deployProbe `json:"livenessProbe"`
	ReadinessProbe *deployProbe `json:"readinessProbe"`
	StartupProbe   *deployProbe `json:"startupProbe"`
	Resources      struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	SecurityContext *struct {
		RunAsNonRoot             *bool `json:"runAsNonRoot"`
		RunAsUser                *int  `json:"runAsUser"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Drop []string `json:"drop"`
			Add  []string `json:"add"`
		} `json:"capabilities"`
		SeccompProfile *struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
		SubPath   string `json:"subPath"`
	} `json:"volumeMounts"`
}

type deployPodSpec struct {
	ServiceAccountName            string `json:"serviceAccountName"`
	AutomountServiceAccountToken  *bool  `json:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int   `json:"terminationGracePeriodSeconds"`
	SecurityContext               *struct {
		RunAsNonRoot   *bool `json:"runAsNonRoot"`
		RunAsUser      *int  `json:"runAsUser"`
		RunAsGroup     *int  `json:"runAsGroup"`
		FSGroup        *int  `json:"fsGroup"`
		SeccompProfile *struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	} `json:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int                 `json:"maxSkew"`
		TopologyKey       string              `json:"topologyKey"`
		WhenUnsatisfiable string              `json:"whenUnsatisfiable"`
		LabelSelector     deployLabelSelector `json:"labelSelector"`
	} `json:"topologySpreadConstraints"`
	Affinity *struct {
		PodAntiAffinity json.RawMessage `json:"podAntiAffinity"`
		NodeAffinity    json.RawMessage `json:"nodeAffinity"`
	} `json:"affinity"`
	Containers []deployContainer `json:"containers"`
	Volumes    []struct {
		Name   string `json:"name"`
		Secret *struct {
			SecretName  string `json:"secretName"`
			DefaultMode *int   `json:"defaultMode"`
			Optional    *bool  `json:"optional"`
			Items       []struct {
				Key  string `json:"key"`
				Path string `json:"path"`
				Mode *int   `json:"mode"`
			} `json:"items"`
		} `json:"secret"`
		EmptyDir *struct {
			Medium    string `json:"medium"`
			SizeLimit string `json:"sizeLimit"`
		} `json:"emptyDir"`
	} `json:"volumes"`
}

type deployDeployment struct {
	deployTypeMeta
	Metadata deployMeta `json:"metadata"`
	Spec     struct {
		Replicas             *int                `json:"replicas"`
		RevisionHistoryLimit *int                `json:"revisionHistoryLimit"`
		Selector             deployLabelSelector `json:"selector"`
		Strategy             struct {
			Type          string `json:"type"`
			RollingUpdate *struct {
				MaxSurge       deployIntOrString `json:"maxSurge"`
				MaxUnavailable deployIntOrString `json:"maxUnavailable"`
			} `json:"rollingUpdate"`
		} `json:"strategy"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec deployPodSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type deployService struct {
	deployTypeMeta
	Metadata deployMeta `json:"metadata"`
	Spec     struct {
		Type     string            `json:"type"`
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name       string            `json:"name"`
			Port       int               `json:"port"`
			TargetPort deployIntOrString `json:"targetPort"`
			Protocol   string            `json:"protocol"`
		} `json:"ports"`
	} `json:"spec"`
}

type deployPDB struct {
	deployTypeMeta
	Metadata deployMeta `json:"metadata"`
	Spec     struct {
		MinAvailable   *deployIntOrString  `json:"minAvailable"`
		MaxUnavailable *deployIntOrString  `json:"maxUnavailable"`
		Selector       deployLabelSelector `json:"selector"`
	} `json:"spec"`
}

type deployScaledObject struct {
	deployTypeMeta
	Metadata deployMeta `json:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int `json:"minReplicaCount"`
		MaxReplicaCount *int `json:"maxReplicaCount"`
		PollingInterval int  `json:"pollingInterval"`
		CooldownPeriod  int  `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// deployKinds are the kinds this test knows, with their apiVersion.
var deployKinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Namespace":           {"v1", func() any { return &deployNamespace{} }},
	"ServiceAccount":      {"v1", func() any { return &deployServiceAccount{} }},
	"ConfigMap":           {"v1", func() any { return &deployConfigMap{} }},
	"Secret":              {"v1", func() any { return &deploySecret{} }},
	"Service":             {"v1", func() any { return &deployService{} }},
	"Deployment":          {"apps/v1", func() any { return &deployDeployment{} }},
	"PodDisruptionBudget": {"policy/v1", func() any { return &deployPDB{} }},
	"ScaledObject":        {"keda.sh/v1alpha1", func() any { return &deployScaledObject{} }},
}

func TestDeployKubernetes(t *testing.T) {
	const dir = "deploy/kubernetes"
	var k deployKustomization
	deployDecode(t, dir+"/kustomization.yaml", deployRead(t, dir+"/kustomization.yaml"), &k, false)
	if k.Kind != "Kustomization" || k.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Fatalf("%s/kustomization.yaml: kind %q, apiVersion %q; want a kustomize.config.k8s.io/v1beta1 Kustomization", dir, k.Kind, k.APIVersion)
	}
	if k.Namespace == "" {
		t.Errorf("%s/kustomization.yaml: no namespace; the base would land in whatever namespace kubectl defaults to", dir)
	}

	// Every manifest in the directory parses strictly; the kustomization
	// lists each one except the Secret example.
	objects := map[string][]any{} // kind → objects
	listed := map[string]bool{}
	for _, r := range k.Resources {
		listed[path.Clean(r)] = true
		if _, err := os.Stat(filepath.Join(deployRoot, dir, r)); err != nil {
			t.Errorf("%s/kustomization.yaml: resource %s does not exist", dir, r)
		}
	}
	entries, err := os.ReadDir(filepath.Join(deployRoot, dir))
	if err != nil {
		t.Fatal(err)
	}
	var secretExample *deploySecret
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "kustomization.yaml" || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		example := strings.Contains(name, "example")
		if !listed[name] && !example {
			t.Errorf("%s/%s is not listed in kustomization.yaml's resources (name it *example* if it is meant to stay out)", dir, name)
		}
		if listed[name] && example {
			t.Errorf("%s/%s is an example but kustomization.yaml applies it", dir, name)
		}
		for i, doc := range deploySplitYAML(deployRead(t, dir+"/"+name)) {
			where := fmt.Sprintf("%s/%s (document %d)", dir, name, i+1)
			var tm deployTypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			kind, ok := deployKinds[tm.Kind]
			if !ok {
				t.Fatalf("%s: kind %q is not checked by tests/deploy_test.go; add it to deployKinds", where, tm.Kind)
			}
			if tm.APIVersion != kind.apiVersion {
				t.Errorf("%s: %s has apiVersion %q, want %q", where, tm.Kind, tm.APIVersion, kind.apiVersion)
			}
			obj := kind.new()
			deployDecode(t, where, doc, obj, false)
			if example {
				if s, ok := obj.(*deploySecret); ok {
					secretExample = s
				}
				continue
			}
			objects[tm.Kind] = append(objects[tm.Kind], obj)
		}
	}
	one := func(kind string) any {
		if len(objects[kind]) != 1 {
			t.Fatalf("%s: want exactly one %s applied, found %d", dir, kind, len(objects[kind]))
		}
		return objects[kind][0]
	}
	dep := one("Deployment").(*deployDeployment)
	cm := one("ConfigMap").(*deployConfigMap)
	sa := one("ServiceAccount").(*deployServiceAccount)
	so := one("ScaledObject").(*deployScaledObject)
	pdb := one("PodDisruptionBudget").(*deployPDB)
	if secretExample == nil {
		t.Fatalf("%s: no Secret example (secret.example.yaml) shows the credentials the pods mount", dir)
	}

	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: the Deployment has %d containers; want the worker alone", dir, len(pod.Containers))
	}
	c := pod.Containers[0]
	podLabels := dep.Spec.Template.Metadata.Labels
	deploySelects(t, "the Deployment's selector", dep.Spec.Selector.MatchLabels, podLabels)
	deploySelects(t, "the PodDisruptionBudget", pdb.Spec.Selector.MatchLabels, podLabels)
	if pod.ServiceAccountName != sa.Metadata.Name {
		t.Errorf("%s: the pods run as service account %q, but the one defined is %q", dir, pod.ServiceAccountName, sa.Metadata.Name)
	}

	// Command line and environment.
	if len(c.Command) > 0 {
		t.Errorf("%s: the container sets command %q, replacing the image's /bccstop entrypoint; use args", dir, c.Command)
	}
	if p := deployCommandProblem(t, c.Args); p != "" {
		t.Errorf("%s: container args %q: %s", dir, c.Args, p)
	}
	if len(c.Args) == 0 || c.Args[0] != "worker" {
		t.Errorf("%s: the container runs %q, not `worker`", dir, c.Args)
	}
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cm.Metadata.Name:
			for _, name := range deployKeys(cm.Data) {
				if p := deployEnvProblem(name); p != "" {
					t.Errorf("%s: ConfigMap %s sets %s: %s", dir, cm.Metadata.Name, name, p)
				}
				env[name] = cm.Data[name]
			}
		case ef.ConfigMapRef != nil:
			t.Errorf("%s: envFrom names ConfigMap %q, which the base does not define (it defines %q)", dir, ef.ConfigMapRef.Name, cm.Metadata.Name)
		case ef.SecretRef != nil:
			t.Errorf("%s: envFrom puts Secret %q into the environment; mount credentials as files and use the *_FILE variables", dir, ef.SecretRef.Name)
		}
	}
	files := map[string]string{} // _FILE variable → mounted path
	for _, e := range c.Env {
		if p := deployEnvProblem(e.Name); p != "" {
			t.Errorf("%s: the container sets %s: %s", dir, e.Name, p)
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			t.Errorf("%s: %s comes from a Secret as an environment value; mount it as a file and use %s_FILE", dir, e.Name, strings.TrimSuffix(e.Name, "_FILE"))
		case e.ValueFrom != nil:
			env[e.Name] = "from-the-pod" // downward API
		default:
			env[e.Name] = e.Value
		}
		if strings.HasSuffix(e.Name, "_FILE") {
			files[e.Name] = e.Value
		}
	}
	for _, name := range []string{"BCE_ACCESS_KEY_ID", "BCE_SECRET_ACCESS_KEY"} {
		if _, ok := files[name+"_FILE"]; !ok {
			t.Errorf("%s: the container does not set %s_FILE; credentials come from the mounted Secret", dir, name)
		}
	}
	for _, name := range deployKeys(files) {
		if p := deploySecretFileProblem(c, pod, secretExample, files[name]); p != "" {
			t.Errorf("%s: %s=%s: %s", dir, name, files[name], p)
		}
	}
	cfg, err := deployLoadWorker(t, env, files)
	if err != nil {
		t.Fatalf("%s: the ConfigMap and container environment do not start a worker: %v", dir, err)
	}
	if p := deployListenProblem(cfg.HTTPAddr); p != "" {
		t.Errorf("%s: %s", dir, p)
	}
	if u, err := bcc.ParseEndpoint(cfg.Endpoint); err != nil || u.Scheme != "https" {
		t.Errorf("%s: BCC_ENDPOINT %q must be an https:// Baidu endpoint in a cluster", dir, cfg.Endpoint)
	}

	// Ports and probes follow BCCSTOP_HTTP_ADDR.
	port := deployPort(t, cfg.HTTPAddr)
	portNames := map[string]string{}
	for _, p := range c.Ports {
		portNames[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	if !slices.Contains(deployValues(portNames), port) {
		t.Errorf("%s: no containerPort is %s, the port of BCCSTOP_HTTP_ADDR %q", dir, port, cfg.HTTPAddr)
	}
	resolve := func(p deployIntOrString) string {
		if n, ok := portNames[string(p)]; ok {
			return n
		}
		return string(p)
	}
	for _, probe := range []struct {
		what, want string
		p          *deployProbe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		switch {
		case probe.p == nil || probe.p.HTTPGet == nil:
			t.Errorf("%s: the container has no %s with httpGet %s", dir, probe.what, probe.want)
		case probe.p.HTTPGet.Path != probe.want:
			t.Errorf("%s: %s asks %s; want %s (/healthz answers while the process lives, /readyz only while it consumes)", dir, probe.what, probe.p.HTTPGet.Path, probe.want)
		case resolve(probe.p.HTTPGet.Port) != port:
			t.Errorf("%s: %s asks port %s (%s), but BCCSTOP_HTTP_ADDR is %q", dir, probe.what, probe.p.HTTPGet.Port, resolve(probe.p.HTTPGet.Port), cfg.HTTPAddr)
		}
	}
	for _, svcObj := range objects["Service"] {
		svc := svcObj.(*deployService)
		deploySelects(t, "Service "+svc.Metadata.Name, svc.Spec.Selector, podLabels)
		for _, sp := range svc.Spec.Ports {
			if resolve(sp.TargetPort) != port {
				t.Errorf("%s: Service %s sends port %d to %s, not to the worker's port %s", dir, svc.Metadata.Name, sp.Port, sp.TargetPort, port)
			}
		}
	}

	// Shutdown: the kubelet must wait for the drain.
	grace := 30 // Kubernetes' default
	if pod.TerminationGracePeriodSeconds != nil {
		grace = *pod.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("%s: terminationGracePeriodSeconds (%d) must be more than BCCSTOP_SHUTDOWN_TIMEOUT (%s), or pods are killed while commands are in flight", dir, grace, cfg.ShutdownTimeout)
	}

	// Hardening.
	sc := c.SecurityContext
	psc := pod.SecurityContext
	if sc == nil || psc == nil {
		t.Fatalf("%s: both the pod and the container need a securityContext", dir)
	}
	if !(deployTrue(sc.RunAsNonRoot) || deployTrue(psc.RunAsNonRoot)) {
		t.Errorf("%s: runAsNonRoot is not true", dir)
	}
	if (psc.RunAsUser != nil && *psc.RunAsUser == 0) || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
		t.Errorf("%s: runAsUser is 0 (root)", dir)
	}
	if !deployTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: readOnlyRootFilesystem is not true", dir)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", dir)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", dir)
	}
	if !(psc.SeccompProfile != nil && psc.SeccompProfile.Type == "RuntimeDefault" || sc.SeccompProfile != nil && sc.SeccompProfile.Type == "RuntimeDefault") {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", dir)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("%s: no %s request", dir, r)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: no memory limit", dir)
	}
	if len(pod.TopologySpreadConstraints) == 0 && (pod.Affinity == nil || len(pod.Affinity.PodAntiAffinity) == 0) {
		t.Errorf("%s: nothing spreads the workers over nodes (topologySpreadConstraints or podAntiAffinity)", dir)
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		deploySelects(t, "topology spread constraint "+tsc.TopologyKey, tsc.LabelSelector.MatchLabels, podLabels)
	}
	if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
		t.Errorf("%s: the PodDisruptionBudget sets neither minAvailable nor maxUnavailable", dir)
	}

	// KEDA watches the stream and consumer the workers use.
	if so.Spec.ScaleTargetRef.Name != dep.Metadata.Name {
		t.Errorf("%s: the ScaledObject scales %q, not the Deployment %q", dir, so.Spec.ScaleTargetRef.Name, dep.Metadata.Name)
	}
	replicas := 1
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil {
		t.Errorf("%s: the ScaledObject needs minReplicaCount and maxReplicaCount", dir)
	} else if minR, maxR := *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount; minR < 1 || minR > maxR || replicas < minR || replicas > maxR {
		t.Errorf("%s: the ScaledObject scales %d…%d, the Deployment asks %d replicas; want 1 ≤ min ≤ replicas ≤ max", dir, minR, maxR, replicas)
	}
	var triggers int
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "nats-jetstream" {
			continue
		}
		triggers++
		md := tr.Metadata
		if md["stream"] != cfg.CommandsStream {
			t.Errorf("%s: the KEDA trigger watches stream %q, but the workers consume from BCCSTOP_COMMANDS_STREAM=%q", dir, md["stream"], cfg.CommandsStream)
		}
		if md["consumer"] != cfg.Consumer {
			t.Errorf("%s: the KEDA trigger watches consumer %q, but the workers share BCCSTOP_CONSUMER=%q", dir, md["consumer"], cfg.Consumer)
		}
		if md["account"] == "" {
			t.Errorf("%s: the KEDA trigger has no account (\"$G\" when NATS runs without accounts)", dir)
		}
		if _, _, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"]); err != nil {
			t.Errorf("%s: natsServerMonitoringEndpoint %q is not host:port of NATS monitoring", dir, md["natsServerMonitoringEndpoint"])
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n < 1 {
			t.Errorf("%s: lagThreshold %q is not a positive whole number", dir, md["lagThreshold"])
		}
	}
	if triggers != 1 {
		t.Errorf("%s: want one nats-jetstream trigger, found %d", dir, triggers)
	}

	// A 3-node JetStream cluster keeps three copies of the streams and the ledger.
	if cfg.Replicas != 3 {
		t.Errorf("%s: BCCSTOP_REPLICAS is %d; the base targets a 3-node JetStream cluster, so 3", dir, cfg.Replicas)
	}
}

// deploySecretFileProblem checks that file is a key of the Secret example,
// mounted read-only from that Secret into the container.
func deploySecretFileProblem(c deployContainer, pod deployPodSpec, secret *deploySecret, file string) string {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		if !m.ReadOnly {
			return fmt.Sprintf("volume %s is not mounted readOnly", m.Name)
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				return fmt.Sprintf("volume %s is not a Secret", v.Name)
			}
			if v.Secret.SecretName != secret.Metadata.Name {
				return fmt.Sprintf("volume %s mounts Secret %q, but the example Secret is %q", v.Name, v.Secret.SecretName, secret.Metadata.Name)
			}
			key := rel
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
				if key == "" {
					return fmt.Sprintf("Secret volume %s has no item with path %s", v.Name, rel)
				}
			}
			_, inString := secret.StringData[key]
			_, inData := secret.Data[key]
			if !inString && !inData {
				return fmt.Sprintf("the example Secret %s has no key %q", secret.Metadata.Name, key)
			}
			return ""
		}
		return fmt.Sprintf("volume %s is mounted but not defined", m.Name)
	}
	return "no volume is mounted there"
}

func deploySelects(t *testing.T, what string, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s selects nothing (empty selector)", what)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s selects %s=%s, which the worker pods do not carry (they have %v)", what, k, v, labels)
		}
	}
}

func deployTrue(b *bool) bool { return b != nil && *b }

// deploySplitYAML splits a multi-document YAML file.
func deploySplitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) != "" {
			docs = append(docs, []byte(doc))
		}
	}
	return docs
}

// ---------------------------------------------------------------------------
// Grafana dashboard

type deployDashboard struct {
	UID        string        `json:"uid"`
	Title      string        `json:"title"`
	Panels     []deployPanel `json:"panels"`
	Templating struct {
		List []struct {
			Type       string          `json:"type"`
			Name       string          `json:"name"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type deployPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []deployPanel `json:"panels"`
}

func TestDeployGrafanaDashboard(t *testing.T) {
	const file = "deploy/grafana/bccstop-dashboard.json"
	raw := deployRead(t, file)
	var d deployDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", file, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: set uid and title, so provisioning and links find the dashboard", file)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	dsVar := ""
	type query struct{ where, expr string }
	var queries []query
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			dsVar = v.Name
		case "query":
			q := v.Definition
			var obj struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
				q = obj.Query
			} else if s := ""; json.Unmarshal(v.Query, &s) == nil && s != "" {
				q = s
			}
			if m := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][\w:]*)\s*,`).FindStringSubmatch(q); m != nil {
				queries = append(queries, query{"variable $" + v.Name, m[1]})
			}
		}
	}
	if dsVar == "" {
		t.Errorf("%s: no datasource template variable; the dashboard would be tied to one Prometheus", file)
	}

	var walk func([]deployPanel)
	ids := map[int]bool{}
	walk = func(ps []deployPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d is used twice", file, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			if !strings.Contains(string(p.Datasource), "$"+dsVar) && !strings.Contains(string(p.Datasource), "${"+dsVar+"}") {
				t.Errorf("%s: panel %q does not use the datasource variable $%s", file, p.Title, dsVar)
			}
			for _, tg := range p.Targets {
				queries = append(queries, query{fmt.Sprintf("panel %q", p.Title), tg.Expr})
				for _, m := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[m[1]] {
						t.Errorf("%s: panel %q uses $%s, which is no template variable", file, p.Title, m[1])
					}
				}
			}
		}
	}
	walk(d.Panels)
	if len(queries) == 0 {
		t.Fatalf("%s: no queries", file)
	}

	series := deployScrapeWorkerMetrics(t)
	names := deployKeys(series)
	for _, q := range queries {
		metrics, matchers, byLabels := deployPromQL(q.expr)
		if len(metrics) == 0 {
			t.Errorf("%s: %s: %q names no metric", file, q.where, q.expr)
		}
		have := map[string]bool{}
		for _, m := range metrics {
			labels, ok := series[m]
			if !ok {
				t.Errorf("%s: %s queries %s, which the worker does not export; its metrics are: %s", file, q.where, m, strings.Join(names, ", "))
				continue
			}
			for l := range labels {
				have[l] = true
			}
			for _, l := range matchers[m] {
				if !labels[l] && !deployTargetLabel(l) {
					t.Errorf("%s: %s filters %s on label %q, which it does not have (it has: %s)", file, q.where, m, l, deployKeys(labels))
				}
			}
		}
		for _, l := range byLabels {
			if !have[l] && !deployTargetLabel(l) {
				t.Errorf("%s: %s groups by %q, a label none of %v has", file, q.where, l, metrics)
			}
		}
	}
}

// deployTargetLabel reports labels Prometheus adds at scrape time.
func deployTargetLabel(l string) bool { return l == "job" || l == "instance" }

// deployPromQL extracts the metric names of a PromQL expression, the label
// names each selector matches on, and the labels of by/without clauses.
// Enough PromQL for dashboards: selectors, functions, aggregations.
func deployPromQL(expr string) (metrics []string, matchers map[string][]string, by []string) {
	matchers = map[string][]string{}
	s := regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`).ReplaceAllString(expr, `""`)
	s = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(s, "")
	for _, m := range regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`).FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				by = append(by, l)
			}
		}
	}
	s = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(s, " ")
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
	sel := regexp.MustCompile(`([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?`)
	for _, ix := range sel.FindAllStringSubmatchIndex(s, -1) {
		if ix[0] > 0 && strings.ContainsAny(s[ix[0]-1:ix[0]], "0123456789.") {
			continue // the exponent of a number such as 1e3
		}
		part := func(i int) string {
			if ix[2*i] < 0 {
				return ""
			}
			return s[ix[2*i]:ix[2*i+1]]
		}
		name, braces, call := part(1), part(2), part(3)
		if call != "" || keywords[strings.ToLower(name)] {
			continue
		}
		if !slices.Contains(metrics, name) {
			metrics = append(metrics, name)
		}
		for _, lm := range regexp.MustCompile(`([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)`).FindAllStringSubmatch(braces, -1) {
			matchers[name] = append(matchers[name], lm[1])
		}
	}
	return metrics, matchers, by
}

// deployScrapeWorkerMetrics runs a worker, drives it through a retry, a
// success and a ledger hit (some series exist only once such a thing has
// happened), and returns its /metrics series names with their label names.
// It scrapes until every metric the dashboard needs is there, or 15 s.
func deployScrapeWorkerMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	const id = "i-deploydash"
	sim.SetStatus(id, fakebcc.Running)
	sim.FailInstanceTimes(id, http.StatusServiceUnavailable, "ServiceUnavailable", 1) // one retry, then success
	addr := freeAddr(t)
	start(t, []string{
		"NATS_URL=" + srv.ClientURL(),
		"BCE_ACCESS_KEY_ID=" + testenv.Credentials.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + testenv.Credentials.SecretAccessKey,
		"BCC_ENDPOINT=" + simURL,
		"BCCSTOP_HTTP_ADDR=" + addr,
		"BCCSTOP_BACKOFF=100ms",
		"BCCSTOP_LOG_LEVEL=warn",
	}, "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)

	_, js := testenv.Connect(t, srv.ClientURL())
	publish := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// No Nats-Msg-Id: the repeat must reach the worker and hit the ledger.
		if _, err := js.Publish(ctx, messages.CommandSubject, []byte(`{"instanceId":"`+id+`","commandId":"deploy-dashboard"}`), jetstream.WithExpectStream("BCCSTOP_COMMANDS")); err != nil {
			t.Fatal(err)
		}
	}
	scrape := func() map[string]map[string]bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return deployParseExposition(string(body))
	}
	want := []string{"bccstop_commands_total", "bccstop_retries_total", "bccstop_ledger_hits_total", "http_client_request_duration_seconds_bucket"}
	publish()
	deadline := time.Now().Add(15 * time.Second)
	repeated := false
	for {
		series := scrape()
		if !repeated && series["bccstop_commands_total"] != nil {
			publish()
			repeated = true
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(m string) bool { return series[m] != nil })
		if len(missing) == 0 {
			return series
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's /metrics still lacks %v after a retried command and a repeat; got: %s", missing, strings.Join(deployKeys(series), ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deployParseExposition reads Prometheus text format: series name → label names.
func deployParseExposition(body string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	labelRE := regexp.MustCompile(`([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"`)
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		name := line[:end]
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		if line[end] == '{' {
			closing := strings.LastIndex(line, "}")
			for _, m := range labelRE.FindAllStringSubmatch(line[end:closing+1], -1) {
				out[name][m[1]] = true
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Shared checks

func deployRead(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployRoot, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return b
}

// deployDecode decodes YAML (or JSON) into a typed struct as strictly as
// kubectl and compose would: duplicate keys, unknown fields and values of the
// wrong type (such as an unquoted number where a string belongs) fail.
// dropExtensions removes compose's x-* extension keys first.
func deployDecode(t *testing.T, where string, data []byte, into any, dropExtensions bool) {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if dropExtensions {
		var v any
		if err := json.Unmarshal(j, &v); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if j, err = json.Marshal(deployDropExtensions(v)); err != nil {
			t.Fatal(err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v\n(an unknown field is either a typo or one tests/deploy_test.go does not model yet; add it to the struct if it is right)", where, err)
	}
}

func deployDropExtensions(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.HasPrefix(k, "x-") {
				delete(v, k)
			} else {
				v[k] = deployDropExtensions(e)
			}
		}
	case []any:
		for i, e := range v {
			v[i] = deployDropExtensions(e)
		}
	}
	return v
}

// deployEnvProblem says what is wrong with setting the variable name on a
// bccstop container, or "" if the binary reads it.
func deployEnvProblem(name string) string {
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

// deployLoadWorker loads the worker configuration from exactly env, as the
// binary would. Each *_FILE variable in files gets a temporary file with a
// stand-in secret, since the real path exists only in the container.
func deployLoadWorker(t *testing.T, env, files map[string]string) (config.Worker, error) {
	t.Helper()
	for _, v := range config.WorkerVariables() {
		for _, name := range []string{v.Name, v.Name + "_FILE"} {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for k, v := range env {
		if _, ok := files[k]; ok {
			tmp := filepath.Join(t.TempDir(), filepath.Base(v))
			if err := os.WriteFile(tmp, []byte("stand-in-"+strings.ToLower(k)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			v = tmp
		}
		t.Setenv(k, v)
	}
	return config.LoadWorker()
}

func deployWorkerDefault(t *testing.T, name string) string {
	t.Helper()
	for _, v := range config.WorkerVariables() {
		if v.Name == name {
			return v.Default
		}
	}
	t.Fatalf("config.WorkerVariables has no %s", name)
	return ""
}

func deployPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("BCCSTOP_HTTP_ADDR %q is not HOST:PORT: %v", addr, err)
	}
	return port
}

// deployListenProblem: in a container, the ops server must listen on every
// interface, or the kubelet's probes and published ports cannot reach it.
func deployListenProblem(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		return ""
	}
	return fmt.Sprintf("BCCSTOP_HTTP_ADDR %q listens on %s only; use :PORT so probes and Prometheus reach it", addr, host)
}

// deployProbeProblem checks `probe` arguments: a valid command asking
// /healthz or /readyz on the port of httpAddr, on the container's loopback.
func deployProbeProblem(t *testing.T, args []string, httpAddr string) string {
	t.Helper()
	if len(args) == 0 || args[0] != "probe" {
		return "want `probe URL`"
	}
	if p := deployCommandProblem(t, args); p != "" {
		return p
	}
	u, err := url.Parse(args[len(args)-1])
	if err != nil {
		return err.Error()
	}
	want := deployPort(t, httpAddr)
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
	deployHelpMu    sync.Mutex
	deployHelpCache = map[string]string{}
)

// deployHelp returns `bccstop <sub> --help`, or "" if there is no such subcommand.
func deployHelp(t *testing.T, sub string) string {
	t.Helper()
	deployHelpMu.Lock()
	defer deployHelpMu.Unlock()
	if out, ok := deployHelpCache[sub]; ok {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, sub, "--help")
	cmd.Stdout = &stdout
	out := ""
	if err := cmd.Run(); err == nil && strings.Contains(stdout.String(), "Usage: bccstop "+sub) {
		out = stdout.String()
	} else if err != nil && !errors.As(err, new(*exec.ExitError)) {
		t.Fatal(err)
	}
	deployHelpCache[sub] = out
	return out
}

// deployCommandProblem checks a bccstop command line (after the entrypoint)
// against the binary's own --help: the subcommand, each flag, whether it
// takes a value, and the number of positional arguments.
func deployCommandProblem(t *testing.T, args []string) string {
	t.Helper()
	if len(args) == 0 {
		return "no subcommand"
	}
	help := deployHelp(t, args[0])
	if help == "" {
		return fmt.Sprintf("`bccstop %s --help` fails: the binary has no %q command", args[0], args[0])
	}
	flags := map[string]bool{} // name → takes a value
	for _, m := range regexp.MustCompile(`(?m)^  -([\w-]+)( \S+)?$`).FindAllStringSubmatch(help, -1) {
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
			return fmt.Sprintf("`bccstop %s` has no flag -%s (it has: %s)", args[0], name, deployKeys(flags))
		}
		if takes && !hasValue {
			if i+1 >= len(args) {
				return fmt.Sprintf("flag -%s needs a value", name)
			}
			i++
		}
	}
	// The usage line names the positional arguments: "Usage: bccstop probe [--timeout 3s] URL".
	usage := regexp.MustCompile(`Usage: bccstop \S+(.*)`).FindStringSubmatch(help)[1]
	usage = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(usage, "")
	want := strings.Fields(usage)
	variadic := len(want) > 0 && strings.HasSuffix(want[len(want)-1], "…")
	if len(positional) < len(want) || (!variadic && len(positional) > len(want)) {
		return fmt.Sprintf("`bccstop %s` takes %d argument(s) %v, got %d %q", args[0], len(want), want, len(positional), positional)
	}
	return ""
}

// deployFlagValue returns the value of -name or --name in args.
func deployFlagValue(args []string, name string) string {
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

func deployValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func deployKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
