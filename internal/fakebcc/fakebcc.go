// Package fakebcc is a strict, in-memory simulator of the BCC API calls
// bccstop makes: stop and describe an instance, describe several at once,
// and list instances by tag. It checks bce-auth-v1 signatures and
// timestamps like the real service, keeps instance state (Running →
// Stopping → Stopped), tags and attributes, answers with BCE's error bodies
// ({"requestId","code","message"}) and x-bce-request-id headers, and can
// throttle, run its clock off, and inject latency and failures. Baidu's own
// SDK clients work against it.
//
// The operations:
//
//	PUT  /v2/instance/{id}?stop               stop            body {"forceStop":…,"stopWithNoCharge":…}
//	GET  /v2/instance/{id}                    describe        → {"instance":{…}}
//	POST /v2/instance/listByInstanceId        describeBatch   body {"instanceIds":[…]}, ?marker=…&maxKeys=…
//	GET  /v2/instance?tags=…&marker=…&maxKeys=… list
//
// A call is answered with the first of these that applies:
//
//   - no operation at that path: 404 NoSuchResource, or 405 MethodNotAllowed
//     (after the signature is checked);
//   - no or a malformed Authorization header: 401 AccessDenied; an unknown
//     access key id: 403 InvalidAccessKeyId; a signature timestamp outside
//     BCE's window of the simulator's clock, [now − the signature's
//     expiration (1800 s from Baidu's SDKs), now + 15 min], where
//     Options.ClockSkew moves that clock: 400 RequestExpired; any other
//     mismatch (a wrong secret): 403 SignatureDoesNotMatch;
//   - past Options.MaxRate: 429 RequestLimitExceeded (or 503
//     ServiceUnavailable) with Retry-After, and nothing looked at;
//   - a stop body that is not JSON: 400 MalformedJSON; JSON that is not an
//     object, a field of the wrong type, or an unknown field: 400
//     InappropriateJSON. (Baidu documents that its services ignore unknown
//     fields; the simulator refuses them, so that a client learns here that
//     it sends what it did not mean to.) A batch describe's body likewise,
//     and one naming no id or more than MaxDescribeIDs: 400 InappropriateJSON;
//   - injected failures (FailInstance, FailDescribe, SetFaults);
//   - an unknown instance: 404 NoSuchObject (stop and describe; a batch
//     describe leaves it out of its answer);
//   - an instance with Attributes.Denied: 403 AccessDenied (stop, describe,
//     and a batch describe naming it, for the whole call);
//   - a stop asking stopWithNoCharge of a Prepaid instance: 403
//     Bcc.PrePayCannotStopWithNoCharge; with LocalDisk: 403
//     Bcc.Rocv1CannotStopWithNoCharge; NoChargeUnsupported: 403
//     Bcc.InstanceTypeNotSupportException (whatever the instance's state);
//   - a stop of an instance that is not Running: 409
//     Instance.StopInstanceOperationForbidden;
//   - otherwise 200, and a stopped instance is Stopping for
//     Options.StopDuration, then Stopped.
//
// Every call to an operation, refused or not, is counted in Stats and kept
// in History with its answer.
//
// Instances are made with SetStatus, SetTags and SetAttributes, or from a
// seed file (LoadSeedFile), JSON or lines, in which attributes are
// "prepaid":true … in JSON and attr:prepaid … on a line:
//
//	{"i-abc":"Running","i-def":{"status":"Stopped","tags":{"env":"staging"},"prepaid":true,"denied":true}}
//
//	i-abc Running
//	i-def Stopped env=staging attr:prepaid attr:denied
package fakebcc

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/messages"
)

// Instance statuses, as the API spells them (the official SDK's list). Only
// a stop moves an instance from one to another: Running → Stopping, then
// Stopped after Options.StopDuration.
const (
	Running            = "Running"
	Starting           = "Starting"
	Stopping           = "Stopping"
	Stopped            = "Stopped"
	Deleted            = "Deleted"
	Scaling            = "Scaling"
	Expired            = "Expired"
	Error              = "Error"
	SnapshotProcessing = "SnapshotProcessing"
	ImageProcessing    = "ImageProcessing"
	ChangeVpc          = "ChangeVpc"
	Recycled           = "Recycled"
)

// statusNames lists the statuses for messages.
const statusNames = "Running, Starting, Stopping, Stopped, Deleted, Scaling, Expired, Error, SnapshotProcessing, ImageProcessing, ChangeVpc or Recycled"

// ValidStatus reports whether status is one the API reports.
func ValidStatus(status string) bool {
	switch status {
	case Running, Starting, Stopping, Stopped, Deleted, Scaling, Expired, Error,
		SnapshotProcessing, ImageProcessing, ChangeVpc, Recycled:
		return true
	}
	return false
}

// The operations, as Call.Op names them.
const (
	OpStop          = "stop"
	OpDescribe      = "describe"
	OpDescribeBatch = "describeBatch"
	OpList          = "list"
)

// Options configure a Server. The zero value checks signatures against empty
// credentials (so nothing passes); set Credentials.
type Options struct {
	Credentials bce.Credentials
	// AutoCreate makes any well-formed i-… id a Running instance the first
	// time it is seen (bccstop dev without --seed); otherwise unknown ids
	// answer 404, as the real API does.
	AutoCreate bool
	// StopDuration is how long an instance stays Stopping (default 2s).
	StopDuration time.Duration
	// Latency is added to every API answer; Jitter adds up to that much more at random.
	Latency, Jitter time.Duration
	// Now is the clock used for signature checks, state and the rate;
	// time.Now when nil.
	Now func() time.Time
	// ClockSkew moves the clock signatures are checked against (only that
	// one): a client then looks this far behind (ClockSkew > 0) or ahead.
	// BCE's window is kept: a signature is good for its expiration (1800 s
	// from Baidu's SDKs and bccstop) and may lie up to 15 minutes in the
	// future, so 1h or -20m make every client's calls RequestExpired.
	ClockSkew time.Duration
	// MaxRate, above zero, is how many calls the simulator lets through in
	// any one second (a sliding window, over every operation and client;
	// calls refused for their signature do not count). A call past it is
	// refused before anything else is looked at, with ThrottleStatus and
	// Retry-After, and changes nothing.
	MaxRate int
	// ThrottleStatus answers a call past MaxRate: 429 RequestLimitExceeded
	// (the default, for any value but 503) or 503 ServiceUnavailable.
	ThrottleStatus int
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
	StopCalls     int // authenticated stop calls, refused and throttled ones included
	StopsApplied  int // stops that moved an instance from Running to Stopping
	DescribeCalls int // authenticated describe calls of one instance, likewise
	// DescribeBatchCalls counts authenticated batch describe calls, one
	// per page asked for, refused and throttled ones included.
	DescribeBatchCalls int
	ListCalls          int // authenticated list calls, likewise
	AuthFailures       int // calls refused for their signature (not counted above)
	Throttled          int // calls refused for being past Options.MaxRate
	Injected           int // injected failures
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
	admitted  []time.Time // calls let through in the last rateWindow, oldest first
	rng       *mrand.Rand
}

type instance struct {
	status    string
	stoppedAt time.Time
	tags      map[string]string // nil when untagged
	attrs     Attributes
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
	opts.ThrottleStatus = normalThrottleStatus(opts.ThrottleStatus)
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

// SetStatus creates or updates an instance with status (one of the
// constants above). An existing instance keeps its tags and attributes.
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

// Instances returns the ids of the instances the simulator knows, sorted.
func (s *Server) Instances() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.instances))
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

// SetClockSkew changes Options.ClockSkew.
func (s *Server) SetClockSkew(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.ClockSkew = d
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

// ServeHTTP serves the operations in the package documentation.
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

	op, id, routeErr := route(r)
	s.mu.Lock()
	skew := s.opts.ClockSkew
	s.mu.Unlock()
	if err := s.verifier.Verify(r, s.opts.Now().Add(skew)); err != nil {
		e := authError(err)
		s.mu.Lock()
		s.stats.AuthFailures++
		if op != "" {
			s.recordLocked(Call{Op: op, Instance: id, Status: e.status, Code: e.code, Unauthenticated: true})
		}
		s.mu.Unlock()
		writeError(w, reqID, e)
		return
	}
	if op == "" {
		writeError(w, reqID, routeErr)
		return
	}
	// Every call is recorded at the time it was let in, so that the
	// history shows the rate as the simulator counted it.
	s.mu.Lock()
	at := s.opts.Now()
	s.countLocked(op, id, reqID)
	if e, retryAfter, over := s.overRateLocked(at); over {
		s.stats.Throttled++
		s.recordLocked(Call{At: at, Op: op, Instance: id, Status: e.status, Code: e.code, Throttled: true})
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		writeError(w, reqID, e)
		return
	}
	s.mu.Unlock()
	switch op {
	case OpStop:
		s.stop(w, r, reqID, id, at)
	case OpDescribe:
		s.describe(w, reqID, id, at)
	case OpDescribeBatch:
		s.describeBatch(w, r, reqID, at)
	case OpList:
		s.list(w, r, reqID, at)
	}
}

// route names the operation r asks for and the instance in its path, or
// says why it names none (op "").
func route(r *http.Request) (op, id string, _ apiError) {
	notAllowed := apiError{http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method + " is not supported here"}
	switch r.URL.Path {
	case "/v2/instance":
		if r.Method != http.MethodGet {
			return "", "", notAllowed
		}
		return OpList, "", apiError{}
	case "/v2/instance/listByInstanceId":
		if r.Method != http.MethodPost {
			return "", "", notAllowed
		}
		return OpDescribeBatch, "", apiError{}
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/v2/instance/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", "", apiError{http.StatusNotFound, "NoSuchResource", "no such API resource: " + strconv.Quote(r.URL.Path)}
	}
	switch {
	case r.Method == http.MethodPut && r.URL.Query().Has("stop"):
		return OpStop, id, apiError{}
	case r.Method == http.MethodGet:
		return OpDescribe, id, apiError{}
	}
	return "", "", notAllowed
}

// countLocked counts an authenticated call in Stats.
func (s *Server) countLocked(op, id, reqID string) {
	switch op {
	case OpStop:
		s.stats.StopCalls++
		s.perID[id]++
		s.answers[id] = append(s.answers[id], reqID)
	case OpDescribe:
		s.stats.DescribeCalls++
	case OpDescribeBatch:
		s.stats.DescribeBatchCalls++
	case OpList:
		s.stats.ListCalls++
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

// authError is the answer to a request whose signature Verify refused.
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

// maxBodyBytes caps how much of a request body is read.
const maxBodyBytes = 1 << 20

// readJSONBody reads a request body that must be one JSON object, into v
// (whose fields are all it may hold), and says why it is refused:
// MalformedJSON when it is not JSON, InappropriateJSON when it is JSON of
// another shape. An empty body leaves v as it is.
func readJSONBody(r *http.Request, v any) *apiError {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	switch {
	case err != nil:
		return &apiError{http.StatusBadRequest, "MalformedJSON", "the request body could not be read"}
	case len(raw) > maxBodyBytes:
		return &apiError{http.StatusBadRequest, "MalformedJSON", fmt.Sprintf("the request body is larger than %d bytes", maxBodyBytes)}
	case len(strings.TrimSpace(string(raw))) == 0:
		return nil
	case !json.Valid(raw):
		return &apiError{http.StatusBadRequest, "MalformedJSON", "The JSON you provided was not well-formed."}
	}
	inappropriate := func(why string) *apiError {
		return &apiError{http.StatusBadRequest, "InappropriateJSON", "The JSON you provided was well-formed and valid, but not appropriate for this operation: " + why}
	}
	if trimmed := strings.TrimSpace(string(raw)); trimmed[0] != '{' {
		return inappropriate("the body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return inappropriate(fmt.Sprintf("%s cannot be a JSON %s", typeErr.Field, typeErr.Value))
		}
		// encoding/json quotes the unknown field's name (%q), so nothing
		// the client sent is echoed unescaped.
		return inappropriate(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

type stopBody struct {
	ForceStop        *bool `json:"forceStop"`
	StopWithNoCharge *bool `json:"stopWithNoCharge"`
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request, reqID, id string, at time.Time) {
	var body stopBody
	bodyErr := readJSONBody(r, &body)
	noCharge := body.StopWithNoCharge != nil && *body.StopWithNoCharge

	s.mu.Lock()
	call := Call{At: at, Op: OpStop, Instance: id}
	if bodyErr != nil {
		if in, ok := s.instances[id]; ok {
			call.Before = s.statusLocked(in)
		}
		call.Status, call.Code = bodyErr.status, bodyErr.code
		s.recordLocked(call)
		s.mu.Unlock()
		writeError(w, reqID, *bodyErr)
		return
	}
	in, known := s.lookupLocked(id)
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
	refusal, refused := s.stopRefusalLocked(id, in, known, noCharge)
	fault, faulty := s.pickFaultLocked()
	// A lost answer: the stop took effect, then the answer failed. Only a
	// 5xx or a timeout can hide that; a 429 means the call was refused,
	// and so was a call the service would have refused anyway.
	if faulty && fault != http.StatusTooManyRequests && s.rng.Float64() < s.faults.AfterApply && !refused {
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
	if refused {
		call.Status, call.Code = refusal.status, refusal.code
		s.recordLocked(call)
		writeError(w, reqID, refusal)
		return
	}
	s.applyStopLocked(in)
	call.Status, call.Applied = http.StatusOK, true
	s.recordLocked(call)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "{}")
}

// stopRefusalLocked is the real service's answer to a stop of id that it
// refuses, if it does.
func (s *Server) stopRefusalLocked(id string, in *instance, known, noCharge bool) (apiError, bool) {
	switch {
	case !known:
		return noSuchObject(id), true
	case in.attrs.Denied:
		return accessDenied("stop", id), true
	case noCharge && in.attrs.Prepaid:
		return apiError{http.StatusForbidden, "Bcc.PrePayCannotStopWithNoCharge", "pre pay instance can not stop with no charge."}, true
	case noCharge && in.attrs.LocalDisk:
		return apiError{http.StatusForbidden, "Bcc.Rocv1CannotStopWithNoCharge", "Shutdown no charge feature is not available for instances with local disk."}, true
	case noCharge && in.attrs.NoChargeUnsupported:
		return apiError{http.StatusForbidden, "Bcc.InstanceTypeNotSupportException", "Shutdown no charge feature is not available for this type of instance."}, true
	case s.statusLocked(in) != Running:
		return apiError{http.StatusConflict, "Instance.StopInstanceOperationForbidden", "Instance not running when shutting down"}, true
	}
	return apiError{}, false
}

func noSuchObject(id string) apiError {
	return apiError{http.StatusNotFound, "NoSuchObject", "the instance " + strconv.Quote(id) + " does not exist"}
}

func accessDenied(what, id string) apiError {
	return apiError{http.StatusForbidden, "AccessDenied", "Access denied: the access key may not " + what + " instance " + strconv.Quote(id) + "."}
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

func (s *Server) describe(w http.ResponseWriter, reqID, id string, at time.Time) {
	s.mu.Lock()
	call := Call{At: at, Op: OpDescribe, Instance: id}
	e, failed := s.describeRefusalLocked(id)
	if failed {
		call.Status, call.Code = e.status, e.code
		if in, ok := s.instances[id]; ok {
			call.Before = s.statusLocked(in)
		}
		s.recordLocked(call)
		s.mu.Unlock()
		writeError(w, reqID, e)
		return
	}
	in, _ := s.lookupLocked(id)
	view := s.viewLocked(id, in)
	call.Status, call.Before = http.StatusOK, view.Status
	s.recordLocked(call)
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"instance": view})
}

// describeRefusalLocked is the answer to a describe of id that fails, if
// it does: an injected failure, an unknown instance, or one the key may
// not see.
func (s *Server) describeRefusalLocked(id string) (apiError, bool) {
	if fail, ok := s.failDesc[id]; ok {
		s.stats.Injected++
		return fail.apiError, true
	}
	in, known := s.lookupLocked(id)
	switch {
	case !known:
		return noSuchObject(id), true
	case in.attrs.Denied:
		return accessDenied("describe", id), true
	}
	return apiError{}, false
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
