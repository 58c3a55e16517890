package bcc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

// TestDescribeInstances: many ids are described with one batch call per
// hundred, the answer keyed by id; ids of no instance are simply absent,
// a repeated id is asked for once, and no single describe is made.
func TestDescribeInstances(t *testing.T) {
	c, fake := newPair(t, bcc.Options{})
	var ids []string
	for i := range 230 {
		id := fmt.Sprintf("i-%04d", i)
		fake.SetStatus(id, fakebcc.Running)
		ids = append(ids, id)
	}
	fake.SetStatus("i-0007", fakebcc.Stopped)
	asked := slices.Clone(ids)
	for i := range 20 {
		asked = append(asked, fmt.Sprintf("i-gone%02d", i))
	}
	asked = append(asked, "i-0001", "i-0002") // twice

	got, resp, err := c.DescribeInstances(context.Background(), "", asked)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.RequestID == "" {
		t.Errorf("response %+v", resp)
	}
	if len(got) != 230 {
		t.Fatalf("%d instances, want 230", len(got))
	}
	for _, id := range ids {
		if got[id].ID != id {
			t.Fatalf("%s: %+v", id, got[id])
		}
	}
	if got["i-0007"].Status != fakebcc.Stopped || got["i-0008"].Status != fakebcc.Running {
		t.Errorf("statuses %s, %s", got["i-0007"].Status, got["i-0008"].Status)
	}
	if _, ok := got["i-gone00"]; ok {
		t.Error("an id of no instance is in the answer")
	}
	// 250 distinct ids: 100 + 100 + 50.
	if s := fake.Stats(); s.DescribeBatchCalls != 3 || s.DescribeCalls != 0 {
		t.Errorf("stats %+v, want 3 batch calls and no describe", s)
	}
	for id, n := range fake.CallsPerInstance() {
		if n != 1 {
			t.Errorf("%s named by %d calls", id, n)
		}
	}

	// No ids: no call.
	got, _, err = c.DescribeInstances(context.Background(), "", nil)
	if err != nil || len(got) != 0 || fake.Stats().DescribeBatchCalls != 3 {
		t.Errorf("no ids: %v, %v, %d calls", got, err, fake.Stats().DescribeBatchCalls)
	}
}

// pagedAPI is a hand-written batch describe that serves pages of two
// instances whatever it is asked, as a service may, and records what it
// was sent.
type pagedAPI struct {
	t     *testing.T
	fleet map[string]bcc.Instance
	// answer, when set, replaces the page for a given call number (from 1).
	answer func(n int, w http.ResponseWriter) bool

	mu      sync.Mutex
	queries []string
	bodies  []string
}

func (a *pagedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(bcc.HeaderRequestID, "req")
	if err := bce.Verify(r, creds, time.Now()); err != nil {
		a.t.Errorf("signature: %v", err)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v2/instance/listByInstanceId" || r.Header.Get("Content-Type") != "application/json" {
		a.t.Errorf("request %s %s (%s), want POST /v2/instance/listByInstanceId with a JSON body", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	raw, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.queries = append(a.queries, r.URL.RawQuery)
	a.bodies = append(a.bodies, string(raw))
	n := len(a.queries)
	a.mu.Unlock()
	if a.answer != nil && a.answer(n, w) {
		return
	}
	var body struct {
		InstanceIDs []string `json:"instanceIds"`
	}
	_ = json.Unmarshal(raw, &body)
	var have []string
	for _, id := range body.InstanceIDs {
		if _, ok := a.fleet[id]; ok {
			have = append(have, id)
		}
	}
	slices.Sort(have)
	marker := r.URL.Query().Get("marker")
	start, _ := slices.BinarySearch(have, marker)
	end := min(start+2, len(have))
	page := map[string]any{"marker": marker, "maxKeys": 2, "isTruncated": end < len(have), "instances": []bcc.Instance{}}
	var instances []bcc.Instance
	for _, id := range have[start:end] {
		instances = append(instances, a.fleet[id])
	}
	if instances != nil {
		page["instances"] = instances
	}
	if end < len(have) {
		page["nextMarker"] = have[end]
	}
	_ = json.NewEncoder(w).Encode(page)
}

func newPagedPair(t *testing.T, n int) (*bcc.Client, *pagedAPI) {
	t.Helper()
	api := &pagedAPI{t: t, fleet: map[string]bcc.Instance{}}
	for _, in := range fleetOf(n) {
		api.fleet[in.ID] = in
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	return c, api
}

// TestDescribeInstancesFollowsPages: a batch whose answer comes in pages
// is followed page by page, each page asked for with the marker the one
// before gave and the same ids.
func TestDescribeInstancesFollowsPages(t *testing.T) {
	c, api := newPagedPair(t, 5)
	ids := []string{"i-000004", "i-000000", "i-000003", "i-000001", "i-000002", "i-unknown"}
	got, _, err := c.DescribeInstances(context.Background(), "", ids)
	if err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(got)); strings.Join(keys, ",") != "i-000000,i-000001,i-000002,i-000003,i-000004" {
		t.Errorf("described %v", keys)
	}
	if want := []string{"", "marker=i-000002", "marker=i-000004"}; !slices.Equal(api.queries, want) {
		t.Errorf("queries %q, want %q", api.queries, want)
	}
	wantBody := `{"instanceIds":["i-000004","i-000000","i-000003","i-000001","i-000002","i-unknown"]}`
	for i, b := range api.bodies {
		if b != wantBody {
			t.Errorf("body %d: %s, want %s", i+1, b, wantBody)
		}
	}
}

// TestDescribeInstancesGuards: an answer that cannot be trusted is an
// error, never a loop or a guess.
func TestDescribeInstancesGuards(t *testing.T) {
	ids := []string{"i-000000", "i-000001", "i-000002", "i-000003"}
	for _, tc := range []struct {
		name   string
		answer func(n int, w http.ResponseWriter) bool
		want   string // in the error
	}{
		{"more pages without a marker", func(n int, w http.ResponseWriter) bool {
			io.WriteString(w, `{"isTruncated":true,"instances":[]}`)
			return true
		}, "no nextMarker"},
		{"the same marker again", func(n int, w http.ResponseWriter) bool {
			io.WriteString(w, `{"isTruncated":true,"nextMarker":"i-000002","instances":[]}`)
			return true
		}, `marker "i-000002" again`},
		{"not JSON", func(n int, w http.ResponseWriter) bool {
			io.WriteString(w, `<html>`)
			return true
		}, "decode answer"},
		{"larger than the limit", func(n int, w http.ResponseWriter) bool {
			io.WriteString(w, `{"instances":[{"id":"i-000000","name":"`+strings.Repeat("x", 4<<20)+`"}]}`)
			return true
		}, "larger than"},
		{"an error on the second page", func(n int, w http.ResponseWriter) bool {
			if n < 2 {
				return false
			}
			w.WriteHeader(403)
			io.WriteString(w, `{"requestId":"r2","code":"AccessDenied","message":"no"}`)
			return true
		}, "AccessDenied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, api := newPagedPair(t, 4)
			api.answer = tc.answer
			got, _, err := c.DescribeInstances(context.Background(), "", ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %s", err, tc.want)
			}
			if got != nil {
				t.Errorf("an error came with instances %v", got)
			}
		})
	}

	// An instance the answer has but was not asked for is left out.
	c, api := newPagedPair(t, 4)
	api.answer = func(n int, w http.ResponseWriter) bool {
		io.WriteString(w, `{"instances":[{"id":"i-000000","status":"Running"},{"id":"i-other","status":"Running"}]}`)
		return true
	}
	got, _, err := c.DescribeInstances(context.Background(), "", []string{"i-000000"})
	if err != nil || len(got) != 1 || got["i-000000"].Status != "Running" {
		t.Errorf("got %v, %v", got, err)
	}

	// What cannot be asked is refused before any call.
	for _, bad := range [][]string{{"i-a", ""}} {
		if _, _, err := c.DescribeInstances(context.Background(), "", bad); err == nil {
			t.Errorf("ids %q accepted", bad)
		}
	}
	if _, _, err := c.DescribeInstances(context.Background(), "nowhere", []string{"i-a"}); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("unknown region: %v", err)
	}
	if n := len(api.queries); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// TestDescribeInstancesErrors: the simulator's refusals reach the caller
// as *APIError, recognisable by the predicates, with no instances.
func TestDescribeInstancesErrors(t *testing.T) {
	ctx := context.Background()
	c, fake := newPair(t, bcc.Options{})
	fake.Seed(fakebcc.Running, "i-a", "i-denied")
	_ = fake.SetAttributes("i-denied", fakebcc.Attributes{Denied: true})
	got, resp, err := c.DescribeInstances(ctx, "", []string{"i-a", "i-denied"})
	var apiErr *bcc.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Code != bcc.CodeAccessDenied || !bcc.IsAccessDenied(err) || got != nil || resp.StatusCode != 403 {
		t.Errorf("denied: %v, %v, %+v", got, err, resp)
	}
	if transient, _ := bcc.Classify(err); transient {
		t.Error("AccessDenied transient")
	}

	fake.FailDescribe("i-a", 500, "InternalError")
	_, _, err = c.DescribeInstances(ctx, "", []string{"i-a"})
	if transient, _ := bcc.Classify(err); !transient {
		t.Errorf("500: %v, want transient", err)
	}
	fake.ClearFailure("i-a")

	fake.SetMaxRate(1, 429)
	_, _, _ = c.DescribeInstances(ctx, "", []string{"i-a"})
	_, _, err = c.DescribeInstances(ctx, "", []string{"i-a"})
	if throttled, after := bcc.IsThrottled(err); !throttled || after != time.Second {
		t.Errorf("throttled: %v, %v, %v", throttled, after, err)
	}
	fake.SetMaxRate(0, 0)

	bad, _ := newPair(t, bcc.Options{Credentials: bce.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "wrong"}})
	_, _, err = bad.DescribeInstances(ctx, "", []string{"i-a"})
	if !bcc.IsCredentialError(err) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong secret: %v", err)
	}
}

// TestDescribeInstancesTelemetryAndLimiter: each batch call waits for the
// limiter and gets the HTTP client span every call gets.
func TestDescribeInstancesTelemetryAndLimiter(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var waits atomic.Int32
	c, fake := newPair(t, bcc.Options{TracerProvider: tp, Limiter: rate.NewLimiter(rate.Inf, 1), Waited: func(time.Duration) { waits.Add(1) }})
	var ids []string
	for i := range 150 {
		id := fmt.Sprintf("i-%03d", i)
		fake.SetStatus(id, fakebcc.Running)
		ids = append(ids, id)
	}
	if _, _, err := c.DescribeInstances(context.Background(), "", ids); err != nil {
		t.Fatal(err)
	}
	if n := waits.Load(); n != 2 {
		t.Errorf("the limiter was asked %d times, want 2", n)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for _, s := range spans {
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value
		}
		if s.Name() != "POST" || s.SpanKind() != trace.SpanKindClient || attrs["http.request.method"].AsString() != "POST" ||
			attrs["http.response.status_code"].AsInt64() != 200 || attrs[bcc.AttrRequestID].AsString() == "" || attrs["server.address"].AsString() != "127.0.0.1" {
			t.Errorf("span %s %v %v", s.Name(), s.SpanKind(), attrs)
		}
	}
}
