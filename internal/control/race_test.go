package control

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// raceFleet makes the pieces a fleet shares on a server of its own: the
// commands stream and its consumer, the control stream, the fleet bucket.
func raceFleet(t *testing.T) (jetstream.JetStream, Target) {
	t.Helper()
	s := testenv.NATS(t)
	_, js := testenv.Connect(t, s.ClientURL())
	ctx := context.Background()
	tg := Target{CommandsStream: "CMDS", Consumer: "workers", ControlStream: "CTRL", FleetBucket: "fleet"}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tg.CommandsStream, Subjects: []string{"race.cmd"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, tg.CommandsStream, jetstream.ConsumerConfig{Durable: tg.Consumer, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tg.ControlStream, Subjects: []string{messages.ControlSubjects}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: tg.FleetBucket}); err != nil {
		t.Fatal(err)
	}
	return js, tg
}

// controlActions reads the actions of the control events stored so far.
func controlActions(t *testing.T, js jetstream.JetStream, tg Target) []string {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, tg.ControlStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, m.Subject[len(messages.ControlSubjectPrefix):])
	}
	return actions
}

// TestATripWhileAWorkerLooksIsNotTakenForItsEnd: a worker's announcer that
// read the consumer running an instant before a trip paused it, and the
// pause record right after, must not take the trip's span for one that
// ended: that published a resumed event while the fleet stayed paused,
// and let a second trip (a second tripped event) begin a span of its own.
func TestATripWhileAWorkerLooksIsNotTakenForItsEnd(t *testing.T) {
	js, tg := raceFleet(t)
	ctx := context.Background()
	a, err := NewAnnouncer(ctx, js, tg, "bccstop/w0", nil)
	if err != nil {
		t.Fatal(err)
	}
	var first *Span
	a.f.betweenReads = func() {
		a.f.betweenReads = nil
		if first, err = Trip(ctx, js, tg, "50/1m", 50, "bccstop/w1"); err != nil || first == nil {
			t.Fatalf("the first trip: %v, %v", first, err)
		}
	}
	if _, err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := Trip(ctx, js, tg, "50/1m", 50, "bccstop/w2")
	if err != nil {
		t.Fatal(err)
	}
	if second != nil {
		t.Errorf("a second trip began span %s while the first's (%s) held the fleet", second.ID, first.ID)
	}
	for range 3 {
		if _, err := a.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rec, _, err := readPause(ctx, a.f.kv)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Current == nil || rec.Current.ID != first.ID || len(rec.Ended) != 0 {
		t.Errorf("the pause record: current %+v, ended %+v; want the first trip's span in force", rec.Current, rec.Ended)
	}
	for _, action := range controlActions(t, js, tg) {
		if action == messages.ControlResumed {
			t.Errorf("a resumed event while the fleet stayed paused (events: %v)", controlActions(t, js, tg))
			break
		}
	}
}

// TestTwoTripsAtOnceBeginOneSpan: a trip that read the fleet an instant
// before another trip paused it must not begin a span of its own (a second
// tripped event, and the first span's end announced while the fleet
// stayed paused).
func TestTwoTripsAtOnceBeginOneSpan(t *testing.T) {
	js, tg := raceFleet(t)
	ctx := context.Background()
	f, err := openWith(ctx, js, tg)
	if err != nil {
		t.Fatal(err)
	}
	var other *Span
	f.betweenReads = func() {
		f.betweenReads = nil
		if other, err = Trip(ctx, js, tg, "50/1m", 50, "bccstop/w1"); err != nil || other == nil {
			t.Fatalf("the other trip: %v, %v", other, err)
		}
	}
	span, err := f.pause(ctx, PauseRequest{Reason: "blast-radius budget: 50 stops in 1m reached", By: "bccstop/w0",
		automatic: true, budget: "50/1m", budgetUsed: 50, onlyIfFresh: true})
	if span != nil || err == nil {
		t.Errorf("a second trip began span %+v (error %v) while %s held the fleet", span, err, other.ID)
	}
	rec, _, err := readPause(ctx, f.kv)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Current == nil || rec.Current.ID != other.ID || len(rec.Ended) != 0 {
		t.Errorf("the pause record: current %+v, ended %+v; want the other trip's span in force", rec.Current, rec.Ended)
	}
}

// TestAPauseOverBetweenTwoLooksIsAnnouncedWhole: a pause resumed before any
// worker's announcer looked (both within one poll) was announced by its
// resumed event alone; downstream saw a fleet resumed that was never said
// to be paused.
func TestAPauseOverBetweenTwoLooksIsAnnouncedWhole(t *testing.T) {
	js, tg := raceFleet(t)
	ctx := context.Background()
	a, err := NewAnnouncer(ctx, js, tg, "bccstop/w0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.f.pause(ctx, PauseRequest{Reason: "INC-7: hold everything", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Resume(ctx, js.Conn(), tg, "INC-7 over", "alice"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := a.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := controlActions(t, js, tg); len(got) != 2 || got[0] != messages.ControlPaused || got[1] != messages.ControlResumed {
		t.Errorf("control events %v, want [paused resumed]", got)
	}
}
