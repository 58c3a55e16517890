package main

import (
	"context"
	"fmt"
	"time"
)

// backlog: 100,000 stored commands, concurrency 64, an instant API. The
// worker's peak RSS must stay bounded however long the backlog; the plain
// loop's is shown beside it.
func backlog(ctx context.Context, b *bench) error {
	const concurrency = 64
	n := b.size(100000, 1000)
	e, err := b.env(ctx, envOptions{})
	if err != nil {
		return err
	}
	defer e.close()

	s, err := alternate(ctx, "backlog", b.pairs(1), func(ctx context.Context, p program, run int) (measures, error) {
		if err := b.reset(ctx, e); err != nil {
			return nil, err
		}
		if err := e.publishCommands(ctx, fmt.Sprintf("backlog-%d-%s", run, p.short), n, false); err != nil {
			return nil, err
		}
		pr, err := b.start(ctx, e, p, startOptions{Concurrency: concurrency})
		if err != nil {
			return nil, err
		}
		defer pr.stop()
		st, err := e.waitResults(ctx, n, 10*time.Minute, pr)
		if err != nil {
			return nil, err
		}
		rss, err := pr.peakRSS()
		if err != nil {
			return nil, err
		}
		return measures{"MiB": rss, "cmd/s": st.rate(n)}, nil
	})
	if err != nil {
		return err
	}
	b.add(
		figure("backlog", fmt.Sprintf("peak RSS, %d stored commands", n), "MiB", s.of(worker, "MiB")).
			vs(plainLoop.name, s.of(plainLoop, "MiB")).want("≤ 64 MiB", maxAtMost(64)),
		figure("backlog", "drained at", "cmd/s", s.of(worker, "cmd/s")).vs(plainLoop.name, s.of(plainLoop, "cmd/s")),
	)
	return nil
}
