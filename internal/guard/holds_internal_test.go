package guard

import (
	"slices"
	"testing"
	"time"
)

// TestHoldReplaceReportsWhatChangedUnseen: reading the bucket again (after
// a reconnect) reports each change made meanwhile once, a release with its
// delete's revision, as the watchers that saw it happen report it.
func TestHoldReplaceReportsWhatChangedUnseen(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Hour), now.Add(-time.Second)
	w := &HoldWatcher{opts: HoldWatcherOptions{Now: func() time.Time { return now }}, holds: map[string]Hold{
		"i-a":    {Version: 1, InstanceID: "i-a", Until: later, Revision: 5},
		"i-b":    {Version: 1, InstanceID: "i-b", Until: earlier, Revision: 6},
		"i-c":    {Version: 1, InstanceID: "i-c", Until: later, Revision: 7},
		"i-same": {Version: 1, InstanceID: "i-same", Until: later, Revision: 3},
	}}
	snapshot := map[string]Hold{
		"i-c":    {Version: 1, InstanceID: "i-c", Until: later, By: "bob", Revision: 9},
		"i-d":    {Version: 1, InstanceID: "i-d", Until: later, Revision: 10},
		"i-same": {Version: 1, InstanceID: "i-same", Until: later, Revision: 3},
	}
	events := w.replace(snapshot, map[string]uint64{"i-a": 8}, 2, false)
	type ev struct {
		kind HoldEventKind
		id   string
		rev  uint64
	}
	var got []ev
	for _, e := range events {
		if !e.Initial {
			t.Errorf("%+v not marked Initial", e)
		}
		got = append(got, ev{e.Kind, e.Hold.InstanceID, e.Revision})
	}
	want := []ev{{HoldReleased, "i-a", 8}, {HoldExpired, "i-b", 6}, {HoldPlaced, "i-c", 9}, {HoldPlaced, "i-d", 10}}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if h, ok := w.holds["i-c"]; !ok || h.By != "bob" || len(w.holds) != 3 || !w.synced || w.reconnects != 2 {
		t.Errorf("state after replace: %+v synced %v reconnects %d", w.holds, w.synced, w.reconnects)
	}
}
