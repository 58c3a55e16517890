package fakebcc

import "time"

// Call is one authenticated API call the simulator answered (or held until
// the client gave up), as its history records it.
type Call struct {
	At       time.Time
	Op       string // "stop" or "describe"
	Instance string
	// Status and Code are what the answer said (0 and "" for a call held
	// until the client gave up).
	Status int
	Code   string
	// Applied: this call moved the instance from Running to Stopping, even
	// when its answer then failed (an injected fault after the stop took
	// effect, as a real service may do).
	Applied bool
	// Before is the instance status the call found ("" for an unknown instance).
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

func (s *Server) recordLocked(c Call) {
	c.At = s.opts.Now()
	s.history = append(s.history, c)
}
