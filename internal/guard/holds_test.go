package guard_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/internal/testenv"
)

func startHolds(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, guard.HoldsStream(1)); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js
}

// events records what a watcher reported.
type events struct {
	mu  sync.Mutex
	all []guard.HoldEvent
}

func (e *events) add(ev guard.HoldEvent) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) find(kind guard.HoldEventKind, id string) (guard.HoldEvent, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if ev.Kind == kind && ev.Hold.InstanceID == id {
			return ev, true
		}
	}
	return guard.HoldEvent{}, false
}

func (e *events) count(kind guard.HoldEventKind, id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind && ev.Hold.InstanceID == id {
			n++
		}
	}
	return n
}

type watcher struct {
	*guard.HoldWatcher
	events *events
}

func startWatcher(t *testing.T, url string) watcher {
	t.Helper()
	_, js := testenv.Connect(t, url)
	return startWatcherOn(t, js)
}

func startWatcherOn(t *testing.T, js jetstream.JetStream) watcher {
	t.Helper()
	ev := &events{}
	w, err := guard.NewHoldWatcher(guard.HoldWatcherOptions{JetStream: js, OnChange: ev.add, ProbeInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return watcher{w, ev}
}

func waitReady(t *testing.T, ws ...watcher) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "watchers ready", func() bool {
		for _, w := range ws {
			if w.Ready() != nil {
				return false
			}
		}
		return true
	})
}

// TestHoldSeenEverywhereAndEnds: a hold is seen by two watchers within a
// second of PutHolds returning, with the same event on each; a watcher
// started later sees it too; at its until it ends on every watcher by
// itself (expired, the same revision everywhere), before the server drops
// the key.
func TestHoldSeenEverywhereAndEnds(t *testing.T) {
	t.Parallel()
	url, js := startHolds(t)
	a, b := startWatcher(t, url), startWatcher(t, url)
	waitReady(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	until := time.Now().Add(3 * time.Second)
	written, err := guard.PutHolds(ctx, js, []string{"i-web3", "i-db1"}, until, "INC-4711: patching", "alice", false)
	if err != nil || len(written) != 2 {
		t.Fatalf("PutHolds: %v, %v", written, err)
	}
	placed := time.Now()
	testenv.Eventually(t, time.Second, "both watchers see the hold within a second", func() bool {
		_, okA := a.Check("i-web3")
		_, okB := b.Check("i-web3")
		return okA && okB
	})
	t.Logf("both watchers held i-web3 %s after PutHolds returned", time.Since(placed).Round(time.Microsecond))
	h, _ := a.Check("i-web3")
	if h.By != "alice" || h.Reason != "INC-4711: patching" || !h.Until.Equal(until.UTC()) || h.Revision == 0 {
		t.Errorf("hold as seen: %+v", h)
	}
	if !strings.Contains(h.String(), "held by alice until") || !strings.Contains(h.String(), "INC-4711") {
		t.Errorf("hold says %q", h.String())
	}
	evA, okA := a.events.find(guard.HoldPlaced, "i-web3")
	evB, okB := b.events.find(guard.HoldPlaced, "i-web3")
	if !okA || !okB || evA.Revision != evB.Revision || evA.Initial {
		t.Errorf("held events: %+v %+v", evA, evB)
	}
	if _, held := a.Check("i-other"); held {
		t.Error("an instance never held is held")
	}
	late := startWatcher(t, url)
	waitReady(t, late)
	if h, ok := late.Check("i-db1"); !ok || h.By != "alice" {
		t.Errorf("a watcher started after the hold: %+v, %v", h, ok)
	}
	if ev, ok := late.events.find(guard.HoldPlaced, "i-db1"); !ok || !ev.Initial {
		t.Errorf("late watcher's event: %+v, %v", ev, ok)
	}
	if list, err := guard.ListHolds(ctx, js); err != nil || len(list) != 2 || list[0].InstanceID != "i-db1" {
		t.Errorf("ListHolds: %+v, %v", list, err)
	}

	testenv.Eventually(t, 5*time.Second, "the hold ends at its until on every watcher", func() bool {
		_, heldA := a.Check("i-web3")
		_, heldB := b.Check("i-web3")
		_, heldL := late.Check("i-web3")
		return !heldA && !heldB && !heldL
	})
	ended := time.Since(until)
	t.Logf("the hold ended on every watcher %s after its until", ended.Round(time.Millisecond))
	if ended < 0 {
		t.Errorf("the hold ended %s before its until", -ended)
	}
	for _, w := range []watcher{a, b, late} {
		testenv.Eventually(t, time.Second, "an expired event", func() bool {
			ev, ok := w.events.find(guard.HoldExpired, "i-web3")
			return ok && ev.Revision == evA.Revision
		})
	}
	if list, err := guard.ListHolds(ctx, js); err != nil || len(list) != 0 {
		t.Errorf("ListHolds after the end: %+v, %v", list, err)
	}
	// The key is still there (its TTL runs a little past until): a
	// watcher started now does not hold the instance.
	kv, _ := js.KeyValue(ctx, guard.HoldsBucket)
	if _, err := kv.Get(ctx, "i-web3"); err != nil {
		t.Logf("key already gone: %v", err)
	}
	after := startWatcher(t, url)
	waitReady(t, after)
	if _, held := after.Check("i-web3"); held {
		t.Error("a watcher started after the end holds the instance")
	}
}

// TestHoldReleaseAndConflicts: a hold is not replaced by someone else's
// without force (the refusal says who, why, until); it is with force; its
// holder may change it; release ends it on the watchers (released event)
// and names ids that were not held.
func TestHoldReleaseAndConflicts(t *testing.T) {
	t.Parallel()
	url, js := startHolds(t)
	w := startWatcher(t, url)
	waitReady(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	hour := time.Now().Add(time.Hour)
	if _, err := guard.PutHolds(ctx, js, []string{"i-a"}, hour, "patch window", "alice", false); err != nil {
		t.Fatal(err)
	}
	_, err := guard.PutHolds(ctx, js, []string{"i-b", "i-a"}, time.Now().Add(time.Minute), "shorter", "bob", false)
	var held *guard.HeldError
	if !errors.Is(err, guard.ErrHeld) || !errors.As(err, &held) || held.Hold.By != "alice" || held.Hold.Reason != "patch window" {
		t.Fatalf("bob's put over alice's hold: %v", err)
	}
	if !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), hour.UTC().Format(time.RFC3339)) {
		t.Errorf("refusal does not say who and until when: %v", err)
	}
	kv, _ := js.KeyValue(ctx, guard.HoldsBucket)
	if _, err := kv.Get(ctx, "i-b"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a refused put wrote i-b anyway: %v", err)
	}
	// The holder changes its own hold; its since stays.
	first, _ := w.Check("i-a")
	changed, err := guard.PutHolds(ctx, js, []string{"i-a"}, time.Now().Add(2*time.Hour), "patch window, extended", "alice", false)
	if err != nil || !changed[0].Since.Equal(first.Since) {
		t.Fatalf("alice extends: %+v, %v (since was %s)", changed, err, first.Since)
	}
	if r := changed[0].Replaced; r == nil || r.Reason != "patch window" || r.Until.Sub(hour).Abs() > time.Second {
		t.Errorf("alice's change does not say what it replaced: %+v", r)
	}
	// Forced: bob takes it over.
	taken, err := guard.PutHolds(ctx, js, []string{"i-a", "i-b"}, time.Now().Add(time.Minute), "take over", "bob", true)
	if err != nil {
		t.Fatalf("forced put: %v", err)
	}
	if r := taken[0].Replaced; r == nil || r.By != "alice" || r.Reason != "patch window, extended" || taken[1].Replaced != nil {
		t.Errorf("bob's forced put does not say what it replaced: %+v, %+v", taken[0].Replaced, taken[1].Replaced)
	}
	testenv.Eventually(t, time.Second, "the watcher sees bob's hold", func() bool {
		h, ok := w.Check("i-a")
		return ok && h.By == "bob"
	})
	notHeld, err := guard.ReleaseHolds(ctx, js, []string{"i-a", "i-never"})
	if err != nil || !slices.Equal(notHeld, []string{"i-never"}) {
		t.Fatalf("ReleaseHolds: not held %v, %v", notHeld, err)
	}
	testenv.Eventually(t, time.Second, "released on the watcher", func() bool {
		_, held := w.Check("i-a")
		_, ok := w.events.find(guard.HoldReleased, "i-a")
		return !held && ok
	})
	if n := w.events.count(guard.HoldReleased, "i-a"); n != 1 {
		t.Errorf("%d released events for one release", n)
	}
	if _, held := w.Check("i-b"); !held {
		t.Error("releasing i-a released i-b")
	}
	// Released, it can be held again by anyone.
	if _, err := guard.PutHolds(ctx, js, []string{"i-a"}, time.Now().Add(time.Minute), "again", "carol", false); err != nil {
		t.Fatalf("hold after release: %v", err)
	}
	for _, bad := range [][]string{nil, {"web-3"}, {"i-a", "i-a"}} {
		if _, err := guard.PutHolds(ctx, js, bad, hour, "r", "me", false); !errors.Is(err, guard.ErrInvalidHold) {
			t.Errorf("PutHolds(%q): %v, want ErrInvalidHold", bad, err)
		}
	}
	if _, err := guard.PutHolds(ctx, js, []string{"i-c"}, time.Now().Add(-time.Minute), "r", "me", false); !errors.Is(err, guard.ErrInvalidHold) {
		t.Errorf("hold in the past: %v", err)
	}
	if _, err := guard.PutHolds(ctx, js, []string{"i-c"}, hour, "r", "", false); !errors.Is(err, guard.ErrInvalidHold) {
		t.Errorf("hold by nobody: %v", err)
	}
}

// TestHoldUnknownVersionHolds: a value this version does not understand
// holds its instance (fail closed) and is reported.
func TestHoldUnknownVersionHolds(t *testing.T) {
	t.Parallel()
	url, js := startHolds(t)
	w := startWatcher(t, url)
	waitReady(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.PublishMsg(ctx, &nats.Msg{Subject: jsstore.SubjectPrefix(guard.HoldsBucket) + "i-future", Data: []byte(`{"v":2,"instanceId":"i-future","window":"weekends"}`)},
		jetstream.WithMsgTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "an unknown version holds", func() bool {
		h, ok := w.Check("i-future")
		return ok && h.Unreadable != "" && h.Version == 2
	})
	ev, ok := w.events.find(guard.HoldPlaced, "i-future")
	if !ok || ev.Hold.Unreadable == "" {
		t.Errorf("event for an unknown version: %+v", ev)
	}
	h, _ := w.Check("i-future")
	t.Logf("unknown version: %s", h)
}

// TestHoldWatcherFailsClosed: a watcher is not ready without its bucket
// (and becomes ready once it exists), nor while the connection is down,
// and after a reconnect only once it has read the bucket again, holds
// written meanwhile included.
func TestHoldWatcherFailsClosed(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	proxy := testenv.NewProxy(t)
	proxy.SetBackend(srv.Addr().String())
	_, js := testenv.Connect(t, "nats://"+proxy.Addr())
	w := startWatcherOn(t, js)
	time.Sleep(500 * time.Millisecond)
	if err := w.Ready(); !errors.Is(err, guard.ErrNotReady) || !strings.Contains(err.Error(), guard.HoldsBucket) {
		t.Fatalf("watcher of a missing bucket: Ready %v", err)
	}
	t.Logf("no bucket: %v", w.Ready())
	_, admin := testenv.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := admin.CreateStream(ctx, guard.HoldsStream(1)); err != nil {
		t.Fatal(err)
	}
	other := startWatcher(t, srv.ClientURL()) // stays connected
	waitReady(t, w, other)
	if _, err := guard.PutHolds(ctx, admin, []string{"i-before"}, time.Now().Add(time.Minute), "placed before", "ops", false); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Second, "hold seen", func() bool { _, held := w.Check("i-before"); return held })

	proxy.SetBackend("")
	testenv.Eventually(t, 5*time.Second, "not ready while disconnected", func() bool { return w.Ready() != nil })
	t.Logf("disconnected: %v", w.Ready())
	if _, err := guard.PutHolds(ctx, admin, []string{"i-meanwhile"}, time.Now().Add(time.Minute), "while you were away", "ops", false); err != nil {
		t.Fatal(err)
	}
	if _, err := guard.ReleaseHolds(ctx, admin, []string{"i-before"}); err != nil {
		t.Fatal(err)
	}
	proxy.SetBackend(srv.Addr().String())
	waitReady(t, w)
	if _, held := w.Check("i-meanwhile"); !held {
		t.Error("ready after the reconnect without the hold placed meanwhile")
	}
	if _, held := w.Check("i-before"); held {
		t.Error("ready after the reconnect with a hold released meanwhile")
	}
	// Seen on the resumed watch or on the fresh reading: once either way,
	// and as the watcher that stayed connected saw it.
	for _, c := range []struct {
		kind guard.HoldEventKind
		id   string
	}{{guard.HoldPlaced, "i-meanwhile"}, {guard.HoldReleased, "i-before"}} {
		testenv.Eventually(t, time.Second, "the connected watcher's event", func() bool { return other.events.count(c.kind, c.id) == 1 })
		mine, _ := w.events.find(c.kind, c.id)
		theirs, _ := other.events.find(c.kind, c.id)
		if n := w.events.count(c.kind, c.id); n != 1 || mine.Revision != theirs.Revision {
			t.Errorf("%s %s: %d events after the reconnect (revision %d), want 1 with revision %d", c.kind, c.id, n, mine.Revision, theirs.Revision)
		}
	}
	// The bucket deleted: not ready.
	if err := admin.DeleteStream(ctx, jsstore.StreamName(guard.HoldsBucket)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "not ready once the bucket is gone", func() bool { return w.Ready() != nil })
	t.Logf("bucket deleted: %v", w.Ready())
}

// BenchmarkHoldCheck measures the worker's per-command questions, Ready
// and Check (of a held and a free instance): memory only.
func BenchmarkHoldCheck(b *testing.B) {
	srv := testenv.NATS(b)
	_, js := testenv.Connect(b, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, guard.HoldsStream(1)); err != nil {
		b.Fatal(err)
	}
	if _, err := guard.PutHolds(ctx, js, []string{"i-held"}, time.Now().Add(time.Hour), "bench", "bench", false); err != nil {
		b.Fatal(err)
	}
	w, err := guard.NewHoldWatcher(guard.HoldWatcherOptions{JetStream: js})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(b, 5*time.Second, "ready", func() bool { return w.Ready() == nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Ready(); err != nil {
			b.Fatal(err)
		}
		if _, held := w.Check("i-held"); !held {
			b.Fatal("not held")
		}
		if _, held := w.Check("i-free"); held {
			b.Fatal("held")
		}
	}
}

// TestHoldsNeedNoConsumer: an operator allowed only to read single values
// of the holds bucket and write its keys (no consumer on it, since a
// consumer can be made to write anywhere) can hold, list and release.
func TestHoldsNeedNoConsumer(t *testing.T) {
	t.Parallel()
	bucket := jsstore.StreamName(guard.HoldsBucket)
	operator := &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.INFO", "$JS.API.STREAM.INFO." + bucket, "$JS.API.STREAM.MSG.GET." + bucket,
			"$JS.API.DIRECT.GET." + bucket, "$JS.API.DIRECT.GET." + bucket + ".>", jsstore.SubjectPrefix(guard.HoldsBucket) + ">",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "admin", Password: "admin"}, {Username: "operator", Password: "operator", Permissions: operator}}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	connect := func(user string) jetstream.JetStream {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, user))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	admin, op := connect("admin"), connect("operator")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.CreateStream(ctx, guard.HoldsStream(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := guard.PutHolds(ctx, op, []string{"i-a", "i-b"}, time.Now().Add(time.Hour), "maintenance", "operator", false); err != nil {
		t.Fatalf("PutHolds as operator: %v", err)
	}
	if _, err := guard.PutHolds(ctx, op, []string{"i-a"}, time.Now().Add(2*time.Hour), "longer", "operator", false); err != nil {
		t.Fatalf("PutHolds over its own hold as operator: %v", err)
	}
	list, err := guard.ListHolds(ctx, op)
	if err != nil || len(list) != 2 || list[0].Reason != "longer" {
		t.Fatalf("ListHolds as operator: %+v, %v", list, err)
	}
	if notHeld, err := guard.ReleaseHolds(ctx, op, []string{"i-a", "i-c"}); err != nil || !slices.Equal(notHeld, []string{"i-c"}) {
		t.Fatalf("ReleaseHolds as operator: %v, %v", notHeld, err)
	}
	if list, err := guard.ListHolds(ctx, op); err != nil || len(list) != 1 || list[0].InstanceID != "i-b" {
		t.Fatalf("ListHolds after release: %+v, %v", list, err)
	}
}
