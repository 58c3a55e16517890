package bulkstop_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

func TestParseTagFilters(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    []bcc.Tag
		wantErr []string // every one must appear in the error
	}{
		{nil, nil, nil},
		{[]string{"env=staging"}, []bcc.Tag{{Key: "env", Value: "staging"}}, nil},
		{[]string{"env=staging", "team"}, []bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team"}}, nil},
		{[]string{"env=prod", "env=staging"}, []bcc.Tag{{Key: "env", Value: "prod"}, {Key: "env", Value: "staging"}}, nil},
		{[]string{"env=staging", "env=staging"}, []bcc.Tag{{Key: "env", Value: "staging"}}, nil},
		{[]string{"owner=Ann Lee"}, []bcc.Tag{{Key: "owner", Value: "Ann Lee"}}, nil},
		{[]string{"expr=a=b"}, []bcc.Tag{{Key: "expr", Value: "a=b"}}, nil},
		{[]string{"部门=研发"}, []bcc.Tag{{Key: "部门", Value: "研发"}}, nil},
		{[]string{""}, nil, []string{`--tag ""`, "KEY=VALUE or KEY"}},
		{[]string{"=staging"}, nil, []string{`--tag "=staging"`, "empty key"}},
		{[]string{"env="}, nil, []string{`--tag "env="`, "KEY alone"}},
		{[]string{"env=a,b"}, nil, []string{`--tag "env=a,b"`, `","`}},
		{[]string{"env:staging"}, nil, []string{`--tag "env:staging"`, `":"`, "KEY=VALUE"}},
		{[]string{" env=staging"}, nil, []string{"space"}},
		{[]string{"env =staging"}, nil, []string{"space"}},
		{[]string{"env= staging"}, nil, []string{"space"}},
		{[]string{"env=ok", "=x", "y="}, nil, []string{"2 invalid --tag", `"=x"`, `"y="`}},
	} {
		got, err := bulkstop.ParseTagFilters(tc.args)
		if len(tc.wantErr) > 0 {
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%q: err = %v, want one mentioning %s", tc.args, err, w)
				}
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.args, got, err, tc.want)
		}
	}
}

// fakeLister answers ListAllInstances with a fixed list and records what it
// was asked.
type fakeLister struct {
	instances []bcc.Instance
	err       error
	asked     []bcc.ListRequest
}

func (f *fakeLister) ListAllInstances(_ context.Context, r bcc.ListRequest) ([]bcc.Instance, error) {
	f.asked = append(f.asked, r)
	return f.instances, f.err
}

func tagged(id string, kv ...string) bcc.Instance {
	in := bcc.Instance{ID: id, Name: "vm-" + id, Status: "Running"}
	for i := 0; i+1 < len(kv); i += 2 {
		in.Tags = append(in.Tags, bcc.Tag{Key: kv[i], Value: kv[i+1]})
	}
	return in
}

func TestResolveTargets(t *testing.T) {
	staging := []bcc.Tag{{Key: "env", Value: "staging"}}
	for _, tc := range []struct {
		name      string
		query     bulkstop.TargetQuery
		listed    []bcc.Instance
		listErr   error
		want      []string // target ids, in order
		wantSkip  []string // "id reason"
		byID      int
		byTag     int
		overlap   int
		wantList  bool
		wantError string
	}{
		{name: "ids only: no listing, order kept",
			query: bulkstop.TargetQuery{IDs: []string{"i-c", "i-a", "i-b"}},
			want:  []string{"i-c", "i-a", "i-b"}, byID: 3},
		{name: "ids repeated are targeted once",
			query: bulkstop.TargetQuery{IDs: []string{"i-a", "i-b", "i-a"}},
			want:  []string{"i-a", "i-b"}, byID: 2},
		{name: "tags only: sorted by id",
			query:  bulkstop.TargetQuery{Tags: staging},
			listed: []bcc.Instance{tagged("i-z", "env", "staging"), tagged("i-m", "env", "staging"), tagged("i-b", "env", "staging")},
			want:   []string{"i-b", "i-m", "i-z"}, byTag: 3, wantList: true},
		{name: "ids then tags, an instance found by both targeted once",
			query:  bulkstop.TargetQuery{IDs: []string{"i-x", "i-m"}, Tags: staging},
			listed: []bcc.Instance{tagged("i-z", "env", "staging"), tagged("i-m", "env", "staging")},
			want:   []string{"i-x", "i-m", "i-z"}, byID: 2, byTag: 2, overlap: 1, wantList: true},
		{name: "protected instances are skipped, from either source",
			query: bulkstop.TargetQuery{IDs: []string{"i-p1", "i-a"}, Tags: staging, Protected: []string{" i-p1", "i-p2 ", ""}},
			listed: []bcc.Instance{tagged("i-p2", "env", "staging"), tagged("i-b", "env", "staging"),
				tagged("i-p1", "env", "staging")},
			want: []string{"i-a", "i-b"}, wantSkip: []string{"i-p1 protected", "i-p2 protected"},
			byID: 2, byTag: 3, overlap: 1, wantList: true},
		{name: "a listed instance without the tags is skipped",
			query:  bulkstop.TargetQuery{Tags: []bcc.Tag{{Key: "env", Value: "staging"}, {Key: "team"}}},
			listed: []bcc.Instance{tagged("i-a", "env", "staging", "team", "web"), tagged("i-b", "env", "staging"), tagged("i-c", "env", "prod", "team", "db")},
			want:   []string{"i-a"}, wantSkip: []string{"i-b tag-mismatch", "i-c tag-mismatch"}, byTag: 3, wantList: true},
		{name: "an instance named explicitly is targeted whatever its tags",
			query:  bulkstop.TargetQuery{IDs: []string{"i-b"}, Tags: staging},
			listed: []bcc.Instance{tagged("i-b", "env", "prod")},
			want:   []string{"i-b"}, byID: 1, byTag: 1, overlap: 1, wantList: true},
		{name: "a listed id that is not an instance id is skipped",
			query:  bulkstop.TargetQuery{Tags: staging},
			listed: []bcc.Instance{tagged("i-a", "env", "staging"), tagged("bogus id", "env", "staging")},
			want:   []string{"i-a"}, wantSkip: []string{"bogus id invalid-id"}, byTag: 2, wantList: true},
		{name: "tags matching nothing",
			query: bulkstop.TargetQuery{Tags: staging},
			want:  nil, wantList: true},
		{name: "region goes to the listing",
			query:  bulkstop.TargetQuery{Tags: staging, Region: "gz"},
			listed: []bcc.Instance{tagged("i-a", "env", "staging")},
			want:   []string{"i-a"}, byTag: 1, wantList: true},
		{name: "nothing asked", query: bulkstop.TargetQuery{}, wantError: "no targets"},
		{name: "an invalid explicit id", query: bulkstop.TargetQuery{IDs: []string{"i-a", "nope"}}, wantError: `"nope"`},
		{name: "a bad tag filter", query: bulkstop.TargetQuery{Tags: []bcc.Tag{{Key: "a,b"}}}, wantError: `","`},
		{name: "listing fails", query: bulkstop.TargetQuery{IDs: []string{"i-a"}, Tags: staging},
			listErr: errors.New("boom"), wantError: "boom", wantList: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lister := &fakeLister{instances: tc.listed, err: tc.listErr}
			got, err := bulkstop.ResolveTargets(context.Background(), lister, tc.query)
			if (len(lister.asked) > 0) != tc.wantList {
				t.Fatalf("listed %d times, want listing %v", len(lister.asked), tc.wantList)
			}
			if tc.wantList && (!reflect.DeepEqual(lister.asked[0].Tags, tc.query.Tags) || lister.asked[0].Region != tc.query.Region) {
				t.Fatalf("asked %+v", lister.asked[0])
			}
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v, want one mentioning %s", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ids := got.IDs(); !slices.Equal(ids, tc.want) {
				t.Fatalf("targets %v, want %v", ids, tc.want)
			}
			var skips []string
			for _, s := range got.Skipped {
				if s.Detail == "" {
					t.Errorf("skip of %s has no detail", s.ID)
				}
				skips = append(skips, s.ID+" "+string(s.Reason))
			}
			if !reflect.DeepEqual(skips, tc.wantSkip) {
				t.Fatalf("skipped %v, want %v", skips, tc.wantSkip)
			}
			if got.FoundByID != tc.byID || got.FoundByTag != tc.byTag || got.FoundByBoth != tc.overlap {
				t.Fatalf("found by id %d, by tag %d, by both %d; want %d, %d, %d", got.FoundByID, got.FoundByTag, got.FoundByBoth, tc.byID, tc.byTag, tc.overlap)
			}
		})
	}
}

// TestResolveTargetsSources: each target says where it came from, and one
// found by the listing carries what the listing said of it.
func TestResolveTargetsSources(t *testing.T) {
	lister := &fakeLister{instances: []bcc.Instance{tagged("i-b", "env", "staging"), tagged("i-c", "env", "staging")}}
	got, err := bulkstop.ResolveTargets(context.Background(), lister, bulkstop.TargetQuery{IDs: []string{"i-a", "i-b"}, Tags: []bcc.Tag{{Key: "env"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []bulkstop.Target{
		{ID: "i-a", ByID: true, Instance: bcc.Instance{ID: "i-a"}},
		{ID: "i-b", ByID: true, ByTag: true, Instance: tagged("i-b", "env", "staging")},
		{ID: "i-c", ByTag: true, Instance: tagged("i-c", "env", "staging")},
	}
	if !reflect.DeepEqual(got.Targets, want) {
		t.Fatalf("targets = %+v", got.Targets)
	}
}

// TestResolveTargetsFleet: 2,500 instances, 1,200 of them tagged
// env=staging (more than one list page), through the real client and the
// simulator: exactly those are targeted, in id order.
func TestResolveTargetsFleet(t *testing.T) {
	creds := bce.Credentials{AccessKeyID: "fleet-ak", SecretAccessKey: "fleet-sk"}
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var want []string
	for i := range 2500 {
		// Ids not in tagging order, so sorting is visible.
		id := fmt.Sprintf("i-%05d", (i*7919)%2500)
		fake.SetStatus(id, fakebcc.Running)
		tags := map[string]string{"team": "web"}
		switch {
		case i < 1200:
			tags["env"] = "staging"
			want = append(want, id)
		case i < 1800:
			tags["env"] = "prod"
		case i < 2000:
			tags = map[string]string{"staging": "env"}
		default:
			tags = nil
		}
		if err := fake.SetTags(id, tags); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	client, err := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	filters, err := bulkstop.ParseTagFilters([]string{"env=staging"})
	if err != nil {
		t.Fatal(err)
	}

	got, err := bulkstop.ResolveTargets(context.Background(), client, bulkstop.TargetQuery{Tags: filters})
	if err != nil {
		t.Fatal(err)
	}
	if ids := got.IDs(); !slices.Equal(ids, want) {
		t.Fatalf("%d targets, want the %d tagged (first %v)", len(ids), len(want), ids[:min(3, len(ids))])
	}
	if got.FoundByTag != 1200 || len(got.Skipped) != 0 {
		t.Fatalf("found %d by tag, skipped %v", got.FoundByTag, got.Skipped)
	}
	if calls := fake.Stats().ListCalls; calls != 2 {
		t.Fatalf("%d list calls, want 2 pages of at most 1000", calls)
	}

	// With explicit ids (one of them tagged) and protected instances among
	// the tagged ones.
	protected := []string{want[0], want[600], want[1199]}
	explicit := []string{"i-99999", want[5]}
	got, err = bulkstop.ResolveTargets(context.Background(), client, bulkstop.TargetQuery{IDs: explicit, Tags: filters, Protected: protected})
	if err != nil {
		t.Fatal(err)
	}
	ids := got.IDs()
	if len(ids) != 1200-3+1 || ids[0] != "i-99999" || ids[1] != want[5] || slices.Contains(ids, want[600]) {
		t.Fatalf("%d targets starting %v", len(ids), ids[:3])
	}
	if len(got.Skipped) != 3 || got.FoundByID != 2 || got.FoundByTag != 1200 || got.FoundByBoth != 1 {
		t.Fatalf("skipped %d, found %d by id, %d by tag, %d by both", len(got.Skipped), got.FoundByID, got.FoundByTag, got.FoundByBoth)
	}
}
