package main

import (
	"fmt"
	"os"
	"time"
)

// concurrencyCurve measures throughput at 100 ms API latency for several
// concurrencies and writes the curve as a PNG and to the figures.
func (b *bench) concurrencyCurve(path string) {
	const latency = 100 * time.Millisecond
	var xs, ys []float64
	for _, c := range []int{8, 16, 32, 64, 128, 256, 512} {
		n := int(float64(c)/latency.Seconds()) * 3
		rate := b.steadyRate(latency, c, n)
		fmt.Fprintf(os.Stderr, "concurrency %d: %.0f cmd/s (bound %d)\n", c, rate, int(float64(c)/latency.Seconds()))
		b.add(Figure{Scenario: "curve", Metric: fmt.Sprintf("100 ms API, concurrency %d", c), Value: rate, Unit: "cmd/s",
			Anchor: fmt.Sprintf("Little's law %d/s", int(float64(c)/latency.Seconds())), Ratio: rate / (float64(c) / latency.Seconds())})
		xs, ys = append(xs, float64(c)), append(ys, rate)
	}
	check(drawCurve(path, xs, ys, latency))
}
