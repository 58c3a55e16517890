package main

import (
	"os"
	"runtime/debug"
)

// Garbage collector defaults for the worker, used when GOGC and GOMEMLIMIT
// are not set. The worker's live heap is small and bounded (the in-flight
// commands), while it allocates quickly; with Go's default GOGC=100 the
// collector ran so often that it cost about a quarter of the worker's CPU
// (`make bench`, ceiling scenario). A higher GOGC with a soft memory limit
// trades a few MiB of heap for that CPU, and the limit keeps the worker's
// resident set inside 64 MiB even when 10,000 commands wait for their
// instances to be Stopped and come back in waves (`make bench`, wait
// scenario: 66 MiB with a 48 MiB limit, 57 MiB with 40 MiB). Operators can set GOGC and GOMEMLIMIT as for any Go
// program; in Kubernetes, GOMEMLIMIT near 80% of the container's limit.
const (
	workerGCPercent   = 400
	workerMemoryLimit = 40 << 20
)

func tuneWorkerGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(workerGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(workerMemoryLimit)
	}
}
