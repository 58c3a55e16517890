package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/natsserver"
)

// Development credentials: the simulator accepts only these, and they
// protect nothing real.
const (
	devAccessKeyID     = "dev-access-key-id"
	devSecretAccessKey = "dev-secret-access-key"
)

const devUsage = `Usage: bccstop dev [flags]

Runs everything in one process, with no setup: an embedded NATS server with
JetStream, the BCC simulator and a worker. It prints the NATS URL and how to
send a command. Ctrl-C (or SIGTERM) stops it.

The simulator: without --seed, any well-formed i-… id is a Running instance
the first time it is seen (what make run gives); with --seed, only the seed's
instances exist, and any other id is unknown (404 NoSuchObject), as it is to
the real API.

Its JetStream state (commands, results, the ledger that remembers every
command identity, schedules, pause, holds) is kept in --store between runs,
and its addresses are the same every run (NATS 127.0.0.1:4222, the simulator
127.0.0.1:8900, the worker 127.0.0.1:8080), so exported NATS_URL and
BCC_ENDPOINT stay good. The simulator's instances live in memory: a new run
starts them afresh. --reset starts clean: it says what it removes, then
removes the JetStream state and --auth's seeds and configuration from the
store, and the NATS contexts --auth wrote for those seeds.

With --auth, NATS runs with the shipped authorization: no connection without
a user, and a NATS context per role (bccstop-dev-publisher, -operator,
-observer, -worker) written where the nats CLI reads them; JetStream state
with authorization on is kept apart from the state without it.

Worker settings come from the same environment variables as "bccstop worker"
(BCCSTOP_LOG_FORMAT, BCCSTOP_CONCURRENCY, …); the NATS URL, BCC endpoint and
credentials are dev's own. Logs default to text.
`

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop dev", devUsage, stdout, stderr)
	natsPort := fs.Int("nats-port", 4222, "NATS client `port` on 127.0.0.1 (0 picks a free one)")
	store := fs.String("store", defaultDevStore(), "`DIR` for JetStream state (kept between runs)")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "`HOST:PORT` of the worker's /healthz, /readyz and /metrics")
	bccAddr := fs.String("bcc-addr", "127.0.0.1:8900", "`HOST:PORT` of the BCC simulator: the same every run, so an exported BCC_ENDPOINT stays good\n(127.0.0.1:0 picks a free one)")
	stopDuration := duration(fs.FlagSet, "stop-duration", 5*time.Second, "how long a stopped instance stays Stopping in the simulator (a `DURATION`)")
	latency := duration(fs.FlagSet, "latency", 0, "latency the simulator adds to every answer (a `DURATION`)")
	seed := fs.String("seed", "", "`FILE` of simulator instances, with states and tags, as bccstop fakebcc --seed reads it (for trying\nbccstop stop --tag); the simulator then knows these instances only")
	reset := fs.Bool("reset", false, "start clean: remove the JetStream state and --auth's seeds from --store (saying what first),\nand the NATS contexts --auth wrote for them")
	auth := fs.Bool("auth", false, "turn NATS authorization on: the shipped roles (publisher, operator, observer, worker), an nkey user each,\nand a NATS context each, bccstop-dev-<role>, for the nats CLI and bccstop (--context)")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "bccstop dev: "+format+"\n", a...)
		return exitUsage
	}
	// The contexts of --auth name seeds in the store: a relative path
	// would only work from this folder.
	if abs, err := filepath.Abs(*store); err == nil {
		*store = abs
	}

	if *natsPort != 0 {
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*natsPort))); err != nil {
			return fail("NATS port %d is in use (another NATS server or bccstop dev?); pick another with --nats-port, or 0 for a free one", *natsPort)
		} else {
			ln.Close()
		}
	}
	// The BCC simulator, its address taken and its seed read before
	// anything is started or reset. A seed is the whole account, as the
	// real API knows it: made-up ids are unknown, so a typo fails instead
	// of stopping an instance invented for it.
	bccLn, err := net.Listen("tcp", *bccAddr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fail("the BCC simulator's address %s is in use (another bccstop dev, bccstop fakebcc or docker compose?); pick another with --bcc-addr, or 127.0.0.1:0 for a free one", *bccAddr)
	} else if err != nil {
		return fail("--bcc-addr: %v", err)
	}
	defer bccLn.Close()
	sim := fakebcc.New(fakebcc.Options{
		Credentials: bce.Credentials{AccessKeyID: devAccessKeyID, SecretAccessKey: devSecretAccessKey},
		AutoCreate:  *seed == "", StopDuration: *stopDuration, Latency: *latency,
	})
	simulated := "any i-… id is a Running instance the first time"
	if *seed != "" {
		n, err := sim.LoadSeedFile(*seed)
		if err != nil {
			return fail("--seed: %v", err)
		}
		simulated = fmt.Sprintf("%s from %s; any other id is unknown: 404 NoSuchObject", plural(n, "instance", "instances"), *seed)
	}

	// NATS with JetStream, its state in the store.
	if err := os.MkdirAll(*store, 0o755); err != nil {
		return fail("--store: %v", err)
	}
	// Two servers on one store would corrupt it: a second dev (on other
	// ports) needs a store of its own.
	unlock, err := lockStore(*store)
	if err != nil {
		return fail("--store %s is in use by another bccstop dev; give this one its own, for example --store $(mktemp -d)", *store)
	}
	defer unlock()
	if *reset {
		if err := resetDevStore(*store, stdout); err != nil {
			return fail("--reset: %v", err)
		}
	}
	var roles *devAuth
	serverOpts := natsserver.Options{Port: *natsPort, StoreDir: *store}
	if *auth {
		if roles, err = setUpDevAuth(*store); err != nil {
			return fail("--auth: %v", err)
		}
		serverOpts.ConfigFile = roles.conf
	}
	ns, err := natsserver.Start(serverOpts)
	if err != nil {
		return fail("%v", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	bccSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = bccSrv.Serve(bccLn) }()
	defer bccSrv.Close()

	// The worker, on the environment's settings with dev's own plumbing.
	for name, value := range map[string]string{
		"BCE_ACCESS_KEY_ID": devAccessKeyID, "BCE_SECRET_ACCESS_KEY": devSecretAccessKey,
		"BCCSTOP_LOG_FORMAT": "text", "BCCSTOP_WORKER_ID": "dev",
	} {
		if name == "BCCSTOP_LOG_FORMAT" && os.Getenv(name) != "" {
			continue
		}
		os.Setenv(name, value)
	}
	os.Unsetenv("BCE_ACCESS_KEY_ID_FILE")
	os.Unsetenv("BCE_SECRET_ACCESS_KEY_FILE")
	os.Unsetenv("BCE_SESSION_TOKEN")
	os.Unsetenv("BCE_SESSION_TOKEN_FILE")
	cfg, err := config.LoadWorker()
	if err != nil {
		return fail("%v", err)
	}
	natsURL := ns.ClientURL()
	cfg.NATS = config.NATS{URL: natsURL}
	if roles != nil {
		cfg.NATS.NKey = roles.seeds["worker"]
		if err := roles.writeContexts(natsURL); err != nil {
			return fail("--auth: the NATS contexts: %v", err)
		}
	}
	cfg.Endpoint, cfg.Endpoints = "http://"+bccLn.Addr().String(), nil
	cfg.HTTPAddr = *httpAddr
	log := newLogger(cfg, stderr)
	a, err := startApp(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "bccstop dev: %v\n", err)
		return startExit(err)
	}

	fmt.Fprintf(stdout, `
bccstop dev is running, all in this process:
  NATS with JetStream  %[1]s   (state in %[2]s)
  BCC simulator        http://%[3]s   (%[5]s)
  worker               http://%[4]s/readyz   /metrics

`, natsURL, *store, bccLn.Addr(), a.ops.Addr(), simulated)
	if roles != nil {
		roles.print(stdout)
		fmt.Fprintln(stdout)
	} else {
		ex := bannerExamples(sim, *seed != "")
		fmt.Fprintf(stdout, `Send a command:
  nats --server %[1]s pub bcc.instance.stop '{"instanceId":"%[5]s"}'
Watch the results:
  nats --server %[1]s sub 'bcc.instance.stop.result.>'
Or stop several and wait for their results (from the repository: go run ./cmd/bccstop stop …):
  export NATS_URL=%[1]s
  bccstop stop %[6]s
By tag (instances from --seed), the simulator's credentials:
  BCE_ACCESS_KEY_ID=%[2]s BCE_SECRET_ACCESS_KEY=%[3]s BCC_ENDPOINT=http://%[4]s \
    bccstop stop --tag %[7]s --dry-run
Hold every worker, see where the fleet stands:
  bccstop pause --reason "trying it out"; bccstop status; bccstop resume

`, natsURL, devAccessKeyID, devSecretAccessKey, bccLn.Addr(), ex.one, strings.Join(ex.several, " "), ex.tag)
	}
	fmt.Fprint(stdout, "Ctrl-C stops everything.\n\n")

	if err := a.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("worker stopped", "error", err)
		return exitFailure
	}
	return exitOK
}

// devExamples are the instances and the tag dev's banner shows.
type devExamples struct {
	one     string   // for the nats pub
	several []string // for bccstop stop, others than one
	tag     string   // K=V, for the dry run by tag
}

// bannerExamples picks the banner's instances: the built-in ones when the
// simulator makes up any id (no seed) or the seed has them Running
// (deploy/compose/seed.txt does), else Running instances of the seed, each
// used once, and a tag of one they leave Running, so that every example
// runs as shown, in order.
func bannerExamples(sim *fakebcc.Server, seeded bool) devExamples {
	ex := devExamples{one: "i-YufwpQAe", several: []string{"i-7fK2mQ9x", "i-Gh4Tz9Lc"}, tag: "env=staging"}
	if !seeded {
		return ex
	}
	running := func(id string) bool { st, ok := sim.Status(id); return ok && st == fakebcc.Running }
	var ids []string
	hasTag := false
	for _, id := range sim.Instances() {
		if running(id) {
			ids = append(ids, id)
			if t, _ := sim.Tags(id); t[strings.Split(ex.tag, "=")[0]] == strings.Split(ex.tag, "=")[1] {
				hasTag = true
			}
		}
	}
	if len(ids) == 0 || (hasTag && running(ex.one) && running(ex.several[0]) && running(ex.several[1])) {
		return ex
	}
	// The last one is left for the dry run by tag, when there are others.
	tagged, rest := ids[len(ids)-1], ids
	if len(ids) > 1 {
		rest = ids[:len(ids)-1]
	}
	ex.one, ex.several = rest[0], rest[1:min(3, len(rest))]
	if len(ex.several) == 0 {
		ex.several = []string{rest[0]} // too few instances: the stop repeats one
	}
	if t, _ := sim.Tags(tagged); len(t) > 0 {
		k := slices.Sorted(maps.Keys(t))[0]
		ex.tag = k + "=" + t[k]
	}
	return ex
}

// lockStore takes an exclusive lock on dir for as long as dev runs.
func lockStore(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "bccstop-dev.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// defaultDevStore keeps dev's JetStream state in the user's cache directory.
func defaultDevStore() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "bccstop", "dev")
}
