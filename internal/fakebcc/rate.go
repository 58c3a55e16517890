package fakebcc

import (
	"fmt"
	"net/http"
	"time"
)

// rateWindow is the span over which Options.MaxRate counts calls.
const rateWindow = time.Second

// SetMaxRate changes Options.MaxRate and Options.ThrottleStatus; calls
// answered so far keep counting in the window.
func (s *Server) SetMaxRate(maxRate, throttleStatus int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.MaxRate, s.opts.ThrottleStatus = maxRate, normalThrottleStatus(throttleStatus)
}

func normalThrottleStatus(status int) int {
	if status == http.StatusServiceUnavailable {
		return status
	}
	return http.StatusTooManyRequests
}

// overRateLocked reports whether a call at now is past Options.MaxRate:
// MaxRate calls have already been let through in the second before it
// (a sliding window, (now-1s, now]). If not, the call is counted. When it
// is, the answer says so and retryAfter is how long until the oldest
// call in the window leaves it, rounded up to whole seconds (the unit of
// Retry-After).
func (s *Server) overRateLocked(now time.Time) (e apiError, retryAfter int, over bool) {
	if s.opts.MaxRate <= 0 {
		return apiError{}, 0, false
	}
	cut := now.Add(-rateWindow)
	drop := 0
	for drop < len(s.admitted) && !s.admitted[drop].After(cut) {
		drop++
	}
	s.admitted = s.admitted[drop:]
	if len(s.admitted) < s.opts.MaxRate {
		s.admitted = append(s.admitted, now)
		return apiError{}, 0, false
	}
	wait := s.admitted[0].Add(rateWindow).Sub(now)
	retryAfter = max(1, int((wait+time.Second-1)/time.Second))
	msg := fmt.Sprintf("request rate over %d calls per second; retry after %d s", s.opts.MaxRate, retryAfter)
	if s.opts.ThrottleStatus == http.StatusServiceUnavailable {
		return apiError{http.StatusServiceUnavailable, "ServiceUnavailable", msg}, retryAfter, true
	}
	return apiError{http.StatusTooManyRequests, "RequestLimitExceeded", msg}, retryAfter, true
}
