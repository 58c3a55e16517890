package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// waitStopped: commands with waitUntilStopped published at once to a
// running worker; the simulator keeps each instance Stopping for 30 s. Only
// the worker runs: the plain loop does not wait for Stopped (a loop that
// held a handler per waiting command would need 10,000 × 30 s / 256 ≈ 20
// minutes), and the targets are absolute.
func waitStopped(ctx context.Context, b *bench) error {
	const (
		concurrency = 256
		stopping    = 30 * time.Second
	)
	n := b.size(10000, 200)
	e, err := b.env(ctx, envOptions{StopDuration: stopping})
	if err != nil {
		return err
	}
	defer e.close()

	var done, rss, describes, calls []float64
	for run := range b.pairs(1) {
		if err := b.reset(ctx, e); err != nil {
			return err
		}
		pr, err := b.start(ctx, e, worker, startOptions{Concurrency: concurrency})
		if err != nil {
			return err
		}
		before := e.sim.Stats()
		begin := time.Now()
		if err := e.publishCommands(ctx, fmt.Sprintf("wait-%d", run), n, true); err != nil {
			pr.stop()
			return err
		}
		st, err := e.waitResults(ctx, n, 5*time.Minute, pr)
		if err != nil {
			pr.stop()
			return err
		}
		peak, err := pr.peakRSS()
		pr.stop()
		if err != nil {
			return err
		}
		after := e.sim.Stats()
		// Every call counts, whatever it asked: a batch describe of a
		// hundred instances is one call, as the API's quota counts it.
		looks := after.DescribeCalls + after.DescribeBatchCalls - before.DescribeCalls - before.DescribeBatchCalls
		all := looks + after.StopCalls - before.StopCalls + after.ListCalls - before.ListCalls
		done, rss = append(done, st.last.Sub(begin).Seconds()), append(rss, peak)
		describes, calls = append(describes, float64(looks)/float64(n)), append(calls, float64(all)/float64(n))
		fmt.Fprintf(os.Stderr, "  wait run %d, worker: all done in %.1f s, peak RSS %.1f MiB, %.2f API calls per instance (%.2f describe calls)\n",
			run+1, done[run], peak, calls[run], describes[run])
	}
	b.add(
		figure("wait", fmt.Sprintf("all done, %d commands waiting for Stopped (30 s)", n), "s", done).want("≤ 45 s", maxAtMost(45)),
		figure("wait", "worker peak RSS", "MiB", rss).bound("limit", 64).want("≤ 64 MiB", maxAtMost(64)),
		figure("wait", "describe calls per instance", "", describes),
		figure("wait", "API calls per instance", "", calls).want("≤ 1.2", maxAtMost(1.2)),
	)
	return nil
}
