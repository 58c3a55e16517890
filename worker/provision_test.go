package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/worker"
)

// TestFleetStartingTogetherLeavesUnchangedStreamsAlone: workers rolled out
// together, then restarted, provision the streams and the ledger bucket
// without rewriting any whose configuration is already right. (Rewriting
// them on every start is needless work for the server, and nats-server
// v2.15.2 races a stream update against a consumer being created on that
// stream: the race detector caught it when three workers started at once.)
// A configuration that did change is still applied, once.
func TestFleetStartingTogetherLeavesUnchangedStreamsAlone(t *testing.T) {
	h := newHarness(t, nil)
	updates := streamUpdates(t, h.nc)

	h.startWorkers(3)
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	if got := updates.drain(t); len(got) > 0 {
		t.Errorf("three workers starting on a fresh server updated %v; the first creates, the others find them as they are", got)
	}
	stored := publishAndWait(t, h, "fleet-1")

	h.startWorkers(3)
	if got := updates.drain(t); len(got) > 0 {
		t.Errorf("three more workers with the same configuration updated %v", got)
	}

	h.startWorkers(2, func(o *worker.Options) { o.ResultsMaxBytes = 512 << 20 })
	// Both may find the old configuration before either updates it.
	if got := slices.Compact(updates.drain(t)); fmt.Sprint(got) != "[BCCSTOP_RESULTS]" {
		t.Errorf("workers with a smaller BCCSTOP_RESULTS_MAX_BYTES updated %v, want BCCSTOP_RESULTS alone", got)
	}
	results, err := h.js.Stream(context.Background(), "BCCSTOP_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	if got := results.CachedInfo().Config.MaxBytes; got != 512<<20 {
		t.Errorf("results stream MaxBytes %d after the change, want %d", got, 512<<20)
	}
	if n := results.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("results stream holds %d messages after the update, want the 1 stored before it", n)
	}
	publishAndWait(t, h, "fleet-2")
	if again := h.wait("fleet-1")["fleet-1"]; again.Event.ID != stored.Event.ID {
		t.Errorf("fleet-1's result changed across the restarts: %s then %s", stored.Event.ID, again.Event.ID)
	}
}

// publishAndWait stops one fresh instance under command id and returns its
// result, which must be succeeded.
func publishAndWait(t *testing.T, h *harness, id string) testenv.Result {
	t.Helper()
	instance := "i-" + id
	h.sim.Seed("Running", instance)
	h.publish(fmt.Sprintf(`{"commandId":%q,"instanceId":%q,"forceStop":false}`, id, instance), nil)
	r := h.wait(id)[id]
	if r.Event.Data.Outcome != "succeeded" {
		t.Fatalf("%s: %s %s", id, r.Event.Data.Outcome, r.Event.Data.Code)
	}
	return r
}

// updateWatch sees the stream-update requests sent to the server (core NATS
// hands a copy to every subscriber of the API subject).
type updateWatch struct {
	nc  *nats.Conn
	sub *nats.Subscription
}

func streamUpdates(t *testing.T, nc *nats.Conn) *updateWatch {
	t.Helper()
	sub, err := nc.SubscribeSync("$JS.API.STREAM.UPDATE.*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &updateWatch{nc: nc, sub: sub}
}

// drain returns the names of the streams whose update was requested since
// the last drain. The workers had their answers before drain is called, so
// the server queued our copy of each request before it answers our flush.
func (u *updateWatch) drain(t *testing.T) []string {
	t.Helper()
	if err := u.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var updated []string
	for {
		msg, err := u.sub.NextMsg(time.Millisecond)
		if errors.Is(err, nats.ErrTimeout) {
			return updated
		}
		if err != nil {
			t.Fatal(err)
		}
		updated = append(updated, strings.TrimPrefix(msg.Subject, "$JS.API.STREAM.UPDATE."))
	}
}
