// Package fakebcc is a strict, in-memory simulator of the BCC API calls
// bccstop makes: stop and describe an instance, and list instances by tag.
// It checks bce-auth-v1 signatures and timestamps like the real service,
// keeps instance state (Running → Stopping → Stopped) and tags, answers with
// BCE's error bodies and x-bce-request-id headers, and can inject latency
// and failures. Baidu's own SDK clients work against it.
package fakebcc

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/messages"
)

// Instance statuses, as the API spells them.
const (
	Running  = "Running"
	Stopping = "Stopping"
	Stopped  = "Stopped"
)

// Options configure a Server. The zero value checks signatures against empty
// credentials (so nothing passes); set Credentials.
type Options struct {
	Credentials bce.Credentials
	// AutoCreate makes any well-formed i-… id a Running instance the first
	// time it is seen (bccstop dev); otherwise unknown ids answer 404.
	AutoCreate bool
	// StopDuration is how long an instance stays Stopping (default 2s).
	StopDuration time.Duration
	// Latency is added to every API answer; Jitter adds up to that much more at random.
	Latency, Jitter time.Duration
	// Now is the clock used for signature checks and state; time.Now when nil.
	Now func() time.Time
}

// Faults are failures injected into stop calls, at random.
type Faults struct {
	// Rate is the probability (0–1) that a stop call fails.
	Rate float64
	// Kinds to choose from at random: 500, 503, 429, or Timeout. Default {500, 503, Timeout}.
	Kinds []int
	// AfterApply is the probability (0–1) that a call failing with a 5xx or
	// a timeout has already stopped the instance before it fails, as a real
	// service may have done when it times out or errors late: the client
	// cannot tell. A 429 never has (throttled calls are not acted on).
	AfterApply float64
	// Hang is how long a Timeout fault holds the request (until the client
	// gives up, at most this; default 60s).
	Hang time.Duration
}

// Timeout is the fault kind that holds a request without answering.
const Timeout = 0

// Stats count what the server saw.
type Stats struct {
	InFlight      int // requests being served right now (latency included)
	PeakInFlight  int // the most served at once so far
	StopCalls     int // authenticated stop calls, failed ones included
	StopsApplied  int // stops that moved an instance from Running to Stopping
	DescribeCalls int
	ListCalls     int // authenticated list calls, rejected ones included
	AuthFailures  int
	Injected      int // injected failures
}

// Server is the simulator; it is an http.Handler and safe for concurrent use.
type Server struct {
	opts     Options
	verifier *bce.Verifier

	mu        sync.Mutex
	instances map[string]*instance
	faults    Faults
	failing   map[string]failure  // instance → injected failure of stop calls
	failDesc  map[string]failure  // instance → injected failure of describe calls
	answers   map[string][]string // instance → request ids of stop answers
	stats     Stats
	perID     map[string]int // authenticated stop calls per instance
	history   []Call
	rng       *mrand.Rand
}

type instance struct {
	status    string
	stoppedAt time.Time
	tags      map[string]string // nil when untagged
}

type apiError struct {
	status  int
	code    string
	message string
}

// failure is an injected failure for one instance; times < 0 means forever.
type failure struct {
	apiError
	times int
}

// New returns a Server with no instances.
func New(opts Options) *Server {
	if opts.StopDuration == 0 {
		opts.StopDuration = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &Server{
		opts:      opts,
		verifier:  bce.NewVerifier(opts.Credentials),
		instances: map[string]*instance{},
		failing:   map[string]failure{},
		failDesc:  map[string]failure{},
		answers:   map[string][]string{},
		perID:     map[string]int{},
		rng:       mrand.New(mrand.NewChaCha8(seed)),
	}
}

// SetStatus creates or updates an instance with status (Running, Stopping,
// Stopped). An existing instance keeps its tags.
func (s *Server) SetStatus(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		in = &instance{}
		s.instances[id] = in
	}
	in.status, in.stoppedAt = status, s.opts.Now()
}

// Seed sets the status of several instances at once.
func (s *Server) Seed(status string, ids ...string) {
	for _, id := range ids {
		s.SetStatus(id, status)
	}
}

// Status returns the current status of an instance, and whether it exists.
func (s *Server) Status(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return "", false
	}
	return s.statusLocked(in), true
}

func (s *Server) statusLocked(in *instance) string {
	if in.status == Stopping && s.opts.Now().Sub(in.stoppedAt) >= s.opts.StopDuration {
		in.status = Stopped
	}
	return in.status
}

// SetFaults replaces the injected random faults.
func (s *Server) SetFaults(f Faults) {
	if len(f.Kinds) == 0 {
		f.Kinds = []int{500, 503, Timeout}
	}
	if f.Hang == 0 {
		f.Hang = 60 * time.Second
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// FailInstance makes every stop call for id answer status with code until
// cleared with ClearFailure.
func (s *Server) FailInstance(id string, status int, code string) {
	s.FailInstanceTimes(id, status, code, -1)
}

// FailInstanceTimes makes the next n stop calls for id answer status with
// code (before touching the instance); n < 0 means until ClearFailure.
func (s *Server) FailInstanceTimes(id string, status int, code string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[id] = failure{apiError{status, code, "injected failure"}, n}
}

// FailDescribe makes every describe call for id answer status with code
// until cleared with ClearFailure.
func (s *Server) FailDescribe(id string, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failDesc[id] = failure{apiError{status, code, "injected failure"}, -1}
}

// StopRequestIDs returns the x-bce-request-id of every answer to a stop
// call for id, in order.
func (s *Server) StopRequestIDs(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.answers[id]...)
}

// ClearFailure ends FailInstance for id.
func (s *Server) ClearFailure(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.failing, id)
	delete(s.failDesc, id)
}

// SetStopDuration changes how long a stopped instance stays Stopping.
func (s *Server) SetStopDuration(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.StopDuration = d
}

// SetLatency changes the latency added to every answer.
func (s *Server) SetLatency(latency, jitter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Latency, s.opts.Jitter = latency, jitter
}

// Stats returns what the server has seen so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// StopCalls returns how many authenticated stop calls named id.
func (s *Server) StopCalls(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perID[id]
}

// StopCallsByInstance returns a copy of the per-instance stop call counts.
func (s *Server) StopCallsByInstance() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.perID))
	for k, v := range s.perID {
		out[k] = v
	}
	return out
}

// ServeHTTP serves PUT /v2/instance/{id}?stop, GET /v2/instance/{id} and
// GET /v2/instance (the list).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	w.Header().Set("X-Bce-Request-Id", reqID)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	s.mu.Lock()
	s.stats.InFlight++
	s.stats.PeakInFlight = max(s.stats.PeakInFlight, s.stats.InFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stats.InFlight--
		s.mu.Unlock()
	}()
	s.sleep(r)

	if err := s.verifier.Verify(r, s.opts.Now()); err != nil {
		s.mu.Lock()
		s.stats.AuthFailures++
		s.mu.Unlock()
		writeError(w, reqID, authError(err))
		return
	}
	if r.URL.Path == "/v2/instance" {
		if r.Method != http.MethodGet {
			writeError(w, reqID, apiError{http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method + " is not supported here"})
			return
		}
		s.list(w, r, reqID)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/v2/instance/")
	if !ok || id == "" || strings.Contains(id, "/") {
		writeError(w, reqID, apiError{http.StatusNotFound, "NoSuchResource", "no such API resource: " + r.URL.Path})
		return
	}
	switch {
	case r.Method == http.MethodPut && r.URL.Query().Has("stop"):
		s.stop(w, r, reqID, id)
	case r.Method == http.MethodGet:
		s.describe(w, reqID, id)
	default:
		writeError(w, reqID, apiError{http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method + " is not supported here"})
	}
}

func (s *Server) sleep(r *http.Request) {
	s.mu.Lock()
	d := s.opts.Latency
	if s.opts.Jitter > 0 {
		d += time.Duration(s.rng.Int64N(int64(s.opts.Jitter)))
	}
	s.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func authError(err error) apiError {
	switch {
	case errors.Is(err, bce.ErrRequestExpired):
		return apiError{http.StatusBadRequest, "RequestExpired", "the request timestamp is outside its validity window"}
	case errors.Is(err, bce.ErrUnknownAccessKey):
		return apiError{http.StatusForbidden, "InvalidAccessKeyId", "the access key id does not exist"}
	case errors.Is(err, bce.ErrMissingAuthorization), errors.Is(err, bce.ErrMalformedAuthorization):
		return apiError{http.StatusUnauthorized, "AccessDenied", "missing or malformed Authorization header"}
	}
	return apiError{http.StatusForbidden, "SignatureDoesNotMatch", "the request signature we calculated does not match the signature you provided"}
}

type stopBody struct {
	ForceStop        *bool `json:"forceStop"`
	StopWithNoCharge *bool `json:"stopWithNoCharge"`
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request, reqID, id string) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var body stopBody
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err != nil || len(raw) > 0 && dec.Decode(&body) != nil {
		writeError(w, reqID, apiError{http.StatusBadRequest, "MalformedJSON", "the request body is not the JSON expected"})
		return
	}

	s.mu.Lock()
	s.stats.StopCalls++
	s.perID[id]++
	s.answers[id] = append(s.answers[id], reqID)
	in, known := s.lookupLocked(id)
	call := Call{Op: "stop", Instance: id}
	if known {
		call.Before = s.statusLocked(in)
	}
	if fail, ok := s.failing[id]; ok {
		call.Status, call.Code = fail.status, fail.code
		s.recordLocked(call)
		s.stats.Injected++
		if fail.times > 0 {
			fail.times--
			s.failing[id] = fail
		}
		if fail.times == 0 {
			delete(s.failing, id)
		}
		s.mu.Unlock()
		writeError(w, reqID, fail.apiError)
		return
	}
	fault, faulty := s.pickFaultLocked()
	// A lost answer: the stop took effect, then the answer failed. Only a
	// 5xx or a timeout can hide that; a 429 means the call was refused.
	if faulty && fault != http.StatusTooManyRequests && s.rng.Float64() < s.faults.AfterApply && known && s.statusLocked(in) == Running {
		s.applyStopLocked(in)
		call.Applied = true
	}
	if faulty {
		hang := s.faults.Hang
		call.Status, call.Code = faultAnswer(fault)
		s.recordLocked(call)
		s.stats.Injected++
		s.mu.Unlock()
		s.fail(w, r, reqID, fault, hang)
		return
	}
	defer s.mu.Unlock()
	switch {
	case !known:
		call.Status, call.Code = http.StatusNotFound, "NoSuchObject"
		s.recordLocked(call)
		writeError(w, reqID, apiError{http.StatusNotFound, "NoSuchObject", "the instance " + id + " does not exist"})
	case s.statusLocked(in) != Running:
		call.Status, call.Code = http.StatusConflict, "Instance.StopInstanceOperationForbidden"
		s.recordLocked(call)
		writeError(w, reqID, apiError{http.StatusConflict, "Instance.StopInstanceOperationForbidden", "Instance not running when shutting down"})
	default:
		s.applyStopLocked(in)
		call.Status, call.Applied = http.StatusOK, true
		s.recordLocked(call)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "{}")
	}
}

func (s *Server) applyStopLocked(in *instance) {
	in.status, in.stoppedAt = Stopping, s.opts.Now()
	s.stats.StopsApplied++
}

func (s *Server) lookupLocked(id string) (*instance, bool) {
	in, ok := s.instances[id]
	if !ok && s.opts.AutoCreate && messages.ValidInstanceID(id) {
		in = &instance{status: Running}
		s.instances[id] = in
		ok = true
	}
	return in, ok
}

func (s *Server) pickFaultLocked() (int, bool) {
	if s.faults.Rate <= 0 || s.rng.Float64() >= s.faults.Rate {
		return 0, false
	}
	return s.faults.Kinds[s.rng.IntN(len(s.faults.Kinds))], true
}

// faultAnswer is the status and code an injected fault answers with (0 for
// a held request: the client gives up first).
func faultAnswer(kind int) (int, string) {
	switch kind {
	case Timeout:
		return 0, ""
	case http.StatusTooManyRequests:
		return kind, "RequestLimitExceeded"
	case http.StatusServiceUnavailable:
		return kind, "ServiceUnavailable"
	}
	return kind, "InternalError"
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, reqID string, kind int, hang time.Duration) {
	switch kind {
	case Timeout:
		t := time.NewTimer(hang)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		writeError(w, reqID, apiError{http.StatusGatewayTimeout, "GatewayTimeout", "injected timeout"})
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		writeError(w, reqID, apiError{kind, "RequestLimitExceeded", "injected throttling"})
	case http.StatusServiceUnavailable:
		writeError(w, reqID, apiError{kind, "ServiceUnavailable", "injected failure"})
	default:
		writeError(w, reqID, apiError{kind, "InternalError", "injected failure"})
	}
}

func (s *Server) describe(w http.ResponseWriter, reqID, id string) {
	s.mu.Lock()
	s.stats.DescribeCalls++
	if fail, ok := s.failDesc[id]; ok {
		s.recordLocked(Call{Op: "describe", Instance: id, Status: fail.status, Code: fail.code})
		s.stats.Injected++
		s.mu.Unlock()
		writeError(w, reqID, fail.apiError)
		return
	}
	in, known := s.lookupLocked(id)
	var view instanceView
	if known {
		view = s.viewLocked(id, in)
		s.recordLocked(Call{Op: "describe", Instance: id, Status: http.StatusOK, Before: view.Status})
	} else {
		s.recordLocked(Call{Op: "describe", Instance: id, Status: http.StatusNotFound, Code: "NoSuchObject"})
	}
	s.mu.Unlock()
	if !known {
		writeError(w, reqID, apiError{http.StatusNotFound, "NoSuchObject", "the instance " + id + " does not exist"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"instance": view})
}

func writeError(w http.ResponseWriter, reqID string, e apiError) {
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"requestId": reqID, "code": e.code, "message": e.message})
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}
