package main

import (
	"context"
	"fmt"
	"time"
)

// curve: the worker's throughput at 100 ms API for several concurrencies,
// each against its Little's-law bound. Not run by default.
func curve(ctx context.Context, b *bench) error {
	const latency = 100 * time.Millisecond
	e, err := b.env(ctx, envOptions{Latency: latency})
	if err != nil {
		return err
	}
	defer e.close()
	for _, c := range []int{8, 16, 32, 64, 128, 256, 512} {
		bound := float64(c) / latency.Seconds()
		n := b.size(int(bound*3), 3*c)
		var rates []float64
		for run := range b.pairs(1) {
			if err := b.reset(ctx, e); err != nil {
				return err
			}
			if err := e.publishCommands(ctx, fmt.Sprintf("curve-%d-%d", c, run), n, false); err != nil {
				return err
			}
			pr, err := b.start(ctx, e, worker, startOptions{Concurrency: c})
			if err != nil {
				return err
			}
			st, err := e.waitResults(ctx, n, 5*time.Minute, pr)
			pr.stop()
			if err != nil {
				return err
			}
			rates = append(rates, st.rate(n))
		}
		b.add(figure("curve", fmt.Sprintf("worker, 100 ms API, concurrency %d", c), "cmd/s", rates).bound("Little's law", bound))
	}
	return nil
}
