package bcc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// HeaderRequestID is the response header carrying BCE's request id.
const HeaderRequestID = "X-Bce-Request-Id"

// BCE error codes the BCC API answers with, as Baidu documents them for
// the calls bccstop makes and for every BCE service.
const (
	// CodeForbidden (409): a stop of an instance that is not Running.
	CodeForbidden = "Instance.StopInstanceOperationForbidden"
	// CodePrePayCannotStopWithNoCharge (403): stopWithNoCharge asked of a
	// prepaid instance.
	CodePrePayCannotStopWithNoCharge = "Bcc.PrePayCannotStopWithNoCharge"
	// CodeRocv1CannotStopWithNoCharge (403): stopWithNoCharge asked of an
	// instance with local disks.
	CodeRocv1CannotStopWithNoCharge = "Bcc.Rocv1CannotStopWithNoCharge"
	// CodeInstanceTypeNotSupport (403): stopWithNoCharge asked of an
	// instance whose type cannot be stopped without charge.
	CodeInstanceTypeNotSupport = "Bcc.InstanceTypeNotSupportException"
	// CodeNoSuchObject (404): no such instance.
	CodeNoSuchObject = "NoSuchObject"
	// CodeAccessDenied (403): the access key may not do this to this instance.
	CodeAccessDenied = "AccessDenied"
	// CodeMalformedJSON (400): the request body is not JSON.
	CodeMalformedJSON = "MalformedJSON"
	// CodeInappropriateJSON (400): the request body is JSON of the wrong shape.
	CodeInappropriateJSON = "InappropriateJSON"
	// CodeInvalidAccessKeyID (403): the access key id does not exist.
	CodeInvalidAccessKeyID = "InvalidAccessKeyId"
	// CodeSignatureDoesNotMatch (403): the secret, or the signing, is wrong.
	CodeSignatureDoesNotMatch = "SignatureDoesNotMatch"
	// CodeRequestExpired (400): the signature's timestamp is outside the
	// service's window: the clock of the signer is off.
	CodeRequestExpired = "RequestExpired"
	// CodeRequestLimitExceeded (429) and CodeServiceUnavailable (503): the
	// service is throttling, or unavailable.
	CodeRequestLimitExceeded = "RequestLimitExceeded"
	CodeServiceUnavailable   = "ServiceUnavailable"
	// CodeInternalError (500): the service failed.
	CodeInternalError = "InternalError"

	// CodeUnexpectedRedirect is bccstop's code for a 3xx answer, which the
	// client never follows.
	CodeUnexpectedRedirect = "UnexpectedRedirect"
)

// APIError is a non-2xx answer of the BCC API.
type APIError struct {
	StatusCode int
	Code       string // BCE code from the body, "" when the body had none
	Message    string
	RequestID  string // from the body, else the x-bce-request-id header
	RetryAfter time.Duration
	// Resigned: the call was signed afresh and sent again after a first
	// RequestExpired answer, and this is the answer to that second try.
	Resigned bool
}

func (e *APIError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "bcc api: HTTP %d", e.StatusCode)
	if e.Code != "" {
		sb.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		sb.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		sb.WriteString(" (request id " + e.RequestID + ")")
	}
	return sb.String()
}

// TransportError is a call that got no HTTP answer: refused or broken
// connection, DNS failure, timeout.
type TransportError struct {
	Err error
	// NotSent: the request never left (it was waiting for its turn under
	// the rate limit), so it cannot have changed anything.
	NotSent bool
}

func (e *TransportError) Error() string { return "bcc transport: " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// Timeout reports whether the call ran out of time.
func (e *TransportError) Timeout() bool {
	var te interface{ Timeout() bool }
	return errors.Is(e.Err, context.DeadlineExceeded) || errors.As(e.Err, &te) && te.Timeout()
}

func newAPIError(resp *http.Response, payload []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get(HeaderRequestID)}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Code = CodeUnexpectedRedirect
		e.Message = fmt.Sprintf("the API answered HTTP %d, a redirect%s; redirects are never followed, so credentials go only to the configured endpoint",
			resp.StatusCode, redirectTarget(resp.Header.Get("Location")))
		return e
	}
	var body struct {
		RequestID string `json:"requestId"`
		Code      string `json:"code"`
		Message   string `json:"message"`
	}
	if json.Unmarshal(payload, &body) == nil {
		e.Code, e.Message = body.Code, body.Message
		if body.RequestID != "" {
			e.RequestID = body.RequestID
		}
	} else if len(payload) > 0 {
		e.Message = printable(string(payload), 200)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// redirectTarget names where a redirect pointed, without its path or query
// (which could carry anything).
func redirectTarget(location string) string {
	u, err := url.Parse(location)
	if err != nil || u.Host == "" {
		return ""
	}
	return " to " + printable(u.Scheme+"://"+u.Host, 100)
}

// printable cuts s to n bytes and drops control characters, so a proxy's
// HTML page cannot flood a log line.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Classify is the retry policy, decided here at the HTTP edge and nowhere
// else: it reports whether err is transient (worth trying again later) and
// how long the API asked us to wait (Retry-After), if it did.
//
// Transient: 5xx (InternalError, ServiceUnavailable), 429, timeouts and
// connection errors. Terminal: 409 and every other 4xx — the answers about
// the command (NoSuchObject, the three stopWithNoCharge refusals,
// AccessDenied, MalformedJSON, InappropriateJSON) and the credential
// errors (RequestExpired has already been re-signed and retried once by
// the client) — and any error that is not from the API at all. Terminal
// for one call is not the end of the command for a credential error:
// IsCredentialError tells those apart.
func Classify(err error) (transient bool, retryAfter time.Duration) {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.StatusCode == http.StatusTooManyRequests, apiErr.StatusCode >= 500:
			return true, apiErr.RetryAfter
		}
		return false, 0
	}
	var te *TransportError
	if errors.As(err, &te) {
		return true, 0
	}
	return false, 0
}

// MayHaveApplied reports whether a failed call may still have stopped the
// instance, so that its fate is unknown: a 5xx answer (the service may have
// acted, then failed), a timeout or a connection broken mid-request. A 4xx
// or 3xx answer, and a connection that could not even be opened, did not.
func MayHaveApplied(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode >= 500
	}
	var te *TransportError
	if !errors.As(err, &te) || te.NotSent {
		return false
	}
	var opErr *net.OpError
	return !(errors.As(te.Err, &opErr) && opErr.Op == "dial")
}

// IsForbidden reports whether err is the 409 StopInstanceOperationForbidden
// answer: the instance was not Running.
func IsForbidden(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusConflict && apiErr.Code == CodeForbidden
}

// apiError returns the *APIError in err's chain, or nil.
func apiError(err error) *APIError {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return nil
}

// IsCredentialError reports whether err says the client's credentials are
// wrong, whatever the call: an unknown access key id (InvalidAccessKeyId),
// a wrong secret (SignatureDoesNotMatch), or a clock so far off that even
// the client's freshly signed retry was RequestExpired. Such an answer is
// about the caller, not the instance: it says nothing of whether the
// instance could be stopped.
func IsCredentialError(err error) bool {
	e := apiError(err)
	if e == nil {
		return false
	}
	switch e.Code {
	case CodeInvalidAccessKeyID, CodeSignatureDoesNotMatch:
		return true
	case CodeRequestExpired:
		return e.Resigned
	}
	return false
}

// IsNotFound reports whether err says the instance does not exist:
// NoSuchObject, or one of the codes Baidu's own Terraform provider reads
// as "gone" (InstanceNotFound, InvalidInstanceId.NotFound,
// Forbidden.InstanceNotFound). A 404 without one of those codes (a proxy's,
// a wrong path) is not.
func IsNotFound(err error) bool {
	e := apiError(err)
	if e == nil {
		return false
	}
	switch e.Code {
	case CodeNoSuchObject, "InstanceNotFound", "InvalidInstanceId.NotFound", "Forbidden.InstanceNotFound":
		return true
	}
	return false
}

// IsThrottled reports whether err is the API holding the caller back —
// 429, or 503 (the service unavailable or shedding load), whatever the
// code — and how long it asked the caller to wait (Retry-After; 0 when it
// did not say).
func IsThrottled(err error) (throttled bool, retryAfter time.Duration) {
	e := apiError(err)
	if e == nil || e.StatusCode != http.StatusTooManyRequests && e.StatusCode != http.StatusServiceUnavailable {
		return false, 0
	}
	return true, e.RetryAfter
}

// IsAccessDenied reports whether err is 403 AccessDenied: the access key
// may not do this to this instance (a policy, not a wrong key).
func IsAccessDenied(err error) bool {
	e := apiError(err)
	return e != nil && e.StatusCode == http.StatusForbidden && e.Code == CodeAccessDenied
}

// IsNoChargeRefusal reports whether err refuses a stop because it asked
// stopWithNoCharge of an instance that cannot be stopped so (prepaid, with
// local disks, or of a type without it); the same stop without
// stopWithNoCharge may be accepted. Only a stop that asked stopWithNoCharge
// gets one of these.
func IsNoChargeRefusal(err error) bool {
	e := apiError(err)
	if e == nil {
		return false
	}
	switch e.Code {
	case CodePrePayCannotStopWithNoCharge, CodeRocv1CannotStopWithNoCharge, CodeInstanceTypeNotSupport:
		return true
	}
	return false
}
