package deploycheck

// docker-compose.yml, loaded by compose-go, the library Docker Compose itself
// loads files with: schema validation (unknown keys and wrong types fail),
// anchors and merge keys, interpolation, profiles, path resolution and the
// consistency checks (undeclared volumes, configs or services fail). The
// project it returns is what `docker compose up` would run, once with the
// default profile and once with `--profile observability`.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
	"github.com/bccstop/bccstop/internal/layout"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
)

const composeFile = "docker-compose.yml"

// composeProfiles are the ways the README starts the file: `docker compose
// up`, and `docker compose --profile observability up`.
var composeProfiles = map[string][]string{
	"default":       nil,
	"observability": {"observability"},
}

func TestCompose(t *testing.T) {
	for _, name := range keys(composeProfiles) {
		t.Run(name, func(t *testing.T) {
			report(t, checkCompose(t, theRepo, name))
		})
	}
}

// loadCompose loads the file as `docker compose --profile …` would, with an
// empty environment so the machine running the test changes nothing.
func loadCompose(r repo, profile string) (*types.Project, error) {
	data, err := r.read(composeFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  r.abs("."),
		ConfigFiles: []types.ConfigFile{{Filename: r.abs(composeFile), Content: data}},
		Environment: types.Mapping{},
	}, loader.WithProfiles(composeProfiles[profile]))
}

func checkCompose(t *testing.T, r repo, profile string) problems {
	file := composeFile
	if profile != "default" {
		file += " (--profile " + profile + ")"
	}
	var ps problems
	c, err := loadCompose(r, profile)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	want := []string{"nats", "worker", "fakebcc", "jaeger"}
	if profile == "observability" {
		want = append(want, "prometheus", "grafana")
	}
	for _, name := range want {
		if _, ok := c.Services[name]; !ok {
			ps.add("%s: no service %q", file, name)
		}
	}
	if len(ps) > 0 {
		return ps
	}
	worker, sim, nats := c.Services["worker"], c.Services["fakebcc"], c.Services["nats"]

	// Every service built from deploy/Dockerfile runs a valid bccstop command
	// with variables the binary reads.
	builtHere := func(s types.ServiceConfig) bool {
		return s.Build != nil && filepath.Clean(filepath.Join(s.Build.Context, s.Build.Dockerfile)) == r.abs(dockerfile)
	}
	for _, name := range keys(c.Services) {
		svc := c.Services[name]
		if !builtHere(svc) {
			continue
		}
		if len(svc.Entrypoint) > 0 {
			ps.add("%s: service %s overrides the entrypoint; give bccstop's subcommand as command instead", file, name)
		}
		if p := commandProblem(t, svc.Command); p != "" {
			ps.add("%s: service %s: command %q: %s", file, name, svc.Command, p)
		}
		for _, v := range keys(svc.Environment) {
			if p := envProblem(v); p != "" {
				ps.add("%s: service %s sets %s: %s", file, name, v, p)
			}
		}
	}
	for _, name := range []string{"worker", "fakebcc"} {
		if !builtHere(c.Services[name]) {
			ps.add("%s: service %s is not built from %s", file, name, dockerfile)
		}
	}
	if len(worker.Command) == 0 || worker.Command[0] != "worker" {
		ps.add("%s: service worker runs %q, not `worker`", file, worker.Command)
	}

	// The worker's configuration loads as the binary would load it.
	cfg, err := loadWorker(t, environment(worker), nil)
	if err != nil {
		ps.add("%s: service worker: its environment does not start a worker: %v", file, err)
		return ps
	}
	httpPort := port(cfg.HTTPAddr)
	if p := listenProblem(cfg.HTTPAddr); p != "" {
		ps.add("%s: service worker: %s", file, p)
	}
	if !slices.ContainsFunc(worker.Ports, func(p types.ServicePortConfig) bool { return strconv.Itoa(int(p.Target)) == httpPort }) {
		ps.add("%s: service worker publishes no port %s, the port of BCCSTOP_HTTP_ADDR %q", file, httpPort, cfg.HTTPAddr)
	}
	if hc := worker.HealthCheck; hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/bccstop" {
		ps.add("%s: service worker: want healthcheck test [\"CMD\", \"/bccstop\", \"probe\", URL] (the image has no shell)", file)
	} else if p := probeProblem(t, hc.Test[2:], cfg.HTTPAddr); p != "" {
		ps.add("%s: service worker: healthcheck %q: %s", file, hc.Test, p)
	}
	if g := worker.StopGracePeriod; g == nil || time.Duration(*g) <= cfg.ShutdownTimeout {
		ps.add("%s: service worker: stop_grace_period (%v) must be longer than BCCSTOP_SHUTDOWN_TIMEOUT (%s), or docker kills in-flight commands", file, g, cfg.ShutdownTimeout)
	}
	if dep, ok := worker.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		ps.add("%s: service worker must depend on nats with condition service_healthy", file)
	}
	for _, raw := range strings.Split(cfg.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Hostname() == "" {
			ps.add("%s: NATS_URL %q is not a list of URLs", file, cfg.URL)
			continue
		}
		if _, ok := c.Services[u.Hostname()]; !ok {
			ps.add("%s: NATS_URL names host %s, which is no service of this file", file, u.Hostname())
		}
	}
	if ep := environment(worker)["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "" {
		if u, err := url.Parse(ep); err != nil || c.Services[u.Hostname()].Image == "" {
			ps.add("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q does not name a service of this file", file, ep)
		} else if u.Port() != "4318" {
			ps.add("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q: the worker exports OTLP over HTTP, port 4318", file, ep)
		}
	}

	// The simulator: plain http is allowed only on loopback, so it must live
	// in the worker's network namespace, on the address BCC_ENDPOINT names.
	endpoint, err := bcc.ParseEndpoint(cfg.Endpoint)
	if err != nil {
		ps.add("%s: service worker: BCC_ENDPOINT: %v", file, err)
		return ps
	}
	if endpoint.Scheme == "http" && sim.NetworkMode != "service:worker" {
		ps.add("%s: service fakebcc has network_mode %q; it must be \"service:worker\", because the worker reaches an http:// endpoint only on its own loopback (BCC_ENDPOINT=%s)", file, sim.NetworkMode, cfg.Endpoint)
	}
	simulatorProblems(&ps, file, sim, worker, endpoint, cfg.Endpoint)
	if len(sim.Ports) > 0 {
		ps.add("%s: service fakebcc publishes ports; with network_mode service:worker, ports belong on the worker", file)
	}
	if hc := sim.HealthCheck; hc == nil || !hc.Disable {
		ps.add("%s: service fakebcc inherits the image's health check, which would probe the worker's /readyz in the shared namespace; disable it", file)
	}

	// NATS: the shipped configuration (deploy/nats), loaded as the server
	// loads it: JetStream on, persisted, monitored, every user with a
	// role's permissions and none let in without credentials; reachable
	// on the host's loopback only; the worker one of the worker role's users.
	natsProblems(&ps, file, nats, environment(c.Services["worker"]))
	if environment(c.Services["jaeger"])["COLLECTOR_OTLP_ENABLED"] != "true" {
		ps.add("%s: service jaeger needs COLLECTOR_OTLP_ENABLED=true to receive OTLP", file)
	}

	// Bind mounts name things that exist (compose-go has already checked
	// that named volumes and configs are declared).
	for _, name := range keys(c.Services) {
		for _, v := range c.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				ps.add("%s: service %s mounts %s, which does not exist", file, name, v.Source)
			}
		}
	}
	if prom, ok := c.Configs["prometheus-config"]; ok {
		target := "worker:" + httpPort
		if targets, err := scrapeTargets(prom.Content); err != nil {
			ps.add("%s: the Prometheus config: %v", file, err)
		} else if !slices.Contains(targets, target) {
			ps.add("%s: the Prometheus config scrapes %v, not %s", file, targets, target)
		}
	} else if profile == "observability" {
		ps.add("%s: no config prometheus-config for the prometheus service", file)
	}
	return ps
}

// simulatorProblems checks that the simulator listens where the worker's
// BCC_ENDPOINT points, that the host reaches it at the same URL (the worker,
// whose network namespace it shares, publishes its port on 127.0.0.1 only),
// and that it is seeded from a file of the repository, mounted, that it
// loads: from the host, `bccstop stop --tag env=staging` then has instances
// to find (TestComposeSimulatorFromTheHost runs it).
func simulatorProblems(ps *problems, file string, sim, worker types.ServiceConfig, endpoint *url.URL, rawEndpoint string) {
	addr := flagValue(sim.Command, "addr")
	host, simPort, err := net.SplitHostPort(addr)
	if err != nil || simPort != endpoint.Port() {
		ps.add("%s: service fakebcc listens on --addr %q, but the worker calls BCC_ENDPOINT=%s", file, addr, rawEndpoint)
		return
	}
	published := false
	for _, p := range worker.Ports {
		if strconv.Itoa(int(p.Target)) != simPort {
			continue
		}
		published = true
		if p.HostIP != "127.0.0.1" {
			ps.add("%s: service worker publishes the simulator's port %s on every interface of the host; bind it to 127.0.0.1", file, simPort)
		}
		if p.Published != simPort {
			ps.add("%s: service worker publishes the simulator's port %s as %s; publish it as %s, so BCC_ENDPOINT=%s works on the host too", file, simPort, p.Published, simPort, rawEndpoint)
		}
	}
	if !published {
		ps.add("%s: service worker publishes no port %s for the simulator in its network namespace, so the host cannot reach it (BCC_ENDPOINT=%s for bccstop stop --tag)", file, simPort, rawEndpoint)
	} else if host != "" && host != "0.0.0.0" && host != "::" {
		ps.add("%s: service fakebcc listens on --addr %s, its namespace's loopback, which a published port does not reach (it forwards to the container's interface); listen on 0.0.0.0:%s", file, addr, simPort)
	}

	seed := flagValue(sim.Command, "seed")
	if seed == "" {
		ps.add("%s: service fakebcc runs without --seed, so from the host `bccstop stop --tag env=staging` finds nothing; mount a seed file", file)
		return
	}
	source := ""
	for _, v := range sim.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == seed {
			source = v.Source
		}
	}
	if source == "" {
		ps.add("%s: service fakebcc reads --seed %s, which no bind mount provides", file, seed)
		return
	}
	if _, err := fakebcc.New(fakebcc.Options{}).LoadSeedFile(source); err != nil {
		ps.add("%s: service fakebcc's seed does not load: %v", file, err)
	}
}

// environment is a service's resolved environment; a variable listed
// without a value is empty, as the empty environment of loadCompose leaves it.
func environment(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		out[k] = ""
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// scrapeTargets lists the static targets of a Prometheus configuration.
// Prometheus' own config package is not used: it links the Azure and Google
// SDKs for remote-write authentication, far more than this needs.
func scrapeTargets(content string) ([]string, error) {
	var cfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(content), &cfg); err != nil {
		return nil, err
	}
	var out []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			out = append(out, st.Targets...)
		}
	}
	return out, nil
}

// TestComposeSimulatorFromTheHost runs `bccstop fakebcc` with the compose
// service's command and environment (on a free port, its seed read from
// where the service mounts it from), then does what the README's lines for
// Compose do on the host, with what they export: each `bccstop stop` line,
// as a dry run, finds the seed's staging instances. The worker's
// credentials stop one of them; an id the seed does not have is unknown.
func TestComposeSimulatorFromTheHost(t *testing.T) {
	c, err := loadCompose(theRepo, "default")
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	sim := c.Services["fakebcc"]
	cfg, err := loadWorker(t, environment(c.Services["worker"]), nil)
	if err != nil {
		t.Fatalf("%s: service worker: %v", composeFile, err)
	}
	args := slices.Clone([]string(sim.Command))
	for i, a := range args {
		flag := strings.TrimLeft(a, "-")
		switch {
		case flag == "addr" && i+1 < len(args):
			args[i+1] = "127.0.0.1:0"
		case strings.HasPrefix(flag, "addr="):
			args[i] = "--addr=127.0.0.1:0"
		case flag == "seed" && i+1 < len(args):
			args[i+1] = seedSource(sim)
		}
	}
	var env []string
	for k, v := range environment(sim) {
		env = append(env, k+"="+v)
	}
	stdout := start(t, env, args...)
	listening := regexp.MustCompile(`listening on http://(\S+)`)
	if !waitFor(10*time.Second, func() bool { return listening.MatchString(stdout.String()) }) {
		t.Fatalf("`bccstop %s` never said where it listens; stdout:\n%s", strings.Join(args, " "), stdout.String())
	}
	addr := listening.FindStringSubmatch(stdout.String())[1]

	lines, exported, err := readmeComposeLines(theRepo)
	if err != nil {
		t.Fatal(err)
	}
	// A dry run reads the holds from NATS: a server of its own stands in
	// for Compose's (its address on the host is checked by
	// TestREADMEComposeLines too; without authorization it takes any user).
	natsURL := testenv.NATS(t).ClientURL()
	var hostEnv []string
	for k, v := range exported {
		switch k {
		case "BCC_ENDPOINT":
			v = "http://" + addr // its port on the host is checked by TestREADMEComposeLines
		case "NATS_URL":
			v = natsURL
		}
		hostEnv = append(hostEnv, k+"="+v)
	}
	if _, ok := exported["NATS_URL"]; !ok {
		hostEnv = append(hostEnv, "NATS_URL="+natsURL)
	}
	target, ran := "", 0
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, "bccstop stop ")
		if !ok {
			continue
		}
		ran++
		stopArgs := append([]string{"stop"}, strings.Fields(rest)...)
		if !slices.Contains(stopArgs, "--dry-run") {
			stopArgs = append(stopArgs, "--dry-run")
		}
		p := testenv.Start(t, binary, hostEnv, stopArgs...)
		code := p.Wait(20 * time.Second)
		out := p.Stdout.String() + p.Stderr.String()
		m := regexp.MustCompile(`dry run: (\d+) commands would be published`).FindStringSubmatch(out)
		if code != 0 || m == nil || m[1] == "0" {
			t.Errorf("%s: %s, as a dry run with what it exports, against the simulator as %s runs it: exit %d, want 0 and the seed's staging instances:\n%s", readmeFile, line, composeFile, code, out)
			continue
		}
		target = regexp.MustCompile(`\bi-[A-Za-z0-9_-]+`).FindString(out)
	}
	if ran == 0 {
		t.Fatalf("%s: the lines for Compose try no `bccstop stop`", readmeFile)
	}
	if target == "" {
		t.FailNow()
	}

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
	if _, err := client.StopInstance(ctx, bcc.StopRequest{InstanceID: target}); err != nil {
		t.Errorf("%s: the simulator started as `bccstop %s` refuses the worker's stop of %s, a staging instance of its seed: %v (do both services get the same BCE credentials?)", composeFile, strings.Join(sim.Command, " "), target, err)
	}
	var apiErr *bcc.APIError
	if _, err := client.StopInstance(ctx, bcc.StopRequest{InstanceID: "i-notinseed"}); !errors.As(err, &apiErr) || apiErr.Code != "NoSuchObject" {
		t.Errorf("%s: a stop of an id the seed does not have: %v, want 404 NoSuchObject, as from the real API", composeFile, err)
	}
}

// composeNATSOptions loads the configuration the nats service runs, as the
// server loads it, with the service's environment (it reads the passwords
// from there); problem says why it cannot, naming file.
func composeNATSOptions(file string, nats types.ServiceConfig) (opts *server.Options, problem string) {
	conf := flagValue(nats.Command, "c")
	if conf == "" {
		return nil, fmt.Sprintf("%s: service nats runs without -c: it must load the shipped configuration (deploy/nats/nats-server.conf), which has the roles", file)
	}
	host := ""
	for _, v := range nats.Volumes {
		if rel, ok := strings.CutPrefix(conf, strings.TrimSuffix(v.Target, "/")+"/"); ok && v.Type == types.VolumeTypeBind {
			host = filepath.Join(v.Source, rel)
		}
	}
	if host == "" {
		return nil, fmt.Sprintf("%s: service nats loads %s, which no bind mount provides", file, conf)
	}
	if abs, _ := filepath.Abs("../../deploy/nats/nats-server.conf"); host != abs {
		return nil, fmt.Sprintf("%s: service nats loads %s, not the shipped deploy/nats/nats-server.conf", file, host)
	}
	env := environment(nats)
	restore := map[string]*string{}
	for k, v := range env {
		if old, ok := os.LookupEnv(k); ok {
			restore[k] = &old
		} else {
			restore[k] = nil
		}
		os.Setenv(k, v)
	}
	defer func() {
		for k, v := range restore {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}()
	opts, err := server.ProcessConfigFile(host)
	if err != nil {
		return nil, fmt.Sprintf("%s: service nats: its configuration does not load with its environment: %v", file, err)
	}
	return opts, ""
}

// natsProblems checks the nats service of the compose file.
func natsProblems(ps *problems, file string, nats types.ServiceConfig, workerEnv map[string]string) {
	opts, problem := composeNATSOptions(file, nats)
	if problem != "" {
		ps.add("%s", problem)
		return
	}
	if !opts.JetStream {
		ps.add("%s: service nats runs without JetStream; the worker needs it", file)
	}
	if opts.StoreDir == "" || !slices.ContainsFunc(nats.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == opts.StoreDir }) {
		ps.add("%s: service nats keeps JetStream in %q without a volume there; commands would be lost with the container", file, opts.StoreDir)
	}
	if opts.NoAuthUser != "" || len(opts.Users)+len(opts.Nkeys) == 0 {
		ps.add("%s: service nats lets clients in without credentials", file)
	}
	roles := map[string]natsauth.Role{}
	for _, r := range natsauth.Roles(layout.Defaults()) {
		roles[r.Name] = r
	}
	workerUser := ""
	for _, u := range opts.Users {
		if u.Permissions == nil || u.Permissions.Publish == nil {
			ps.add("%s: service nats: user %s has no permissions: it may do anything", file, u.Username)
			continue
		}
		if r, ok := roles[natsauth.Worker]; ok && slices.Equal(u.Permissions.Publish.Allow, r.Publish) && u.Password == workerEnv["NATS_PASSWORD"] {
			workerUser = u.Username
		}
	}
	if workerEnv["NATS_USER"] == "" || workerUser != workerEnv["NATS_USER"] {
		ps.add("%s: service worker connects as NATS_USER=%q, which is not a user of the worker role with its password", file, workerEnv["NATS_USER"])
	}
	if !slices.ContainsFunc(nats.Ports, func(p types.ServicePortConfig) bool { return p.Target == 4222 && p.Published == "4222" }) {
		ps.add("%s: service nats does not publish 4222:4222, so the README's nats pub line cannot reach it", file)
	}
	for _, p := range nats.Ports {
		if p.HostIP != "127.0.0.1" {
			ps.add("%s: service nats publishes %d on every interface of the host; bind it to 127.0.0.1", file, p.Target)
		}
	}
	monitor := strconv.Itoa(opts.HTTPPort)
	if hc := nats.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "127.0.0.1:"+monitor+"/healthz") {
		ps.add("%s: service nats: the health check must query /healthz on the monitoring port (%s)", file, monitor)
	} else if slices.Contains(hc.Test, "wget") && !strings.Contains(nats.Image, "alpine") {
		ps.add("%s: service nats: image %s has no wget for its health check; use an -alpine tag", file, nats.Image)
	}
}
