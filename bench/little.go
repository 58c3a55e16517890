package main

import (
	"context"
	"fmt"
	"time"
)

// little: a stored backlog, a 100 ms API, concurrency 256. Little's law
// bounds the throughput at concurrency / latency = 2,560/s.
func little(ctx context.Context, b *bench) error {
	const (
		concurrency = 256
		latency     = 100 * time.Millisecond
	)
	bound := float64(concurrency) / latency.Seconds()
	n := b.size(int(bound*4), 3*concurrency)
	e, err := b.env(ctx, envOptions{Latency: latency})
	if err != nil {
		return err
	}
	defer e.close()

	s, err := alternate(ctx, "little", b.pairs(3), func(ctx context.Context, p program, run int) (measures, error) {
		if err := b.reset(ctx, e); err != nil {
			return nil, err
		}
		if err := e.publishCommands(ctx, fmt.Sprintf("little-%d-%s", run, p.short), n, false); err != nil {
			return nil, err
		}
		pr, err := b.start(ctx, e, p, startOptions{Concurrency: concurrency})
		if err != nil {
			return nil, err
		}
		defer pr.stop()
		st, err := e.waitResults(ctx, n, 5*time.Minute, pr)
		if err != nil {
			return nil, err
		}
		return measures{"cmd/s": st.rate(n)}, nil
	})
	if err != nil {
		return err
	}
	metric := fmt.Sprintf("throughput, %d stored, 100 ms API, concurrency %d", n, concurrency)
	b.add(
		figure("little", metric, "cmd/s", s.of(worker, "cmd/s")).vs(plainLoop.name, s.of(plainLoop, "cmd/s")),
		figure("little", "worker against Little's law", "cmd/s", s.of(worker, "cmd/s")).
			bound("bound", bound).want("≥ 0.92 of 2,560/s", ratioAtLeast(0.92)),
		figure("little", "plain loop against Little's law", "cmd/s", s.of(plainLoop, "cmd/s")).bound("bound", bound),
	)
	return nil
}
