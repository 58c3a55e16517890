// Command bench measures bccstop on this machine against the plain program
// a competent engineer would write in an afternoon (bench/plainloop, the
// anchor), and against the fixed targets. A NATS server with
// JetStream and the BCC simulator run in this process; the worker binary
// (built from ./cmd/bccstop) and the plain loop run as subprocesses,
// alternately (A B A B …) on the same server and simulator, with the same
// concurrency. It prints a table and writes the figures as JSON.
//
//	go run ./bench                                   # everything (make bench)
//	go run ./bench -scenario ceiling -runs 1 -scale 0.1 -out ''   # a smoke run
//
// The figures mean something only on a quiet machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// bench is one invocation: the binaries, the settings, and the figures.
type bench struct {
	root      string // temporary folder of this invocation
	keep      bool   // keep it (logs, NATS state) for a look afterwards
	workerBin string
	anchorBin string
	workerEnv []string
	runs      int     // A/B pairs per scenario; 0 for each scenario's own
	scale     float64 // command counts are multiplied by it
	profile   string  // CPU profile of the worker in the first ceiling run

	figures []Figure
}

func (b *bench) add(f ...Figure) { b.figures = append(b.figures, f...) }

// size scales a command count, to no less than least.
func (b *bench) size(n, least int) int { return max(int(float64(n)*b.scale), least) }

// pairs is the number of runs of each program: -runs, or the scenario's own.
func (b *bench) pairs(own int) int {
	if b.runs > 0 {
		return b.runs
	}
	return own
}

// scenario is one measurement; run adds its figures to b.
type scenario struct {
	name  string
	about string
	run   func(ctx context.Context, b *bench) error
}

var scenarios = []scenario{
	{"ceiling", "20,000 stored commands, 0 ms API, concurrency 256: throughput and CPU per command", ceiling},
	{"overhead", "1,000/s offered, 50 ms API: p50 and p99 latency, stored to result stored", overhead},
	{"little", "100 ms API, concurrency 256: throughput against Little's law (2,560/s)", little},
	{"burst", "2,000 commands, the program frozen twice for 2 s mid-burst: time to done, slow-consumer drops", burst},
	{"guards", "20,000 stored and 200/s, 0 ms API, concurrency 256: what the fleet-wide API rate and the blast-radius budget cost per command (CPU, broker round trips)", guards},
	{"wait", "10,000 commands with waitUntilStopped, instances Stopping for 30 s (worker only)", waitStopped},
	{"backlog", "100,000 stored commands: peak RSS", backlog},
	{"signer", "our bce-auth-v1 signer against the official SDK's (go test -bench)", signer},
	{"curve", "throughput against concurrency at 100 ms API (worker only; not run by default)", curve},
}

const defaultScenarios = "ceiling,overhead,little,burst,guards,wait,backlog,signer"

func main() { os.Exit(run()) }

func run() int {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	only := flag.String("scenario", defaultScenarios, "comma-separated scenarios to run, of: "+strings.Join(names, ", "))
	out := flag.String("out", "bench/results.json", "write the figures as JSON to `FILE` ('' for none)")
	beforePath := flag.String("before", "bench/results-before.json", "show the figures of this earlier results `FILE` beside the new ones")
	runs := flag.Int("runs", 0, "runs of each program per scenario (default: each scenario's own, 1 to 5)")
	scale := flag.Float64("scale", 1, "multiply command counts by this `FACTOR` (0.1 for a smoke run)")
	keep := flag.Bool("keep", os.Getenv("BENCH_KEEP") != "", "keep the logs and NATS state in the temporary folder")
	workerBin := flag.String("worker-bin", "", "measure this bccstop `BINARY` instead of building ./cmd/bccstop (to compare versions)")
	workerEnv := flag.String("worker-env", os.Getenv("BENCH_WORKER_ENV"), "extra worker settings, `K=V;K=V` (to try variations)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the worker during the first ceiling run to `FILE`")
	flag.Parse()

	var chosen []scenario
	for _, name := range strings.Split(*only, ",") {
		name = strings.TrimSpace(name)
		i := indexOf(names, name)
		if i < 0 {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q; there are %s\n", name, strings.Join(names, ", "))
			return 2
		}
		chosen = append(chosen, scenarios[i])
	}
	if *scale <= 0 || *runs < 0 {
		fmt.Fprintln(os.Stderr, "bench: -scale must be positive and -runs not negative")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.MkdirTemp("", "bccstop-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "keeping logs and NATS state in", root)
	} else {
		defer os.RemoveAll(root)
	}
	b := &bench{root: root, keep: *keep, runs: *runs, scale: *scale, profile: *profile, workerBin: *workerBin}
	if *workerEnv != "" {
		b.workerEnv = strings.Split(*workerEnv, ";")
	}
	if err := b.buildPrograms(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}

	results := Results{Format: resultsFormat, When: now(), Machine: machine(*workerBin), Failed: map[string]string{},
		Settings: map[string]string{"scenarios": *only, "runs": strconv.Itoa(*runs), "scale": strconv.FormatFloat(*scale, 'g', -1, 64), "worker-env": *workerEnv}}
	for _, s := range chosen {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "== %s: %s\n", s.name, s.about)
		if err := s.run(ctx, b); err != nil {
			fmt.Fprintf(os.Stderr, "%s failed: %v\n", s.name, err)
			if !b.keep {
				fmt.Fprintln(os.Stderr, "  (logs are removed at the end; -keep keeps them)")
			}
			results.Failed[s.name] = err.Error()
		}
	}
	results.Figures = b.figures
	before, note := readBefore(*beforePath)
	results.print(os.Stdout, before, note)
	if *out != "" {
		if err := results.write(*out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if len(results.Failed) > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

func indexOf(names []string, name string) int {
	for i, n := range names {
		if n == name {
			return i
		}
	}
	return -1
}

// buildPrograms builds the plain loop and, unless one was given, the worker.
func (b *bench) buildPrograms(ctx context.Context) error {
	fmt.Fprintln(os.Stderr, "building the worker and the plain loop…")
	var err error
	if b.anchorBin, err = build(ctx, b.root, "./bench/plainloop", "plainloop"); err != nil {
		return err
	}
	if b.workerBin != "" {
		if b.workerBin, err = filepath.Abs(b.workerBin); err != nil {
			return err
		}
		if _, err := os.Stat(b.workerBin); err != nil {
			return fmt.Errorf("-worker-bin: %w", err)
		}
		return nil
	}
	b.workerBin, err = build(ctx, b.root, "./cmd/bccstop", "bccstop")
	return err
}

// env starts a scenario's environment and provisions the worker's streams,
// consumer and bucket (by starting and stopping a worker), which the plain
// loop binds to as well. Close it when the scenario ends.
func (b *bench) env(ctx context.Context, o envOptions) (*env, error) {
	e, err := newEnv(b.root, b.keep, o)
	if err != nil {
		return nil, err
	}
	w, err := b.start(ctx, e, worker, startOptions{Concurrency: 1})
	if err != nil {
		e.close()
		return nil, fmt.Errorf("provision: %w", err)
	}
	w.stop()
	return e, nil
}

// reset empties the environment for the next run (env.reset) and
// provisions again what it deleted, by starting and stopping a worker: the
// plain loop binds to the streams and the ledger bucket, and cannot make
// them. Call it before the run's commands are published.
func (b *bench) reset(ctx context.Context, e *env) error {
	if err := e.reset(ctx); err != nil {
		return err
	}
	w, err := b.start(ctx, e, worker, startOptions{Concurrency: 1})
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	w.stop()
	return nil
}

// measures are one run's figures, by name.
type measures map[string]float64

// samples collects each program's measures over runs.
type samples map[program]map[string][]float64

func (s samples) of(p program, name string) []float64 { return s[p][name] }

// alternate runs measure for each program in turn, A B A B …, pairs times,
// and collects what it returns.
func alternate(ctx context.Context, scenario string, pairs int, measure func(ctx context.Context, p program, run int) (measures, error)) (samples, error) {
	s := samples{}
	for run := range pairs {
		for _, p := range contenders {
			if err := ctx.Err(); err != nil {
				return s, err
			}
			m, err := measure(ctx, p, run)
			if err != nil {
				return s, fmt.Errorf("%s, run %d: %w", p.name, run+1, err)
			}
			if s[p] == nil {
				s[p] = map[string][]float64{}
			}
			var parts []string
			for name, v := range m {
				s[p][name] = append(s[p][name], v)
				parts = append(parts, name+" "+format(v))
			}
			slices.Sort(parts)
			fmt.Fprintf(os.Stderr, "  %s run %d, %s: %s\n", scenario, run+1, p.name, strings.Join(parts, ", "))
		}
	}
	return s, nil
}

// overrides says whether -worker-env sets a variable starting with prefix.
func (b *bench) overrides(prefix string) bool {
	for _, kv := range b.workerEnv {
		if strings.HasPrefix(kv, prefix) {
			return true
		}
	}
	return false
}
