// Package bcc is a small client for the Baidu Cloud Compute (BCC) API: stop
// and describe an instance, describe many at once, and list instances by
// tag, signed with bce-auth-v1. Its errors are recognised here, at the HTTP
// edge: Classify is the retry policy, and IsForbidden, IsCredentialError,
// IsNotFound, IsThrottled, IsAccessDenied and IsNoChargeRefusal say what an
// answer means.
package bcc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/bccstop/bccstop/internal/bce"
)

// DefaultTimeout bounds one API call when Options.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// maxResponseBytes caps how much of an answer to a stop or describe call is
// read; maxListResponseBytes that of a list page, which holds up to 1000
// full instance descriptions (a few KiB each from the real API);
// maxBatchResponseBytes that of a batch describe, which names at most
// MaxDescribeIDs instances.
const (
	maxResponseBytes      = 64 << 10
	maxListResponseBytes  = 32 << 20
	maxBatchResponseBytes = 4 << 20
)

// Options configure a Client.
type Options struct {
	// Endpoint is the default endpoint, for example https://bcc.bj.baidubce.com.
	Endpoint string
	// Regions maps region names (as commands give them) to endpoints.
	Regions map[string]string
	// Credentials sign every request.
	Credentials bce.Credentials
	// Timeout bounds each call, including reading the answer; DefaultTimeout when zero.
	Timeout time.Duration
	// Transport sends requests; NewTransport() when nil.
	Transport http.RoundTripper
	// Now is the clock used for signatures; time.Now when nil.
	Now func() time.Time
	// Limiter, when set, paces every request (stop, describe and list
	// share it); Waited, when set, is told how long each request waited.
	Limiter Limiter
	Waited  func(time.Duration)
	// Throttled, when set, is told of every throttling answer (429, 503)
	// and the Retry-After it carried, so the pace of the whole fleet can
	// slow down (see internal/guard.Rate).
	Throttled func(retryAfter time.Duration)
	// TracerProvider and MeterProvider, when set, give each request an
	// HTTP CLIENT span, with the W3C trace context sent along (never
	// baggage), and the http.client.request.duration histogram.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// Limiter paces requests: Wait returns when the next one may go (a
// golang.org/x/time/rate.Limiter is one; so is guard.Rate, the fleet's).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Client calls the BCC API. It is safe for concurrent use and reuses one
// http.Client (and so its connections) for every call.
type Client struct {
	endpoints map[string]*url.URL // "" is the default endpoint
	signer    atomic.Pointer[bce.Signer]
	http      *http.Client
	timeout   time.Duration
	now       func() time.Time
	limiter   Limiter
	waited    func(time.Duration)
	throttled func(time.Duration)
	tel       *instruments // nil: no telemetry
}

// New checks the options and returns a Client. An endpoint must be https://,
// or http:// on a loopback host (the simulator), and carry no path.
func New(opts Options) (*Client, error) {
	if !opts.Credentials.Valid() {
		return nil, errors.New("bcc: access key id and secret access key are required")
	}
	c := &Client{
		endpoints: make(map[string]*url.URL, len(opts.Regions)+1),
		timeout:   opts.Timeout,
		now:       opts.Now,
		limiter:   opts.Limiter,
		waited:    opts.Waited,
		throttled: opts.Throttled,
	}
	c.signer.Store(bce.NewSigner(opts.Credentials, 0))
	var err error
	if c.tel, err = newInstruments(opts.TracerProvider, opts.MeterProvider); err != nil {
		return nil, fmt.Errorf("bcc: instruments: %w", err)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	u, err := ParseEndpoint(opts.Endpoint)
	if err != nil {
		return nil, err
	}
	c.endpoints[""] = u
	for region, ep := range opts.Regions {
		if region == "" {
			return nil, errors.New("bcc: empty region name")
		}
		u, err := ParseEndpoint(ep)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", region, err)
		}
		c.endpoints[region] = u
	}
	transport := opts.Transport
	if transport == nil {
		transport = NewTransport()
	}
	// The per-call context carries the deadline; the client timeout is a
	// backstop a little above it. Redirects are never followed: the signed
	// Authorization header and the session token go only to the configured
	// endpoint, and a 3xx answer is an *APIError (CodeUnexpectedRedirect).
	c.http = &http.Client{Transport: transport, Timeout: c.timeout + time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c, nil
}

// NewTransport returns the transport a Client uses by default: pooled
// keep-alive connections, enough idle ones per host for a busy worker so
// that no call pays for a new TCP or TLS handshake, and HTTP/2 over TLS.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = true
	return t
}

// ParseEndpoint checks one endpoint URL: https://host[:port], or http:// on a
// loopback host (the simulator).
func ParseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bcc: endpoint %q is not a URL like https://bcc.bj.baidubce.com", raw)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("bcc: endpoint %q must be scheme://host[:port] only", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("bcc: endpoint %q: http:// is allowed only for a loopback host; use https://", raw)
		}
	default:
		return nil, fmt.Errorf("bcc: endpoint %q: scheme must be https", raw)
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HasRegion reports whether region has an endpoint; "" (the default) always has.
func (c *Client) HasRegion(region string) bool {
	_, ok := c.endpoints[region]
	return ok
}

// Regions returns the configured region names, sorted.
func (c *Client) Regions() []string {
	var names []string
	for r := range c.endpoints {
		if r != "" {
			names = append(names, r)
		}
	}
	sort.Strings(names)
	return names
}

// StopRequest names the instance to stop and how.
type StopRequest struct {
	InstanceID       string
	ForceStop        bool
	StopWithNoCharge bool
	Region           string // "" for the default endpoint
	// OnTurn, when set, is called once the stop has its turn under the
	// limiter (at once without one), just before it is signed and sent:
	// what must happen right before the call, and only if the call can go
	// now (the worker charges the blast-radius budget there, so that the
	// charge is not made long before a call that waits for its turn, or
	// never gets it). An error means the stop is not sent: the call
	// returns a *TransportError with NotSent that wraps it. A stop signed
	// afresh after RequestExpired does not call it again.
	OnTurn func(ctx context.Context) error
}

// Response describes the API's answer to a successful call.
type Response struct {
	StatusCode int
	RequestID  string
}

// stopBodies are the four possible request bodies, built once.
var stopBodies = [2][2][]byte{
	{[]byte(`{"forceStop":false}`), []byte(`{"forceStop":false,"stopWithNoCharge":true}`)},
	{[]byte(`{"forceStop":true}`), []byte(`{"forceStop":true,"stopWithNoCharge":true}`)},
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// StopInstance calls PUT /v2/instance/{id}?stop. A non-2xx answer is an
// *APIError; a transport failure (refused connection, timeout) is returned
// wrapped. Classify tells which errors are worth retrying.
func (c *Client) StopInstance(ctx context.Context, r StopRequest) (Response, error) {
	body := stopBodies[b2i(r.ForceStop)][b2i(r.StopWithNoCharge)]
	resp, _, err := c.call(ctx, http.MethodPut, r.Region, instancePath(r.InstanceID), "stop", body, maxResponseBytes, r.OnTurn)
	if err != nil {
		return resp, fmt.Errorf("stop %s: %w", r.InstanceID, err)
	}
	return resp, nil
}

// Instance is the part of an instance description bccstop uses.
type Instance struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"` // Running, Stopping, Stopped, Starting, …
	Tags   []Tag  `json:"tags"`
}

// DescribeInstance calls GET /v2/instance/{id}.
func (c *Client) DescribeInstance(ctx context.Context, region, instanceID string) (Instance, Response, error) {
	resp, payload, err := c.call(ctx, http.MethodGet, region, instancePath(instanceID), "", nil, maxResponseBytes, nil)
	if err != nil {
		return Instance{}, resp, fmt.Errorf("describe %s: %w", instanceID, err)
	}
	var out struct {
		Instance Instance `json:"instance"`
	}
	if err := json.Unmarshal(payload, &out); err != nil {
		return Instance{}, resp, fmt.Errorf("describe %s: decode answer: %w", instanceID, err)
	}
	return out.Instance, resp, nil
}

func instancePath(instanceID string) string { return "/v2/instance/" + instanceID }

// CheckCredentials makes a harmless signed call (a list of one instance)
// and returns its error: IsCredentialError tells whether the API refused
// the credentials; any other answer means it accepted them.
func (c *Client) CheckCredentials(ctx context.Context) error {
	_, _, err := c.ListInstances(ctx, ListRequest{MaxKeys: 1})
	return err
}

// SetCredentials signs every later request with creds (credentials read
// again while the API refuses the old ones). Safe while calls run.
func (c *Client) SetCredentials(creds bce.Credentials) error {
	if !creds.Valid() {
		return errors.New("bcc: access key id and secret access key are required")
	}
	c.signer.Store(bce.NewSigner(creds, 0))
	return nil
}

// call makes one API call to path?query, reading at most limit+1 bytes of a
// successful answer (so that a caller can tell an answer that was cut) and
// at most maxResponseBytes of an error. A RequestExpired answer (the
// signature's clock was off) is signed afresh and tried once more at once,
// as it costs nothing and says nothing about the instance. onTurn (nil for
// none) is called before the first send only (see StopRequest.OnTurn).
func (c *Client) call(ctx context.Context, method, region, path, query string, body []byte, limit int64, onTurn func(context.Context) error) (Response, []byte, error) {
	base, ok := c.endpoints[region]
	if !ok {
		return Response{}, nil, fmt.Errorf("no endpoint for region %q", region)
	}
	var (
		resp    Response
		payload []byte
		err     error
	)
	for attempt := 0; attempt < 2; attempt++ {
		resp, payload, err = c.do(ctx, method, base, path, query, body, limit, onTurn)
		onTurn = nil
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Code != CodeRequestExpired {
			break
		}
		apiErr.Resigned = attempt > 0
	}
	return resp, payload, err
}

// do sends one request. It waits for the limiter first, on the caller's
// context alone: the time a request waits for its turn is not taken from
// its own time limit (Options.Timeout), which starts once it may go. A
// request that never got its turn was never sent (NotSent), nor one that
// onTurn (nil for none), called once it has its turn, refused.
func (c *Client) do(ctx context.Context, method string, base *url.URL, path, query string, body []byte, limit int64, onTurn func(context.Context) error) (Response, []byte, error) {
	if c.limiter != nil {
		begin := time.Now()
		if err := c.limiter.Wait(ctx); err != nil {
			return Response{}, nil, &TransportError{Err: fmt.Errorf("waiting for the API rate: %w", err), NotSent: true}
		}
		if c.waited != nil {
			c.waited(time.Since(begin))
		}
	}
	if onTurn != nil {
		if err := onTurn(ctx); err != nil {
			return Response{}, nil, &TransportError{Err: err, NotSent: true}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *base
	u.Path = path
	u.RawQuery = query
	ctx, span, begin := c.tel.start(ctx, method, &u)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytesReader(body))
	if err != nil {
		c.tel.end(ctx, span, begin, method, u.Host, 0, "", "", err)
		return Response{}, nil, err
	}
	c.tel.inject(ctx, req.Header)
	if body != nil {
		req.Header["Content-Type"] = []string{"application/json"}
	}
	c.signer.Load().Sign(req, c.now())
	httpResp, err := c.http.Do(req)
	if err != nil {
		c.tel.end(ctx, span, begin, method, u.Host, 0, "", "", err)
		return Response{}, nil, &TransportError{Err: err}
	}
	defer httpResp.Body.Close()
	resp := Response{StatusCode: httpResp.StatusCode, RequestID: httpResp.Header.Get(HeaderRequestID)}
	if httpResp.StatusCode < 200 || httpResp.StatusCode > 299 {
		payload, _ := io.ReadAll(io.LimitReader(httpResp.Body, maxResponseBytes))
		apiErr := newAPIError(httpResp, payload)
		c.tel.end(ctx, span, begin, method, u.Host, resp.StatusCode, apiErr.RequestID, apiErr.Code, nil)
		if c.throttled != nil {
			if throttled, after := IsThrottled(apiErr); throttled {
				c.throttled(after)
			}
		}
		return resp, nil, apiErr
	}
	payload, readErr := io.ReadAll(io.LimitReader(httpResp.Body, limit+1))
	c.tel.end(ctx, span, begin, method, u.Host, resp.StatusCode, resp.RequestID, "", readErr)
	if readErr != nil {
		return resp, nil, &TransportError{Err: readErr}
	}
	return resp, payload, nil
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}
