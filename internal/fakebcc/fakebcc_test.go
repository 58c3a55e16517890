package fakebcc_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdkbce "github.com/baidubce/bce-sdk-go/bce"
	sdkbcc "github.com/baidubce/bce-sdk-go/services/bcc"
	sdkapi "github.com/baidubce/bce-sdk-go/services/bcc/api"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

var creds = bce.Credentials{AccessKeyID: "test-ak", SecretAccessKey: "test-sk"}

// TestOfficialSDKWorksAgainstSimulator: Baidu's own Go SDK client stops and
// describes instances on the simulator, so the simulator speaks the same
// protocol (signature included) as the real service.
func TestOfficialSDKWorksAgainstSimulator(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds, StopDuration: 50 * time.Millisecond})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	fake.SetStatus("i-sdk1", fakebcc.Running)

	client, err := sdkbcc.NewClient(creds.AccessKeyID, creds.SecretAccessKey, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client.Config.Retry = sdkbce.NewNoRetryPolicy()
	if err := client.StopInstance("i-sdk1", false); err != nil {
		t.Fatalf("SDK stop: %v", err)
	}
	detail, err := client.GetInstanceDetail("i-sdk1")
	if err != nil {
		t.Fatalf("SDK describe: %v", err)
	}
	if detail.Instance.InstanceId != "i-sdk1" || detail.Instance.Status != "Stopping" {
		t.Fatalf("SDK describe = %+v", detail.Instance)
	}
	time.Sleep(80 * time.Millisecond)
	if detail, _ := client.GetInstanceDetail("i-sdk1"); detail.Instance.Status != "Stopped" {
		t.Fatalf("status after StopDuration = %s, want Stopped", detail.Instance.Status)
	}
	err = client.StopInstance("i-sdk1", true)
	var svcErr *sdkbce.BceServiceError
	if !errors.As(err, &svcErr) || svcErr.StatusCode != 409 || svcErr.Code != "Instance.StopInstanceOperationForbidden" || svcErr.RequestId == "" {
		t.Fatalf("SDK second stop = %v", err)
	}

	bad, _ := sdkbcc.NewClient(creds.AccessKeyID, "not-the-secret", srv.URL)
	bad.Config.Retry = sdkbce.NewNoRetryPolicy()
	if err := bad.StopInstance("i-sdk1", false); !errors.As(err, &svcErr) || svcErr.Code != "SignatureDoesNotMatch" {
		t.Fatalf("SDK with wrong secret = %v", err)
	}
}

func TestUnknownAndAutoCreate(t *testing.T) {
	for _, auto := range []bool{false, true} {
		fake := fakebcc.New(fakebcc.Options{Credentials: creds, AutoCreate: auto})
		srv := httptest.NewServer(fake)
		c, _ := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
		_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-new"})
		var apiErr *bcc.APIError
		switch {
		case auto && err != nil:
			t.Errorf("auto-create: %v", err)
		case !auto && (!errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "NoSuchObject"):
			t.Errorf("unknown instance: %v", err)
		}
		srv.Close()
	}
}

func TestInjectedFaults(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c, _ := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds, Timeout: 200 * time.Millisecond})

	fake.SetStatus("i-f", fakebcc.Running)
	fake.FailInstance("i-f", 503, "ServiceUnavailable")
	_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-f"})
	if transient, _ := bcc.Classify(err); !transient {
		t.Fatalf("FailInstance 503: %v", err)
	}
	fake.ClearFailure("i-f")

	// Every call times out, and each one has already stopped the instance:
	// the client sees a timeout, the instance is Stopping.
	fake.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{fakebcc.Timeout}, AfterApply: 1})
	_, err = c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-f"})
	var te *bcc.TransportError
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("timeout fault: %v", err)
	}
	if st, _ := fake.Status("i-f"); st != fakebcc.Stopping {
		t.Fatalf("status after an applied fault = %s", st)
	}
	if s := fake.Stats(); s.StopCalls != 2 || s.Injected != 2 || s.StopsApplied != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestRejectsUnsignedAndMalformed(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v2/instance/i-a?stop", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("X-Bce-Request-Id") == "" {
		t.Fatalf("unsigned request: %d", resp.StatusCode)
	}
}

func TestSeedFile(t *testing.T) {
	dir := t.TempDir()
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	lines := filepath.Join(dir, "seed.txt")
	os.WriteFile(lines, []byte("# fleet\ni-a Running\n\ni-b Stopped\n"), 0o600)
	if n, err := fake.LoadSeedFile(lines); err != nil || n != 2 {
		t.Fatalf("lines: %d, %v", n, err)
	}
	js := filepath.Join(dir, "seed.json")
	os.WriteFile(js, []byte(`{"i-c":"Stopping"}`), 0o600)
	if n, err := fake.LoadSeedFile(js); err != nil || n != 1 {
		t.Fatalf("json: %d, %v", n, err)
	}
	if st, _ := fake.Status("i-b"); st != fakebcc.Stopped {
		t.Fatalf("i-b = %s", st)
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("i-a Sleeping\n"), 0o600)
	if _, err := fake.LoadSeedFile(bad); err == nil {
		t.Fatal("bad status accepted")
	}
}

// TestSeedFileTags: both seed forms carry tags; the old forms still load.
func TestSeedFileTags(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       map[string]string // id → "status env=… …" (tags sorted)
		wantErr    string
	}{
		{"lines", "i-a Running env=staging team=web\ni-b Stopped\ni-c Running empty=\n",
			map[string]string{"i-a": "Running env=staging team=web", "i-b": "Stopped", "i-c": "Running empty="}, ""},
		{"json, both value forms", `{"i-a":{"status":"Running","tags":{"env":"staging","team":"web"}},"i-b":"Stopped","i-c":{"status":"Stopping"}}`,
			map[string]string{"i-a": "Running env=staging team=web", "i-b": "Stopped", "i-c": "Stopping"}, ""},
		{"json value with a space", `{"i-a":{"status":"Running","tags":{"owner":"Ann Lee"}}}`,
			map[string]string{"i-a": "Running owner=Ann Lee"}, ""},
		{"line tag without =", "i-a Running env\n", nil, `key=value`},
		{"line tag with empty key", "i-a Running =x\n", nil, "empty"},
		{"line tag with colon", "i-a Running env=a:b\n", nil, "':'"},
		{"line tag twice", "i-a Running env=a env=b\n", nil, "twice"},
		{"json without status", `{"i-a":{"tags":{"env":"x"}}}`, nil, "status"},
		{"json unknown field", `{"i-a":{"status":"Running","tag":{"env":"x"}}}`, nil, "unknown field"},
		{"json bad status", `{"i-a":{"status":"Sleeping"}}`, nil, "Sleeping"},
		{"json bad tag", `{"i-a":{"status":"Running","tags":{"a,b":"x"}}}`, nil, "not allowed"},
		{"json number", `{"i-a":3}`, nil, "i-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "seed")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			fake := fakebcc.New(fakebcc.Options{Credentials: creds})
			n, err := fake.LoadSeedFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %s", err, tc.wantErr)
				}
				if _, ok := fake.Status("i-a"); ok {
					t.Fatal("a seed file with an error was partly applied")
				}
				return
			}
			if err != nil || n != len(tc.want) {
				t.Fatalf("%d, %v", n, err)
			}
			for id, want := range tc.want {
				st, _ := fake.Status(id)
				tags, _ := fake.Tags(id)
				got := []string{st}
				for _, k := range slices.Sorted(maps.Keys(tags)) {
					got = append(got, k+"="+tags[k])
				}
				if strings.Join(got, " ") != want {
					t.Errorf("%s = %q, want %q", id, strings.Join(got, " "), want)
				}
			}
		})
	}
}

// TestOfficialSDKListsByTag: Baidu's own Go SDK lists instances by tag on
// the simulator, page after page (its request, encoding, signature and
// answer model included), and sees the same set the tags select.
func TestOfficialSDKListsByTag(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	want := map[string]bool{}     // env=staging
	wantBoth := map[string]bool{} // env=staging and any team
	for i := range 60 {
		id := fmt.Sprintf("i-sdk%03d", i)
		fake.SetStatus(id, fakebcc.Running)
		tags := map[string]string{}
		if i%5 != 0 {
			tags["env"] = "staging"
			want[id] = true
		} else {
			tags["env"] = "prod"
		}
		if i%2 == 0 {
			tags["team"] = fmt.Sprint("t", i%3)
			if want[id] {
				wantBoth[id] = true
			}
		}
		if err := fake.SetTags(id, tags); err != nil {
			t.Fatal(err)
		}
	}
	fake.SetStatus("i-sdk001", fakebcc.Stopped)

	client, err := sdkbcc.NewClient(creds.AccessKeyID, creds.SecretAccessKey, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client.Config.Retry = sdkbce.NewNoRetryPolicy()
	listAll := func(tags string, maxKeys int) (map[string]sdkapi.InstanceModel, int) {
		t.Helper()
		got := map[string]sdkapi.InstanceModel{}
		args := &sdkapi.ListInstanceArgs{Tags: tags, MaxKeys: maxKeys}
		for pages := 1; ; pages++ {
			res, err := client.ListInstances(args)
			if err != nil {
				t.Fatalf("SDK list %q page %d: %v", tags, pages, err)
			}
			if res.Marker != args.Marker || maxKeys != 0 && (res.MaxKeys != maxKeys || len(res.Instances) > maxKeys) {
				t.Fatalf("page %d: marker %q maxKeys %d, %d instances", pages, res.Marker, res.MaxKeys, len(res.Instances))
			}
			for _, in := range res.Instances {
				if _, dup := got[in.InstanceId]; dup {
					t.Fatalf("%s listed twice", in.InstanceId)
				}
				got[in.InstanceId] = in
			}
			if !res.IsTruncated {
				return got, pages
			}
			args.Marker = res.NextMarker
		}
	}

	got, pages := listAll("env:staging", 7)
	if len(got) != len(want) || pages != (len(want)+6)/7 {
		t.Fatalf("env:staging: %d instances in %d pages, want %d in %d", len(got), pages, len(want), (len(want)+6)/7)
	}
	for id := range want {
		in, ok := got[id]
		if !ok {
			t.Fatalf("%s missing", id)
		}
		var env string
		for _, tag := range in.Tags {
			if tag.TagKey == "env" {
				env = tag.TagValue
			}
		}
		if env != "staging" || in.InstanceName != id {
			t.Fatalf("%s: %+v", id, in)
		}
	}
	if got["i-sdk001"].Status != sdkapi.InstanceStatusStopped || got["i-sdk002"].Status != sdkapi.InstanceStatusRunning {
		t.Fatalf("statuses: %s, %s", got["i-sdk001"].Status, got["i-sdk002"].Status)
	}

	got, _ = listAll("env:staging,team", 5)
	if len(got) != len(wantBoth) {
		t.Fatalf("env:staging,team: %d, want %d", len(got), len(wantBoth))
	}
	for id := range wantBoth {
		if _, ok := got[id]; !ok {
			t.Fatalf("%s missing from env:staging,team", id)
		}
	}
	if got, pages := listAll("", 0); len(got) != 60 || pages != 1 { // the SDK sends maxKeys=1000
		t.Fatalf("no filter: %d in %d pages", len(got), pages)
	}

	// What the simulator does not implement is refused, not ignored.
	_, err = client.ListInstances(&sdkapi.ListInstanceArgs{ZoneName: "cn-bj-a"})
	var svcErr *sdkbce.BceServiceError
	if !errors.As(err, &svcErr) || svcErr.StatusCode != 400 || svcErr.Code != "InvalidURI" {
		t.Fatalf("SDK list by zone = %v", err)
	}
	bad, _ := sdkbcc.NewClient(creds.AccessKeyID, "not-the-secret", srv.URL)
	bad.Config.Retry = sdkbce.NewNoRetryPolicy()
	if _, err := bad.ListInstances(&sdkapi.ListInstanceArgs{Tags: "env:staging"}); !errors.As(err, &svcErr) || svcErr.Code != "SignatureDoesNotMatch" {
		t.Fatalf("SDK list with wrong secret = %v", err)
	}
}

// TestOfficialSDKGetsTheSameAnswers: Baidu's own Go SDK client gets each
// answer of the simulator as a BceServiceError with the status, code and
// request id the real service would give, and the instance's state does
// not change.
func TestOfficialSDKGetsTheSameAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  fakebcc.Options
		attrs fakebcc.Attributes
		creds bce.Credentials // creds when zero
		call  func(*sdkbcc.Client) error
		want  int
		code  string
	}{
		{"prepaid, stop with no charge", fakebcc.Options{}, fakebcc.Attributes{Prepaid: true}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return c.StopInstanceWithNoCharge("i-x", false, true) }, 403, "Bcc.PrePayCannotStopWithNoCharge"},
		{"local disks, stop with no charge", fakebcc.Options{}, fakebcc.Attributes{LocalDisk: true}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return c.StopInstanceWithNoCharge("i-x", true, true) }, 403, "Bcc.Rocv1CannotStopWithNoCharge"},
		{"type without no-charge stop", fakebcc.Options{}, fakebcc.Attributes{NoChargeUnsupported: true}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return c.StopInstanceWithNoCharge("i-x", false, true) }, 403, "Bcc.InstanceTypeNotSupportException"},
		{"denied, stop", fakebcc.Options{}, fakebcc.Attributes{Denied: true}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return c.StopInstance("i-x", false) }, 403, "AccessDenied"},
		{"denied, describe", fakebcc.Options{}, fakebcc.Attributes{Denied: true}, bce.Credentials{},
			func(c *sdkbcc.Client) error { _, err := c.GetInstanceDetail("i-x"); return err }, 403, "AccessDenied"},
		{"unknown instance, stop", fakebcc.Options{}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return c.StopInstance("i-unknown", false) }, 404, "NoSuchObject"},
		{"unknown instance, describe", fakebcc.Options{}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { _, err := c.GetInstanceDetail("i-unknown"); return err }, 404, "NoSuchObject"},
		{"body not JSON", fakebcc.Options{}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return sdkapi.StopInstance(c, "i-x", mustBody(t, `{"forceStop":`)) }, 400, "MalformedJSON"},
		{"body of a wrong type", fakebcc.Options{}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return sdkapi.StopInstance(c, "i-x", mustBody(t, `{"forceStop":1}`)) }, 400, "InappropriateJSON"},
		{"unknown access key", fakebcc.Options{}, fakebcc.Attributes{}, bce.Credentials{AccessKeyID: "other-ak", SecretAccessKey: "test-sk"},
			func(c *sdkbcc.Client) error { return c.StopInstance("i-x", false) }, 403, "InvalidAccessKeyId"},
		{"wrong secret, describe", fakebcc.Options{}, fakebcc.Attributes{}, bce.Credentials{AccessKeyID: "test-ak", SecretAccessKey: "not-the-secret"},
			func(c *sdkbcc.Client) error { _, err := c.GetInstanceDetail("i-x"); return err }, 403, "SignatureDoesNotMatch"},
		{"clock off by an hour", fakebcc.Options{ClockSkew: time.Hour}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { return c.StopInstance("i-x", false) }, 400, "RequestExpired"},
		{"over the rate", fakebcc.Options{MaxRate: 1}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { _, _ = c.GetInstanceDetail("i-x"); return c.StopInstance("i-x", false) }, 429, "RequestLimitExceeded"},
		{"over the rate, 503", fakebcc.Options{MaxRate: 1, ThrottleStatus: 503}, fakebcc.Attributes{}, bce.Credentials{},
			func(c *sdkbcc.Client) error { _, _ = c.GetInstanceDetail("i-x"); return c.StopInstance("i-x", false) }, 503, "ServiceUnavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Credentials = creds
			fake := fakebcc.New(opts)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			fake.SetStatus("i-x", fakebcc.Running)
			_ = fake.SetAttributes("i-x", tc.attrs)
			cr := tc.creds
			if !cr.Valid() {
				cr = creds
			}
			client, err := sdkbcc.NewClient(cr.AccessKeyID, cr.SecretAccessKey, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			client.Config.Retry = sdkbce.NewNoRetryPolicy()
			err = tc.call(client)
			var svcErr *sdkbce.BceServiceError
			if !errors.As(err, &svcErr) || svcErr.StatusCode != tc.want || svcErr.Code != tc.code || svcErr.RequestId == "" {
				t.Fatalf("SDK got %v, want %d %s", err, tc.want, tc.code)
			}
			if st, _ := fake.Status("i-x"); st != fakebcc.Running {
				t.Errorf("i-x is %s after a refused call", st)
			}
		})
	}
}

func mustBody(t *testing.T, s string) *sdkbce.Body {
	t.Helper()
	b, err := sdkbce.NewBodyFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOfficialSDKDescribesByIDs: Baidu's own Go SDK describes instances by
// id on the simulator (ListInstanceByInstanceIds: ids in the body, marker
// and maxKeys in the query), page after page; ids of no instance are left
// out, not an error.
func TestOfficialSDKDescribesByIDs(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var ids []string
	for i := range 8 {
		id := fmt.Sprintf("i-sdk%d", i)
		ids = append(ids, id)
		fake.SetStatus(id, fakebcc.Running)
	}
	fake.SetStatus("i-sdk3", fakebcc.Stopped)
	asked := append([]string{"i-gone", "i-also-gone"}, ids...)

	client, err := sdkbcc.NewClient(creds.AccessKeyID, creds.SecretAccessKey, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client.Config.Retry = sdkbce.NewNoRetryPolicy()
	got := map[string]sdkapi.InstanceModel{}
	args := &sdkapi.ListInstanceByInstanceIdArgs{InstanceIds: asked, MaxKeys: 3}
	pages := 0
	for {
		pages++
		res, err := client.ListInstanceByInstanceIds(args)
		if err != nil {
			t.Fatalf("SDK batch describe, page %d: %v", pages, err)
		}
		if res.Marker != args.Marker || res.MaxKeys != 3 || len(res.Instances) > 3 {
			t.Fatalf("page %d: marker %q maxKeys %d, %d instances", pages, res.Marker, res.MaxKeys, len(res.Instances))
		}
		for _, in := range res.Instances {
			got[in.InstanceId] = in
		}
		if !res.IsTruncated {
			break
		}
		args.Marker = res.NextMarker
	}
	if pages != 3 || len(got) != 8 {
		t.Fatalf("%d instances in %d pages, want 8 in 3", len(got), pages)
	}
	if got["i-sdk3"].Status != sdkapi.InstanceStatusStopped || got["i-sdk0"].Status != sdkapi.InstanceStatusRunning {
		t.Errorf("statuses %s, %s", got["i-sdk3"].Status, got["i-sdk0"].Status)
	}
	if s := fake.Stats(); s.DescribeBatchCalls != 3 || s.DescribeCalls != 0 {
		t.Errorf("stats %+v", s)
	}
	res, err := client.ListInstanceByInstanceIds(&sdkapi.ListInstanceByInstanceIdArgs{InstanceIds: []string{"i-gone"}})
	if err != nil || len(res.Instances) != 0 || res.IsTruncated {
		t.Errorf("only unknown ids: %+v, %v", res, err)
	}
}

// TestSeedFileAttributes: both seed forms give instances attributes (the
// line form as attr:NAME, which no tag can be mistaken for), any status the
// API reports, and a file with any mistake changes nothing.
func TestSeedFileAttributes(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       map[string]string // id → "status tags… attrs…"
		wantErr    string
	}{
		{"lines", "i-a Running env=staging attr:prepaid attr:denied\ni-b Stopped attr:localDisk\ni-c Running attr:noChargeUnsupported team=web\ni-d Running\n",
			map[string]string{"i-a": "Running env=staging prepaid denied", "i-b": "Stopped localDisk", "i-c": "Running team=web noChargeUnsupported", "i-d": "Running"}, ""},
		{"json", `{"i-a":{"status":"Running","tags":{"env":"staging"},"prepaid":true,"denied":true},"i-b":{"status":"Stopped","localDisk":true,"noChargeUnsupported":true},"i-c":"Running","i-d":{"status":"Running","prepaid":false}}`,
			map[string]string{"i-a": "Running env=staging prepaid denied", "i-b": "Stopped localDisk noChargeUnsupported", "i-c": "Running", "i-d": "Running"}, ""},
		{"every status the API reports", "i-a Starting\ni-b Recycled\ni-c ChangeVpc\ni-d Error\n",
			map[string]string{"i-a": "Starting", "i-b": "Recycled", "i-c": "ChangeVpc", "i-d": "Error"}, ""},
		{"a status the API does not report", "i-a Running\ni-b Paused\n", nil, `"Paused"`},
		{"an unknown attribute", "i-a Running attr:fast\n", nil, `attribute "fast": want prepaid, localDisk, noChargeUnsupported or denied`},
		{"an attribute with a value", "i-a Running attr:prepaid=true\n", nil, `"prepaid=true"`},
		{"an attribute twice", "i-a Running attr:denied attr:denied\n", nil, "twice"},
		{"a mistake on the last line", "i-a Running attr:prepaid\ni-b Running attr:Prepaid\n", nil, `:2: attribute "Prepaid"`},
		{"json attribute not a bool", `{"i-a":{"status":"Running","prepaid":"yes"}}`, nil, "i-a"},
		{"json unknown attribute", `{"i-a":{"status":"Running","fast":true}}`, nil, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "seed")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			fake := fakebcc.New(fakebcc.Options{Credentials: creds})
			n, err := fake.LoadSeedFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %s", err, tc.wantErr)
				}
				if _, ok := fake.Status("i-a"); ok {
					t.Fatal("a seed file with an error was partly applied")
				}
				return
			}
			if err != nil || n != len(tc.want) {
				t.Fatalf("%d, %v", n, err)
			}
			for id, want := range tc.want {
				st, _ := fake.Status(id)
				tags, _ := fake.Tags(id)
				attrs, _ := fake.Attributes(id)
				got := []string{st}
				for _, k := range slices.Sorted(maps.Keys(tags)) {
					got = append(got, k+"="+tags[k])
				}
				for _, a := range []struct {
					name string
					on   bool
				}{{"prepaid", attrs.Prepaid}, {"localDisk", attrs.LocalDisk}, {"noChargeUnsupported", attrs.NoChargeUnsupported}, {"denied", attrs.Denied}} {
					if a.on {
						got = append(got, a.name)
					}
				}
				if strings.Join(got, " ") != want {
					t.Errorf("%s = %q, want %q", id, strings.Join(got, " "), want)
				}
			}
		})
	}
}
