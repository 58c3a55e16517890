package fakebcc_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/bccstop/bccstop/internal/fakebcc"
)

func batchCall(query, body string) rawCall {
	return rawCall{method: http.MethodPost, path: "/v2/instance/listByInstanceId", query: query, body: body}
}

func idsBody(ids ...string) string {
	b, _ := json.Marshal(map[string][]string{"instanceIds": ids})
	return string(b)
}

type batchPage struct {
	Marker      string `json:"marker"`
	IsTruncated bool   `json:"isTruncated"`
	NextMarker  string `json:"nextMarker"`
	MaxKeys     int    `json:"maxKeys"`
	Instances   []struct {
		ID, Status, PaymentTiming string
	} `json:"instances"`
}

func (p batchPage) String() string {
	var ids []string
	for _, in := range p.Instances {
		ids = append(ids, in.ID+"="+in.Status)
	}
	return fmt.Sprintf("[%s] truncated=%v next=%q marker=%q maxKeys=%d", strings.Join(ids, " "), p.IsTruncated, p.NextMarker, p.Marker, p.MaxKeys)
}

// TestDescribeBatch: the batch describe answers for the instances its body
// names that exist, in id order, paged by marker and maxKeys like the
// list; unknown ids are left out; each page is a call of its own in Stats
// and History, apart from single describes.
func TestDescribeBatch(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	for _, id := range []string{"i-a", "i-b", "i-c", "i-d", "i-e"} {
		fake.SetStatus(id, fakebcc.Running)
	}
	fake.SetStatus("i-c", fakebcc.Stopped)
	_ = fake.SetAttributes("i-e", fakebcc.Attributes{Prepaid: true})

	for _, tc := range []struct {
		name, query, body string
		want              string // the page
	}{
		{"some ids, one unknown, one twice", "", idsBody("i-c", "i-a", "i-nope", "i-a"),
			`[i-a=Running i-c=Stopped] truncated=false next="" marker="" maxKeys=1000`},
		{"only unknown ids", "", idsBody("i-nope", "i-zz"),
			`[] truncated=false next="" marker="" maxKeys=1000`},
		{"first page", "maxKeys=2", idsBody("i-e", "i-d", "i-c", "i-b", "i-a"),
			`[i-a=Running i-b=Running] truncated=true next="i-c" marker="" maxKeys=2`},
		{"second page", "marker=i-c&maxKeys=2", idsBody("i-e", "i-d", "i-c", "i-b", "i-a"),
			`[i-c=Stopped i-d=Running] truncated=true next="i-e" marker="i-c" maxKeys=2`},
		{"last page", "marker=i-e&maxKeys=2", idsBody("i-e", "i-d", "i-c", "i-b", "i-a"),
			`[i-e=Running] truncated=false next="" marker="i-e" maxKeys=2`},
		{"a marker that is no instance: from the next id", "marker=i-bb", idsBody("i-a", "i-c", "i-d"),
			`[i-c=Stopped i-d=Running] truncated=false next="" marker="i-bb" maxKeys=1000`},
		{"the body Baidu's Go SDK sends", "maxKeys=1000", `{"Marker":"","MaxKeys":0,"instanceIds":["i-b"]}`,
			`[i-b=Running] truncated=false next="" marker="" maxKeys=1000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fake.Stats()
			got := batchCall(tc.query, tc.body).send(t, srv.URL)
			if got.status != 200 {
				t.Fatalf("answer %d %s", got.status, got.body)
			}
			var page batchPage
			if err := json.Unmarshal(got.body, &page); err != nil {
				t.Fatal(err)
			}
			if page.String() != tc.want {
				t.Errorf("page %s\n     want %s", page, tc.want)
			}
			after := fake.Stats()
			if after.DescribeBatchCalls != before.DescribeBatchCalls+1 || after.DescribeCalls != before.DescribeCalls {
				t.Errorf("stats %+v after %+v: one batch call and no describe", after, before)
			}
		})
	}

	h := fake.History()
	if first := h[0]; first.Op != fakebcc.OpDescribeBatch || first.Status != 200 || !reflect.DeepEqual(first.Instances, []string{"i-c", "i-a", "i-nope"}) {
		t.Errorf("history's first call %+v", first)
	}
	// i-e was named by the three pages, i-a by those and two more calls,
	// i-nope by two calls (each counts, though neither answered for it).
	if calls := fake.CallsPerInstance(); calls["i-e"] != 3 || calls["i-a"] != 5 || calls["i-nope"] != 2 {
		t.Errorf("calls per instance %v", calls)
	}
	var page batchPage
	_ = json.Unmarshal(batchCall("", idsBody("i-e")).send(t, srv.URL).body, &page)
	if len(page.Instances) != 1 || page.Instances[0].PaymentTiming != "Prepaid" {
		t.Errorf("a prepaid instance: %s", page)
	}
}

// TestDescribeBatchRefuses: what the batch describe refuses, and with what.
func TestDescribeBatchRefuses(t *testing.T) {
	tooMany := make([]string, fakebcc.MaxDescribeIDs+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("i-%03d", i)
	}
	for _, tc := range []struct {
		name   string
		call   rawCall
		inject func(*fakebcc.Server)
		want   int
		code   string
	}{
		{"not JSON", batchCall("", `{"instanceIds":[`), nil, 400, "MalformedJSON"},
		{"ids not a list", batchCall("", `{"instanceIds":"i-a"}`), nil, 400, "InappropriateJSON"},
		{"an id not a string", batchCall("", `{"instanceIds":[7]}`), nil, 400, "InappropriateJSON"},
		{"no ids", batchCall("", `{}`), nil, 400, "InappropriateJSON"},
		{"an empty list", batchCall("", `{"instanceIds":[]}`), nil, 400, "InappropriateJSON"},
		{"an empty body", batchCall("", ""), nil, 400, "InappropriateJSON"},
		{"more than 100 ids", batchCall("", idsBody(tooMany...)), nil, 400, "InappropriateJSON"},
		{"exactly 100 ids", batchCall("", idsBody(tooMany[:100]...)), nil, 200, ""},
		{"an unknown field", batchCall("", `{"instanceIds":["i-a"],"zoneName":"cn-bj-a"}`), nil, 400, "InappropriateJSON"},
		{"a filter in the query", batchCall("tags=env:x", idsBody("i-a")), nil, 400, "InvalidURI"},
		{"maxKeys 0", batchCall("maxKeys=0", idsBody("i-a")), nil, 400, "InvalidURI"},
		{"maxKeys 1001", batchCall("maxKeys=1001", idsBody("i-a")), nil, 400, "InvalidURI"},
		{"GET", rawCall{method: http.MethodGet, path: "/v2/instance/listByInstanceId"}, nil, 405, "MethodNotAllowed"},
		{"an instance the key may not see", batchCall("", idsBody("i-a", "i-denied")), nil, 403, "AccessDenied"},
		{"an injected describe failure", batchCall("", idsBody("i-a", "i-b")),
			func(s *fakebcc.Server) { s.FailDescribe("i-b", 500, "InternalError") }, 500, "InternalError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakebcc.New(fakebcc.Options{Credentials: creds})
			srv := httptest.NewServer(fake)
			defer srv.Close()
			fake.Seed(fakebcc.Running, "i-a", "i-b", "i-denied")
			_ = fake.SetAttributes("i-denied", fakebcc.Attributes{Denied: true})
			if tc.inject != nil {
				tc.inject(fake)
			}
			got := tc.call.send(t, srv.URL)
			if got.status != tc.want || got.code != tc.code {
				t.Fatalf("answer %d %q (%s), want %d %q", got.status, got.code, got.body, tc.want, tc.code)
			}
			if tc.want == 405 {
				return // no operation: not a call
			}
			h := fake.History()
			if len(h) != 1 || h[0].Op != fakebcc.OpDescribeBatch || h[0].Status != tc.want || h[0].Code != tc.code {
				t.Errorf("history %+v", h)
			}
		})
	}
}
