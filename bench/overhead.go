package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// overhead: commands offered at a steady 1,000/s to a running program, a
// 50 ms API. Latency is from a command being stored (its publish
// acknowledged) to its result being stored (the results stream's own
// timestamp), so the bench's own scheduling stays out of it.
func overhead(ctx context.Context, b *bench) error {
	const (
		concurrency = 256
		offered     = 1000
		latency     = 50 * time.Millisecond
	)
	n := b.size(10*offered, 500)
	e, err := b.env(ctx, envOptions{Latency: latency})
	if err != nil {
		return err
	}
	defer e.close()

	s, err := alternate(ctx, "overhead", b.pairs(3), func(ctx context.Context, p program, run int) (measures, error) {
		if err := b.reset(ctx, e); err != nil {
			return nil, err
		}
		pr, err := b.start(ctx, e, p, startOptions{Concurrency: concurrency})
		if err != nil {
			return nil, err
		}
		defer pr.stop()
		begin := time.Now()
		storedAt, err := e.offer(ctx, fmt.Sprintf("ovh-%d-%s", run, p.short), n, offered)
		if err != nil {
			return nil, err
		}
		st, err := e.waitResults(ctx, n, time.Minute, pr)
		if err != nil {
			return nil, err
		}
		resultAt, err := e.resultTimes(ctx, n)
		if err != nil {
			return nil, err
		}
		lat := make([]float64, 0, n)
		for i := range n {
			if resultAt[i].IsZero() {
				return nil, fmt.Errorf("no result for command %d", i)
			}
			lat = append(lat, float64(resultAt[i].Sub(storedAt[i]))/float64(time.Millisecond))
		}
		slices.Sort(lat)
		return measures{"p50 ms": lat[n/2], "p99 ms": lat[n*99/100], "cmd/s": float64(n) / st.last.Sub(begin).Seconds()}, nil
	})
	if err != nil {
		return err
	}
	b.add(
		figure("overhead", fmt.Sprintf("latency p50, %d offered at %d/s, 50 ms API", n, offered), "ms", s.of(worker, "p50 ms")).
			vs(plainLoop.name, s.of(plainLoop, "p50 ms")).want("≤ 1.2× plain loop", ratioAtMost(1.2)),
		figure("overhead", fmt.Sprintf("latency p99, %d offered at %d/s, 50 ms API", n, offered), "ms", s.of(worker, "p99 ms")).
			vs(plainLoop.name, s.of(plainLoop, "p99 ms")).want("≤ 1.2× plain loop", ratioAtMost(1.2)),
		figure("overhead", "completed", "cmd/s", s.of(worker, "cmd/s")).vs(plainLoop.name, s.of(plainLoop, "cmd/s")),
	)
	return nil
}

// offer publishes n commands at perSecond, each at its own slot, and returns
// when each was stored (its acknowledgement arrived). One goroutine reads
// the acknowledgements in order, as JetStream sends them.
func (e *env) offer(ctx context.Context, prefix string, n, perSecond int) ([]time.Time, error) {
	storedAt := make([]time.Time, n)
	futures := make(chan jetstream.PubAckFuture, n)
	acked := make(chan error, 1)
	go func() {
		i := 0
		for f := range futures {
			if err := await(ctx, f); err != nil {
				acked <- err
				return
			}
			storedAt[i] = time.Now()
			i++
		}
		acked <- nil
	}()
	begin := time.Now()
	interval := time.Second / time.Duration(perSecond)
	var err error
	for i := 0; i < n && err == nil; i++ {
		if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				err = ctx.Err()
				continue
			}
		}
		var f jetstream.PubAckFuture
		if f, err = e.js.PublishAsync(messages.CommandSubject, commandJSON(prefix, i, false)); err == nil {
			futures <- f
		}
	}
	close(futures)
	if ackErr := <-acked; ackErr != nil {
		return nil, ackErr
	}
	if err != nil {
		return nil, fmt.Errorf("publish command: %w", err)
	}
	return storedAt, nil
}
