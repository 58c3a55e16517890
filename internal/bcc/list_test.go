package bcc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
)

// listAPI is a hand-written list endpoint: it checks every request's
// signature, records the query it got, and serves pages of fleet in id
// order, a page starting at the instance named by marker, as the real API.
type listAPI struct {
	t     *testing.T
	fleet []bcc.Instance

	mu       sync.Mutex
	queries  []string // raw queries, in order
	failNext []int    // statuses to answer with, one per call, before serving
}

func (a *listAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(bcc.HeaderRequestID, "req-"+strconv.Itoa(len(a.queries)))
	if err := bce.Verify(r, creds, time.Now()); err != nil {
		a.t.Errorf("signature: %v (query %q)", err, r.URL.RawQuery)
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != "/v2/instance" {
		a.t.Errorf("request %s %s, want GET /v2/instance", r.Method, r.URL.Path)
	}
	a.mu.Lock()
	a.queries = append(a.queries, r.URL.RawQuery)
	var fail int
	if len(a.failNext) > 0 {
		fail, a.failNext = a.failNext[0], a.failNext[1:]
	}
	a.mu.Unlock()
	if fail != 0 {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(fail)
		fmt.Fprintf(w, `{"requestId":"r","code":"Injected%d","message":"injected"}`, fail)
		return
	}
	q := r.URL.Query()
	maxKeys := 1000
	if v := q.Get("maxKeys"); v != "" {
		maxKeys, _ = strconv.Atoi(v)
	}
	marker := q.Get("marker")
	start := sort.Search(len(a.fleet), func(i int) bool { return a.fleet[i].ID >= marker })
	end := min(start+maxKeys, len(a.fleet))
	page := map[string]any{"marker": marker, "maxKeys": maxKeys, "isTruncated": end < len(a.fleet), "instances": a.fleet[start:end]}
	if end < len(a.fleet) {
		page["nextMarker"] = a.fleet[end].ID
	}
	_ = json.NewEncoder(w).Encode(page)
}

func (a *listAPI) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.queries...)
}

func fleetOf(n int) []bcc.Instance {
	out := make([]bcc.Instance, n)
	for i := range out {
		id := fmt.Sprintf("i-%06d", i)
		out[i] = bcc.Instance{ID: id, Name: "vm" + id, Status: "Running", Tags: []bcc.Tag{{Key: "env", Value: "staging"}}}
	}
	return out
}

func newListPair(t *testing.T, fleet []bcc.Instance) (*bcc.Client, *listAPI) {
	t.Helper()
	api := &listAPI{t: t, fleet: fleet}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	return c, api
}

// TestListInstancesQuery: the request carries exactly the parameters asked
// for, encoded as Baidu's SDK encodes them (":" and "," escaped), and signed.
func TestListInstancesQuery(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  bcc.ListRequest
		want map[string]string // decoded query
		raw  string            // a substring of the raw query, when it matters
	}{
		{"nothing", bcc.ListRequest{}, map[string]string{}, ""},
		{"one tag with value", bcc.ListRequest{Tags: []bcc.Tag{{Key: "env", Value: "staging"}}},
			map[string]string{"tags": "env:staging"}, "tags=env%3Astaging"},
		{"a key alone and a pair", bcc.ListRequest{Tags: []bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team"}}},
			map[string]string{"tags": "env:staging,team"}, "tags=env%3Astaging%2Cteam"},
		{"space and unicode", bcc.ListRequest{Tags: []bcc.Tag{{Key: "部门", Value: "a b"}}},
			map[string]string{"tags": "部门:a b"}, "%3Aa%20b"},
		{"marker and page size", bcc.ListRequest{Marker: "i-000007", MaxKeys: 5},
			map[string]string{"marker": "i-000007", "maxKeys": "5"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, api := newListPair(t, fleetOf(3))
			if _, _, err := c.ListInstances(context.Background(), tc.req); err != nil {
				t.Fatal(err)
			}
			raw := api.seen()[0]
			q, _ := urlQuery(raw)
			if !reflect.DeepEqual(q, tc.want) {
				t.Fatalf("query %q = %v, want %v", raw, q, tc.want)
			}
			if !strings.Contains(raw, tc.raw) {
				t.Fatalf("raw query %q lacks %q", raw, tc.raw)
			}
		})
	}
}

func urlQuery(raw string) (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		v = strings.ReplaceAll(v, "+", "%2B") // a '+' would be a space encoded wrongly
		dk, err := urlUnescape(k)
		if err != nil {
			return nil, err
		}
		dv, err := urlUnescape(v)
		if err != nil {
			return nil, err
		}
		out[dk] = dv
	}
	return out, nil
}

func urlUnescape(s string) (string, error) {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("bad escape")
		}
		b, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", err
		}
		sb.WriteByte(byte(b))
		i += 2
	}
	return sb.String(), nil
}

// TestListInstancesPage: one page is decoded as the API sends it.
func TestListInstancesPage(t *testing.T) {
	c, _ := newListPair(t, fleetOf(5))
	page, resp, err := c.ListInstances(context.Background(), bcc.ListRequest{Marker: "i-000001", MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.RequestID == "" {
		t.Fatalf("response = %+v", resp)
	}
	want := bcc.ListPage{Marker: "i-000001", MaxKeys: 2, IsTruncated: true, NextMarker: "i-000003", Instances: fleetOf(5)[1:3]}
	if !reflect.DeepEqual(page, want) {
		t.Fatalf("page = %+v\nwant %+v", page, want)
	}
}

// TestListInstancesRejectsBadRequests: what cannot be asked for is refused
// before any call.
func TestListInstancesRejectsBadRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  bcc.ListRequest
		want string
	}{
		{"negative page", bcc.ListRequest{MaxKeys: -1}, "maxKeys"},
		{"page too big", bcc.ListRequest{MaxKeys: 1001}, "maxKeys"},
		{"empty key", bcc.ListRequest{Tags: []bcc.Tag{{Value: "x"}}}, "empty"},
		{"comma in key", bcc.ListRequest{Tags: []bcc.Tag{{Key: "a,b"}}}, `","`},
		{"colon in key", bcc.ListRequest{Tags: []bcc.Tag{{Key: "a:b"}}}, `":"`},
		{"comma in value", bcc.ListRequest{Tags: []bcc.Tag{{Key: "env", Value: "a,b"}}}, `","`},
		{"colon in value", bcc.ListRequest{Tags: []bcc.Tag{{Key: "env", Value: "a:b"}}}, `":"`},
		{"unknown region", bcc.ListRequest{Region: "mars"}, "region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, api := newListPair(t, fleetOf(1))
			_, _, err := c.ListInstances(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %s", err, tc.want)
			}
			if _, err := c.ListAllInstances(context.Background(), tc.req); err == nil {
				t.Fatal("ListAllInstances accepted it")
			}
			if n := len(api.seen()); n != 0 {
				t.Fatalf("%d calls made", n)
			}
		})
	}
}

// TestListAllInstancesFollowsPages: every page is fetched, each starting at
// the previous page's nextMarker, and the instances come back in order.
func TestListAllInstancesFollowsPages(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fleet     int
		maxKeys   int
		wantPages int
	}{
		{"empty", 0, 0, 1},
		{"one page by default", 1000, 0, 1},
		{"default page size, three pages", 2500, 0, 3},
		{"exact pages", 9, 3, 3},
		{"uneven pages", 10, 3, 4},
		{"one per page", 4, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fleet := fleetOf(tc.fleet)
			c, api := newListPair(t, fleet)
			got, err := c.ListAllInstances(context.Background(), bcc.ListRequest{MaxKeys: tc.maxKeys, Tags: []bcc.Tag{{Key: "env"}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(fleet) || len(got) > 0 && !reflect.DeepEqual(got, fleet) {
				t.Fatalf("got %d instances, want %d", len(got), len(fleet))
			}
			queries := api.seen()
			if len(queries) != tc.wantPages {
				t.Fatalf("%d calls, want %d", len(queries), tc.wantPages)
			}
			for i, raw := range queries {
				q, _ := urlQuery(raw)
				if q["tags"] != "env" {
					t.Errorf("page %d: tags = %q", i, q["tags"])
				}
				if wantMarker := ""; i > 0 {
					per := tc.maxKeys
					if per == 0 {
						per = 1000
					}
					wantMarker = fleet[i*per].ID
					if q["marker"] != wantMarker {
						t.Errorf("page %d: marker = %q, want %q", i, q["marker"], wantMarker)
					}
				} else if _, ok := q["marker"]; ok {
					t.Errorf("first page sent a marker: %q", raw)
				}
			}
		})
	}
}

// TestListAllInstancesRetriesTransient: a 5xx or 429 on a page is tried
// again (listing changes nothing); any other error ends the listing with the
// client's own error types.
func TestListAllInstancesRetriesTransient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     []int
		wantErr  int // HTTP status of the *APIError, 0 for success
		wantCall int
	}{
		{"503 then fine", []int{503}, 0, 3},
		{"429 and 500 then fine", []int{429, 500}, 0, 4},
		{"always 503", []int{503, 503, 503, 503}, 503, 3},
		{"403 is not retried", []int{403}, 403, 1},
		{"400 is not retried", []int{400}, 400, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, api := newListPair(t, fleetOf(4))
			api.failNext = tc.fail
			got, err := c.ListAllInstances(context.Background(), bcc.ListRequest{MaxKeys: 2})
			var apiErr *bcc.APIError
			switch {
			case tc.wantErr == 0 && (err != nil || len(got) != 4):
				t.Fatalf("got %d, %v", len(got), err)
			case tc.wantErr != 0 && (!errors.As(err, &apiErr) || apiErr.StatusCode != tc.wantErr):
				t.Fatalf("err = %v, want an APIError %d", err, tc.wantErr)
			}
			if n := len(api.seen()); n != tc.wantCall {
				t.Fatalf("%d calls, want %d", n, tc.wantCall)
			}
		})
	}
}

func TestListTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := bcc.New(bcc.Options{Endpoint: url, Credentials: creds})
	_, _, err := c.ListInstances(context.Background(), bcc.ListRequest{})
	var te *bcc.TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a TransportError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ListAllInstances(ctx, bcc.ListRequest{}); err == nil {
		t.Fatal("cancelled listing succeeded")
	}
}

// TestListAllInstancesGuards: an API that claims more pages but gives no way
// to them, or sends the same marker again, ends the listing with an error
// instead of a loop.
func TestListAllInstancesGuards(t *testing.T) {
	for _, tc := range []struct {
		name string
		page func(marker string) string
		want string
	}{
		{"truncated without nextMarker", func(string) string {
			return `{"marker":"","isTruncated":true,"maxKeys":1000,"instances":[{"id":"i-a"}]}`
		}, "nextMarker"},
		{"marker loop", func(marker string) string {
			next := "i-b"
			if marker == "i-b" {
				next = "i-a"
			}
			return `{"isTruncated":true,"nextMarker":"` + next + `","maxKeys":1000,"instances":[]}`
		}, "again"},
		{"not JSON", func(string) string { return `<html>` }, "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				if calls > 10 {
					t.Error("still listing after 10 pages")
					w.WriteHeader(500)
					return
				}
				_, _ = w.Write([]byte(tc.page(r.URL.Query().Get("marker"))))
			}))
			defer srv.Close()
			c, _ := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
			_, err := c.ListAllInstances(context.Background(), bcc.ListRequest{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestListAllInstancesDropsRepeats: an instance that shows up on two pages
// (the fleet changed between them) is returned once.
func TestListAllInstancesDropsRepeats(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("marker") == "" {
			_, _ = w.Write([]byte(`{"isTruncated":true,"nextMarker":"i-b","instances":[{"id":"i-a"},{"id":"i-b"}]}`))
			return
		}
		_, _ = w.Write([]byte(`{"marker":"i-b","isTruncated":false,"instances":[{"id":"i-b"},{"id":"i-c"}]}`))
	}))
	defer srv.Close()
	c, _ := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
	got, err := c.ListAllInstances(context.Background(), bcc.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range got {
		ids = append(ids, in.ID)
	}
	if strings.Join(ids, ",") != "i-a,i-b,i-c" {
		t.Fatalf("ids = %v", ids)
	}
}

func TestInstanceHasTags(t *testing.T) {
	in := bcc.Instance{ID: "i-a", Tags: []bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team", Value: "web"}, {Key: "empty"}}}
	for _, tc := range []struct {
		filters []bcc.Tag
		want    bool
	}{
		{nil, true},
		{[]bcc.Tag{{Key: "env", Value: "staging"}}, true},
		{[]bcc.Tag{{Key: "env"}}, true},
		{[]bcc.Tag{{Key: "empty"}}, true},
		{[]bcc.Tag{{Key: "env", Value: "prod"}}, false},
		{[]bcc.Tag{{Key: "owner"}}, false},
		{[]bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team", Value: "web"}}, true},
		{[]bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team", Value: "db"}}, false},
		// Values given for one key are alternatives; keys are ANDed.
		{[]bcc.Tag{{Key: "env", Value: "prod"}, {Key: "env", Value: "staging"}}, true},
		{[]bcc.Tag{{Key: "env", Value: "prod"}, {Key: "env", Value: "staging"}, {Key: "owner"}}, false},
		{[]bcc.Tag{{Key: "Env", Value: "staging"}}, false},
	} {
		if got := in.HasTags(tc.filters); got != tc.want {
			t.Errorf("HasTags(%v) = %v, want %v", tc.filters, got, tc.want)
		}
	}
}

// TestListAllInstancesIsBounded: a listing that matches more instances than
// its limit stops with ErrTooManyInstances after the page that passes it,
// instead of holding an account's every instance in memory.
func TestListAllInstancesIsBounded(t *testing.T) {
	c, api := newListPair(t, fleetOf(30))
	_, err := c.ListAllInstances(context.Background(), bcc.ListRequest{MaxKeys: 10, Limit: 15, Tags: []bcc.Tag{{Key: "env"}}})
	if !errors.Is(err, bcc.ErrTooManyInstances) || !strings.Contains(err.Error(), "narrow the tags") {
		t.Fatalf("err = %v", err)
	}
	if n := len(api.seen()); n != 2 {
		t.Errorf("%d pages read, want 2 (the second passes the limit)", n)
	}
}
