package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/control"
)

// fleetWatchEvery is how often a waiting stop reads the fleet's pause: one
// consumer info request, so a pause that begins mid-run (an operator's, or
// the blast-radius budget's own) is said within seconds, not after
// --timeout.
const fleetWatchEvery = 2 * time.Second

// fleetWatch follows the fleet's pause while bccstop stop waits for its
// results. It says when the fleet is paused or resumed during the run (to
// w, one line each, unless the display is a live bar, which shows it in
// its own line), and keeps a short note for the progress display.
type fleetWatch struct {
	w        io.Writer
	announce bool

	mu   sync.Mutex
	last *control.State // the last state read; nil before any
}

// watchFleet starts following the fleet from start (the state read before
// publishing, nil if it was not read) until ctx ends.
func watchFleet(ctx context.Context, w io.Writer, js jetstream.JetStream, t control.Target, start *control.State, announce bool) *fleetWatch {
	f := &fleetWatch{w: w, announce: announce, last: start}
	go func() {
		tick := time.NewTicker(fleetWatchEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rctx, cancel := context.WithTimeout(ctx, fleetWatchEvery)
			st, err := control.ReadPause(rctx, js, t)
			cancel()
			if err == nil && ctx.Err() == nil {
				f.saw(st)
			}
		}
	}()
	return f
}

// saw takes a state read, and says a change of the fleet's pause.
func (f *fleetWatch) saw(st *control.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.last
	f.last = st
	if !f.announce {
		return
	}
	wasPaused := prev != nil && prev.Paused
	switch {
	case st.Paused && (!wasPaused || !prev.Since.Equal(st.Since)):
		fmt.Fprintf(f.w, "bccstop stop: the fleet was PAUSED while this ran, %s\n", pauseTerms(st))
		fmt.Fprintln(f.w, "  the commands without a result wait in the stream, nothing is lost: the workers take them once the fleet is resumed (bccstop resume)")
	case !st.Paused && wasPaused:
		fmt.Fprintln(f.w, "bccstop stop: the fleet was resumed: the waiting commands go on")
	}
}

// note is the fleet's pause in a few words for the progress display, ""
// while it runs.
func (f *fleetWatch) note() string {
	if f == nil {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil || !f.last.Paused {
		return ""
	}
	reason := shorten(printableField(f.last.Reason), 60)
	if reason == "" {
		return "fleet PAUSED"
	}
	return "fleet PAUSED: " + reason
}

// paused is the pause in force when last read, nil while the fleet runs
// (or when nothing watched it).
func (f *fleetWatch) paused() *control.State {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil || !f.last.Paused {
		return nil
	}
	return f.last
}
