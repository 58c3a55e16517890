package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

var benchLine = regexp.MustCompile(`^(BenchmarkSign\w+)-\d+\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op`)

// signer: internal/bce's benchmarks of our signer and the official SDK's,
// three counts each.
func signer(ctx context.Context, b *bench) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkSign", "-benchmem", "-count", strconv.Itoa(b.pairs(3)), "./internal/bce")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go test -bench: %w", err)
	}
	ns, allocs := map[string][]float64{}, map[string][]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := benchLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			a, _ := strconv.ParseFloat(m[4], 64)
			ns[m[1]] = append(ns[m[1]], v)
			allocs[m[1]] = append(allocs[m[1]], a)
		}
	}
	const ours, sdk = "BenchmarkSignOurs", "BenchmarkSignOfficialSDK"
	if len(ns[ours]) == 0 || len(ns[sdk]) == 0 {
		return fmt.Errorf("signer benchmark output not understood:\n%s", out)
	}
	b.add(
		figure("signer", "time per signature", "ns", ns[ours]).vs("official SDK", ns[sdk]).
			want("≤ 0.5× the SDK's (≥ 2× faster)", ratioAtMost(0.5)),
		figure("signer", "allocations per signature", "allocs", allocs[ours]).vs("official SDK", allocs[sdk]).
			want("≤ 8", maxAtMost(8)),
	)
	return nil
}
