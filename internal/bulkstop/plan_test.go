package bulkstop_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/internal/guard"
)

// describer answers from a map, counting its calls.
type describer struct {
	known map[string]string // id → status
	calls int
	err   error
}

func (d *describer) DescribeInstances(_ context.Context, _ string, ids []string) (map[string]bcc.Instance, bcc.Response, error) {
	d.calls++
	if d.err != nil {
		return nil, bcc.Response{}, d.err
	}
	out := map[string]bcc.Instance{}
	for _, id := range ids {
		if s, ok := d.known[id]; ok {
			out[id] = bcc.Instance{ID: id, Status: s}
		}
	}
	return out, bcc.Response{}, nil
}

func TestForecast(t *testing.T) {
	res := bulkstop.Resolution{
		Targets: []bulkstop.Target{
			{ID: "i-run", ByID: true}, {ID: "i-stopped", ByID: true}, {ID: "i-held", ByID: true}, {ID: "i-gone", ByID: true},
			{ID: "i-listed", ByTag: true, Instance: bcc.Instance{ID: "i-listed", Status: "Stopping"}},
		},
		Skipped: []bulkstop.Skip{{ID: "i-p", Reason: bulkstop.SkipProtected, Detail: "listed in BCCSTOP_PROTECTED_INSTANCES"}},
	}
	d := &describer{known: map[string]string{"i-run": "Running", "i-stopped": "Stopped", "i-held": "Running"}}
	holds := []guard.Hold{{InstanceID: "i-held", By: "bob", Reason: "CHG-12", Until: time.Now().Add(time.Hour)}}
	got, err := bulkstop.Forecast(context.Background(), d, "", res, holds)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"succeeded", "forbidden", "rejected", "failed", "forbidden"}
	for i, e := range got {
		if e.Outcome != want[i] {
			t.Errorf("%s: %q (%s), want %q", res.Targets[i].ID, e.Outcome, e.Why, want[i])
		}
	}
	if d.calls != 1 || res.Targets[1].Instance.Status != "Stopped" {
		t.Errorf("%d describe calls, status %q", d.calls, res.Targets[1].Instance.Status)
	}
	if !strings.Contains(got[2].Why, "bob") || !strings.Contains(got[2].Why, "CHG-12") {
		t.Errorf("held: %q", got[2].Why)
	}
	line, n := bulkstop.PlanSummary(res, got)
	if n != 1 || line != "dry run: 5 commands would be published, none was: 1 would stop, 1 held (rejected), 2 not Running (forbidden), 1 no such instance (failed); 1 skipped (protected)" {
		t.Errorf("summary %q, %d would stop", line, n)
	}

	// Without a describer the status of the ids named is not read.
	named := func() bulkstop.Resolution {
		return bulkstop.Resolution{Targets: []bulkstop.Target{{ID: "i-run", ByID: true}, {ID: "i-stopped", ByID: true}}}
	}
	got, _ = bulkstop.Forecast(context.Background(), nil, "", named(), nil)
	if got[0].Outcome != bulkstop.ExpectUnknown || got[1].Outcome != bulkstop.ExpectUnknown {
		t.Errorf("without a describer: %+v", got)
	}
	if line, n := bulkstop.PlanSummary(bulkstop.Resolution{}, got); n != 2 || !strings.Contains(line, "2 status unknown") {
		t.Errorf("summary %q, %d", line, n)
	}
	if _, err := bulkstop.Forecast(context.Background(), &describer{err: errors.New("boom")}, "", named(), nil); err == nil {
		t.Errorf("a describe error is not returned")
	}
}
