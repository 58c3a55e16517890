package fakebcc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

// signedGet sends GET path?rawQuery to the simulator, signed with creds,
// and returns the status and the decoded body.
func signedGet(t *testing.T, base, path, rawQuery string, c bce.Credentials) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = rawQuery
	bce.NewSigner(c, 0).Sign(req, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	if resp.Header.Get("X-Bce-Request-Id") == "" {
		t.Fatal("no x-bce-request-id")
	}
	return resp.StatusCode, body
}

// tagFleet: i-00 … i-09; even ones env=staging, multiples of 3 team=web,
// i-07 env=prod; i-09 Stopped.
func tagFleet(t *testing.T) (*fakebcc.Server, string) {
	t.Helper()
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	for i := range 10 {
		id := fmt.Sprintf("i-%02d", i)
		fake.SetStatus(id, fakebcc.Running)
		tags := map[string]string{}
		if i%2 == 0 {
			tags["env"] = "staging"
		}
		if i%3 == 0 {
			tags["team"] = "web"
		}
		if i == 7 {
			tags["env"] = "prod"
		}
		if err := fake.SetTags(id, tags); err != nil {
			t.Fatal(err)
		}
	}
	fake.SetStatus("i-09", fakebcc.Stopped)
	return fake, srv.URL
}

func ids(in []bcc.Instance) string {
	var s []string
	for _, i := range in {
		s = append(s, i.ID)
	}
	return strings.Join(s, ",")
}

// TestListFiltersByTags: keys are ANDed, values given for one key are
// alternatives, a key alone matches any value; the order is by id.
func TestListFiltersByTags(t *testing.T) {
	_, url := tagFleet(t)
	c, _ := bcc.New(bcc.Options{Endpoint: url, Credentials: creds})
	for _, tc := range []struct {
		tags []bcc.Tag
		want string
	}{
		{nil, "i-00,i-01,i-02,i-03,i-04,i-05,i-06,i-07,i-08,i-09"},
		{[]bcc.Tag{{Key: "env", Value: "staging"}}, "i-00,i-02,i-04,i-06,i-08"},
		{[]bcc.Tag{{Key: "env"}}, "i-00,i-02,i-04,i-06,i-07,i-08"},
		{[]bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team", Value: "web"}}, "i-00,i-06"},
		{[]bcc.Tag{{Key: "env", Value: "prod"}, {Key: "env", Value: "staging"}}, "i-00,i-02,i-04,i-06,i-07,i-08"},
		{[]bcc.Tag{{Key: "env", Value: "prod"}, {Key: "team"}}, ""},
		{[]bcc.Tag{{Key: "team"}}, "i-00,i-03,i-06,i-09"},
		{[]bcc.Tag{{Key: "owner"}}, ""},
		{[]bcc.Tag{{Key: "ENV"}}, ""},
	} {
		page, _, err := c.ListInstances(context.Background(), bcc.ListRequest{Tags: tc.tags})
		if err != nil {
			t.Fatalf("%v: %v", tc.tags, err)
		}
		if got := ids(page.Instances); got != tc.want {
			t.Errorf("%v: got %s, want %s", tc.tags, got, tc.want)
		}
		if page.IsTruncated || page.NextMarker != "" || page.MaxKeys != 1000 {
			t.Errorf("%v: page = %+v", tc.tags, page)
		}
	}
}

// TestListAnswer: each instance as the real API describes it, with its
// status (which moves on from Stopping) and its tags.
func TestListAnswer(t *testing.T) {
	fake, url := tagFleet(t)
	c, _ := bcc.New(bcc.Options{Endpoint: url, Credentials: creds})
	page, _, err := c.ListInstances(context.Background(), bcc.ListRequest{Tags: []bcc.Tag{{Key: "team"}}, MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []bcc.Instance{
		{ID: "i-00", Name: "i-00", Status: "Running", Tags: []bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team", Value: "web"}}},
		{ID: "i-03", Name: "i-03", Status: "Running", Tags: []bcc.Tag{{Key: "team", Value: "web"}}},
	}
	if !reflect.DeepEqual(page.Instances, want) {
		t.Fatalf("instances = %+v", page.Instances)
	}
	if st := fake.Stats(); st.ListCalls != 1 {
		t.Fatalf("stats = %+v", st)
	}
	// Describe shows the tags too, and untagged instances carry an empty list.
	in, _, err := c.DescribeInstance(context.Background(), "", "i-06")
	if err != nil || len(in.Tags) != 2 {
		t.Fatalf("describe = %+v, %v", in, err)
	}
	_, body := signedGet(t, url, "/v2/instance", "tags=team&maxKeys=1&marker=i-01", creds)
	first := body["instances"].([]any)[0].(map[string]any)
	if first["id"] != "i-03" || first["status"] != "Running" {
		t.Fatalf("first = %v", first)
	}
	_, body = signedGet(t, url, "/v2/instance", "marker=i-01&maxKeys=1", creds)
	if tags, ok := body["instances"].([]any)[0].(map[string]any)["tags"].([]any); !ok || len(tags) != 0 {
		t.Fatalf("untagged instance: tags = %v", body["instances"])
	}
}

// TestListPages: marker is the id a page starts from, nextMarker the first
// id of the next page, present only while isTruncated.
func TestListPages(t *testing.T) {
	_, url := tagFleet(t)
	for _, tc := range []struct {
		query      string
		want       string
		truncated  bool
		nextMarker string
		maxKeys    float64
	}{
		{"maxKeys=3", "i-00,i-01,i-02", true, "i-03", 3},
		{"maxKeys=3&marker=i-03", "i-03,i-04,i-05", true, "i-06", 3},
		{"maxKeys=3&marker=i-09", "i-09", false, "", 3},
		{"maxKeys=4&marker=i-08", "i-08,i-09", false, "", 4},
		{"maxKeys=2&marker=i-025", "i-03,i-04", true, "i-05", 2}, // a marker that is no id starts after it
		{"maxKeys=2&marker=i-99", "", false, "", 2},
		{"maxKeys=1000", "i-00,i-01,i-02,i-03,i-04,i-05,i-06,i-07,i-08,i-09", false, "", 1000},
		{"maxKeys=10", "i-00,i-01,i-02,i-03,i-04,i-05,i-06,i-07,i-08,i-09", false, "", 10},
		{"maxKeys=9", "i-00,i-01,i-02,i-03,i-04,i-05,i-06,i-07,i-08", true, "i-09", 9},
		{"tags=env%3Astaging&maxKeys=2", "i-00,i-02", true, "i-04", 2},
		{"tags=env%3Astaging&maxKeys=2&marker=i-04", "i-04,i-06", true, "i-08", 2},
		{"tags=env%3Astaging&maxKeys=2&marker=i-08", "i-08", false, "", 2},
		{"marker=", "i-00,i-01,i-02,i-03,i-04,i-05,i-06,i-07,i-08,i-09", false, "", 1000},
	} {
		status, body := signedGet(t, url, "/v2/instance", tc.query, creds)
		if status != 200 {
			t.Fatalf("%s: %d %v", tc.query, status, body)
		}
		var got []string
		for _, in := range body["instances"].([]any) {
			got = append(got, in.(map[string]any)["id"].(string))
		}
		next, hasNext := body["nextMarker"]
		if strings.Join(got, ",") != tc.want || body["isTruncated"] != tc.truncated || body["maxKeys"] != tc.maxKeys ||
			hasNext != tc.truncated || tc.truncated && next != tc.nextMarker {
			t.Errorf("%s: got %v", tc.query, body)
		}
		if _, ok := body["marker"]; !ok {
			t.Errorf("%s: no marker in %v", tc.query, body)
		}
	}
}

// TestListIsStrict: an unsigned request, an unknown parameter, or a
// malformed value gets a BCE error body, never a list.
func TestListIsStrict(t *testing.T) {
	_, url := tagFleet(t)
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"zoneName=cn-bj-a", 400, "InvalidURI"},
		{"tag=env", 400, "InvalidURI"},
		{"maxkeys=10", 400, "InvalidURI"},
		{"stop", 400, "InvalidURI"},
		{"maxKeys=0", 400, "InvalidURI"},
		{"maxKeys=1001", 400, "InvalidURI"},
		{"maxKeys=-1", 400, "InvalidURI"},
		{"maxKeys=ten", 400, "InvalidURI"},
		{"maxKeys=", 400, "InvalidURI"},
		{"maxKeys=1&maxKeys=2", 400, "InvalidURI"},
		{"marker=i-01&marker=i-02", 400, "InvalidURI"},
		{"tags=", 400, "InvalidURI"},
		{"tags=env%2C%2Cteam", 400, "InvalidURI"},
		{"tags=%3Astaging", 400, "InvalidURI"},
		{"tags=env%3Aa%3Ab", 400, "InvalidURI"},
		{"tags=env%2C", 400, "InvalidURI"},
		{"tags=env&tags=team", 400, "InvalidURI"},
		{"maxKeys=%zz", 400, "InvalidURI"},
	} {
		status, body := signedGet(t, url, "/v2/instance", tc.query, creds)
		if status != tc.status || body["code"] != tc.code || body["message"] == "" || body["requestId"] == "" {
			t.Errorf("%q: %d %v, want %d %s", tc.query, status, body, tc.status, tc.code)
		}
	}
	status, body := signedGet(t, url, "/v2/instance", "", bce.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "wrong"})
	if status != 403 || body["code"] != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %d %v", status, body)
	}
	resp, err := http.Get(url + "/v2/instance")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unsigned: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v2/instance", nil)
	bce.NewSigner(creds, 0).Sign(req, time.Now())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST /v2/instance: %d", resp.StatusCode)
	}
}

func TestTagsAPI(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	if err := fake.SetTags("i-nope", map[string]string{"env": "x"}); err == nil {
		t.Fatal("tags set on an unknown instance")
	}
	fake.SetStatus("i-a", fakebcc.Running)
	for _, bad := range []map[string]string{{"": "x"}, {"a,b": "x"}, {"a:b": "x"}, {"env": "a,b"}, {"env": "a:b"}, {"env\n": "x"}} {
		if err := fake.SetTags("i-a", bad); err == nil {
			t.Errorf("tags %v accepted", bad)
		}
	}
	if err := fake.SetTags("i-a", map[string]string{"env": "staging", "empty": ""}); err != nil {
		t.Fatal(err)
	}
	fake.SetStatus("i-a", fakebcc.Stopped) // keeps the tags
	got, ok := fake.Tags("i-a")
	if !ok || !reflect.DeepEqual(got, map[string]string{"env": "staging", "empty": ""}) {
		t.Fatalf("tags = %v, %v", got, ok)
	}
	got["env"] = "changed"
	if again, _ := fake.Tags("i-a"); again["env"] != "staging" {
		t.Fatal("Tags returned the server's own map")
	}
}

func TestParseTagAssignment(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ids     []string
		tags    map[string]string
		wantErr string
	}{
		{"i-abc=env:staging", []string{"i-abc"}, map[string]string{"env": "staging"}, ""},
		{"i-a,i-b=env:staging,team:web", []string{"i-a", "i-b"}, map[string]string{"env": "staging", "team": "web"}, ""},
		{" i-a , i-b = env:staging , team:web ", []string{"i-a", "i-b"}, map[string]string{"env": "staging", "team": "web"}, ""},
		{"i-a=owner:Ann Lee", []string{"i-a"}, map[string]string{"owner": "Ann Lee"}, ""},
		{"i-a=env:", []string{"i-a"}, map[string]string{"env": ""}, ""},
		{"i-a=env", nil, nil, "KEY:VALUE"},
		{"i-a", nil, nil, "ID[,ID…]=KEY:VALUE"},
		{"=env:x", nil, nil, "no instance id"},
		{"i-a,,i-b=env:x", nil, nil, "empty instance id"},
		{"i-a=", nil, nil, "no tags"},
		{"i-a=env:x,,team:y", nil, nil, "KEY:VALUE"},
		{"i-a=env:x,env:y", nil, nil, "twice"},
		{"i-a=env:a:b", nil, nil, "not allowed"},
		{"i-a=:x", nil, nil, "empty"},
	} {
		ids, tags, err := fakebcc.ParseTagAssignment(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
				t.Errorf("%q: err = %v, want one quoting it and mentioning %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(ids, tc.ids) || !reflect.DeepEqual(tags, tc.tags) {
			t.Errorf("%q: %v, %v, %v", tc.in, ids, tags, err)
		}
	}
}
