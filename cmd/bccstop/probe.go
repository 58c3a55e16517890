package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runProbe checks an HTTP endpoint, for container health checks in images
// that have no shell, curl or wget: exit 0 when it answers 200.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop probe", `Usage: bccstop probe [--timeout 3s] URL

Exits 0 when URL answers HTTP 200, 1 otherwise. For health checks in the
container image, which has no shell: bccstop probe http://127.0.0.1:8080/readyz
`, stdout, stderr)
	timeout := duration(fs.FlagSet, "timeout", 3*time.Second, "wait at most `DURATION` for the answer")
	urls, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	if len(urls) != 1 {
		fs.usageError("want exactly one URL, like http://127.0.0.1:8080/readyz")
		return exitUsage
	}
	url := urls[0]
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "bccstop probe: %v\n", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "bccstop probe: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "bccstop probe: %s answered %d: %s\n", url, resp.StatusCode, body)
		return exitFailure
	}
	return exitOK
}
