package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// ceiling: a stored backlog, an instant API, both programs at concurrency
// 256. Throughput is from the first result stored to the last; CPU per
// command is the program's own (user and system, /proc) from the moment it
// consumes until the last result is stored.
func ceiling(ctx context.Context, b *bench) error {
	const concurrency = 256
	n := b.size(20000, 100)
	e, err := b.env(ctx, envOptions{})
	if err != nil {
		return err
	}
	defer e.close()

	s, err := alternate(ctx, "ceiling", b.pairs(5), func(ctx context.Context, p program, run int) (measures, error) {
		if err := b.reset(ctx, e); err != nil {
			return nil, err
		}
		if err := e.publishCommands(ctx, fmt.Sprintf("ceil-%d-%s", run, p.short), n, false); err != nil {
			return nil, err
		}
		profile := p == worker && run == 0 && b.profile != ""
		pr, err := b.start(ctx, e, p, startOptions{Concurrency: concurrency, PProf: profile})
		if err != nil {
			return nil, err
		}
		defer pr.stop()
		cpu0, err := pr.cpu()
		if err != nil {
			return nil, err
		}
		env0 := selfCPU()
		spans0 := e.spans.bytes.Load()
		profiled := make(chan error, 1)
		if profile {
			go func() { profiled <- pr.cpuProfile(ctx, b.profile, 3*time.Second) }()
		}
		st, err := e.waitResults(ctx, n, 5*time.Minute, pr)
		if err != nil {
			return nil, err
		}
		if profile {
			// The profile covers the first 3 s; the worker stops after it.
			defer func() {
				if err := <-profiled; err != nil {
					fmt.Fprintln(os.Stderr, "  cpu profile:", err)
				}
			}()
		}
		cpu1, err := pr.cpu()
		if err != nil {
			return nil, err
		}
		env1 := selfCPU()
		m := measures{"cmd/s": st.rate(n), "µs CPU": perCommand(cpu1-cpu0, n), "µs env CPU": perCommand(env1-env0, n)}
		if p == worker {
			// The batch exporter sends every 512 spans, so most have
			// left by the last result; none at all means tracing was off,
			// which only -worker-env may ask for.
			exported := e.spans.bytes.Load() - spans0
			if exported == 0 && !b.overrides("OTEL_") {
				return nil, errors.New("the worker exported no spans: tracing is not on")
			}
			m["span B/cmd"] = float64(exported) / float64(n)
		}
		return m, nil
	})
	if err != nil {
		return err
	}
	b.add(
		figure("ceiling", fmt.Sprintf("throughput, %d stored, 0 ms API, concurrency %d", n, concurrency), "cmd/s", s.of(worker, "cmd/s")).
			vs(plainLoop.name, s.of(plainLoop, "cmd/s")).want("≥ 1.0× plain loop (stretch 1.3×)", ratioAtLeast(1.0)),
		figure("ceiling", "CPU per command, the program's own", "µs", s.of(worker, "µs CPU")).
			vs(plainLoop.name, s.of(plainLoop, "µs CPU")).want("≤ 80 µs", atMost(80)),
		figure("ceiling", "CPU per command, NATS server + simulator + bench", "µs", s.of(worker, "µs env CPU")).
			vs(plainLoop.name, s.of(plainLoop, "µs env CPU")),
		figure("ceiling", "spans exported (OTLP/HTTP), bytes per command", "B", s.of(worker, "span B/cmd")),
	)
	return nil
}

// perCommand is d in microseconds per command, for n commands.
func perCommand(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }
