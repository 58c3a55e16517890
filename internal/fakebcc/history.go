package fakebcc

import (
	"slices"
	"time"
)

// Call is one authenticated API call the simulator answered (or held until
// the client gave up), or one it refused for its signature, as its history
// records it.
type Call struct {
	// At is when the simulator let the call in, after its signature was
	// checked and before anything else (Options.Now, without ClockSkew).
	At time.Time
	// Op is the operation: OpStop, OpDescribe, OpDescribeBatch or OpList.
	Op string
	// Instance is the instance a stop or describe names ("" for the others).
	Instance string
	// Instances are the ids a batch describe's body names, each once, in
	// the order given (nil when the call was refused before its body was
	// read: for its signature, or for the rate).
	Instances []string
	// Status and Code are what the answer said (0 and "" for a call held
	// until the client gave up).
	Status int
	Code   string
	// Throttled: refused for being past Options.MaxRate.
	Throttled bool
	// Unauthenticated: refused for its signature (Status and Code say how).
	Unauthenticated bool
	// Applied: this call moved the instance from Running to Stopping, even
	// when its answer then failed (an injected fault after the stop took
	// effect, as a real service may do).
	Applied bool
	// Before is the instance status a stop or describe found ("" for an
	// unknown instance, or when the call was refused before it looked).
	Before string
}

// History returns every call so far, in the order they were served.
func (s *Server) History() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.history...)
}

// AppliedStops returns, per instance, how many stop calls moved it from
// Running to Stopping: the stops that took effect.
func (s *Server) AppliedStops() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, c := range s.history {
		if c.Applied {
			out[c.Instance]++
		}
	}
	return out
}

// CallsPerInstance returns, per instance, how many calls in the history
// named it: stops and describes of it, and batch describes whose body
// named it (each page of one counts, as each is a call). Throttled and
// refused calls count too: each was a call.
func (s *Server) CallsPerInstance() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, c := range s.history {
		if c.Instance != "" {
			out[c.Instance]++
		}
		for _, id := range c.Instances {
			out[id]++
		}
	}
	return out
}

// PeakRate returns the most calls the simulator let through (not refused
// for the rate or their signature) within any window of length d, going
// by Call.At: what a test checks Options.MaxRate against.
func (s *Server) PeakRate(d time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at []time.Time
	for _, c := range s.history {
		if !c.Throttled && !c.Unauthenticated {
			at = append(at, c.At)
		}
	}
	slices.SortFunc(at, time.Time.Compare)
	peak, first := 0, 0
	for last := range at {
		for at[last].Sub(at[first]) >= d {
			first++
		}
		peak = max(peak, last-first+1)
	}
	return peak
}

// recordLocked adds c to the history, at now unless c.At is set.
func (s *Server) recordLocked(c Call) {
	if c.At.IsZero() {
		c.At = s.opts.Now()
	}
	s.history = append(s.history, c)
}
