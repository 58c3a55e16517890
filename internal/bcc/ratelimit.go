package bcc

import (
	"net/http"
	"time"

	"golang.org/x/time/rate"
)

// rateLimited is a RoundTripper that waits for a token of a shared limiter
// before each request, so every in-flight command of a worker together stays
// under the API rate it was given.
type rateLimited struct {
	next    http.RoundTripper
	limiter *rate.Limiter
	waited  func(time.Duration)
}

// RateLimited wraps next so requests wait for limiter first. waited, when not
// nil, is told how long each request waited. A nil limiter returns next.
func RateLimited(next http.RoundTripper, limiter *rate.Limiter, waited func(time.Duration)) http.RoundTripper {
	if limiter == nil {
		return next
	}
	return &rateLimited{next: next, limiter: limiter, waited: waited}
}

func (r *rateLimited) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	if err := r.limiter.Wait(req.Context()); err != nil {
		return nil, err
	}
	if r.waited != nil {
		r.waited(time.Since(start))
	}
	return r.next.RoundTrip(req)
}
