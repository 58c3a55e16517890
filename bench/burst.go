package main

import (
	"context"
	"fmt"
	"time"
)

// burst: 2,000 commands published at once to a running program (20 ms API,
// concurrency 64), which is frozen (SIGSTOP) for 2 s as soon as the first
// result is stored, thawed for 200 ms, frozen for 2 s again, and thawed.
// Measured: from the last thaw until every result is stored, and the NATS
// client's slow-consumer events (messages it dropped, which come back only
// after the ack wait). The command count is not scaled: a smaller burst
// ends before the second freeze.
func burst(ctx context.Context, b *bench) error {
	const (
		n           = 2000
		concurrency = 64
		latency     = 20 * time.Millisecond
		frozen      = 2 * time.Second
		between     = 200 * time.Millisecond
	)
	e, err := b.env(ctx, envOptions{Latency: latency})
	if err != nil {
		return err
	}
	defer e.close()

	s, err := alternate(ctx, "burst", b.pairs(3), func(ctx context.Context, p program, run int) (measures, error) {
		if err := b.reset(ctx, e); err != nil {
			return nil, err
		}
		pr, err := b.start(ctx, e, p, startOptions{Concurrency: concurrency})
		if err != nil {
			return nil, err
		}
		defer pr.stop()
		published := make(chan error, 1)
		go func() { published <- e.publishCommands(ctx, fmt.Sprintf("burst-%d-%s", run, p.short), n, false) }()
		if _, err := e.waitResults(ctx, 1, 30*time.Second, pr); err != nil {
			return nil, err
		}
		var resumed time.Time
		for i := range 2 {
			if i > 0 {
				sleep(ctx, between)
			}
			if err := pr.freeze(); err != nil {
				return nil, err
			}
			sleep(ctx, frozen)
			if err := pr.thaw(); err != nil {
				return nil, err
			}
			resumed = time.Now()
		}
		if err := <-published; err != nil {
			return nil, err
		}
		if left, err := e.resultCount(ctx); err != nil || left >= n {
			return nil, fmt.Errorf("the burst was over before the second freeze (%d results; %v): nothing measured", left, err)
		}
		st, err := e.waitResults(ctx, n, 2*time.Minute, pr)
		if err != nil {
			return nil, err
		}
		drops, err := pr.logCount("slow consumer")
		if err != nil {
			return nil, err
		}
		if p == worker {
			// The worker counts them; its log says so too.
			counted, err := pr.metric(ctx, "bccstop_nats_slow_consumers_total")
			if err != nil {
				return nil, err
			}
			drops = max(drops, int(counted))
		}
		return measures{"s after resume": st.last.Sub(resumed).Seconds(), "slow consumer": float64(drops)}, nil
	})
	if err != nil {
		return err
	}
	b.add(
		figure("burst", fmt.Sprintf("done after the last resume, %d commands, frozen 2×2 s", n), "s", s.of(worker, "s after resume")).
			vs(plainLoop.name, s.of(plainLoop, "s after resume")).want("≤ 3 s, every run", maxAtMost(3)),
		figure("burst", "slow-consumer events (messages dropped)", "", s.of(worker, "slow consumer")).
			vs(plainLoop.name, s.of(plainLoop, "slow consumer")).want("0, every run", maxAtMost(0)),
	)
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
