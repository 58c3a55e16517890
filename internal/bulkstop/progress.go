package bulkstop

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/bccstop/bccstop/messages"
)

// NewProgress returns the progress display for w: a live bar on a terminal,
// plain lines otherwise (logs, CI, pipes), at least one every interval.
func NewProgress(w io.Writer, terminal bool, interval time.Duration) Progress {
	if terminal {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w, every: interval}
}

// lateAfter is when a display starts saying how long results have been late.
const lateAfter = 5 * time.Second

// describe renders a status in one line, without the bar.
func describe(s Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "succeeded %d · forbidden %d · failed %d · rejected %d",
		s.Counts[messages.Succeeded], s.Counts[messages.Forbidden], s.Counts[messages.Failed], s.Counts[messages.Rejected])
	if s.Waves > 1 {
		fmt.Fprintf(&b, " · wave %d of %d, %d in flight", s.Wave, s.Waves, s.InFlight)
	}
	if s.Budget >= 0 {
		fmt.Fprintf(&b, " · errors %d of %d allowed", s.Errors, s.Budget)
	}
	if s.NotSent > 0 && s.Halted {
		fmt.Fprintf(&b, " · %d not sent (budget spent)", s.NotSent)
	} else if s.NotSent > 0 {
		fmt.Fprintf(&b, " · %d not sent", s.NotSent)
	}
	if s.InFlight > 0 && s.SinceLastResult >= lateAfter {
		fmt.Fprintf(&b, " · no result for %s", s.SinceLastResult.Round(time.Second))
	}
	if s.Fleet != "" {
		fmt.Fprintf(&b, " · %s", s.Fleet)
	}
	return b.String()
}

// barProgress draws with github.com/schollz/progressbar.
type barProgress struct {
	w   io.Writer
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func (p *barProgress) Update(s Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil && p.bar.IsFinished() {
		return // drawn complete already: drawing again would repeat the line
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions(s.Total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
	}
	p.bar.Describe(describe(s))
	_ = p.bar.Set(s.Results)
}

func (p *barProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}

// lineProgress prints a line when the counts change, at most one per
// interval, and at least one per interval while commands are in flight, so
// a log shows the job alive (or stuck) even when no result comes.
type lineProgress struct {
	w       io.Writer
	every   time.Duration
	mu      sync.Mutex
	printed time.Time
	last    string // the last line printed
	pending string // the newest line not printed yet
}

func (p *lineProgress) Update(s Status) {
	line := fmt.Sprintf("%d/%d results (%d published): %s", s.Results, s.Total, s.Published, describe(s))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = line
	if time.Since(p.printed) < p.every {
		return
	}
	if line == p.last && s.InFlight == 0 {
		return
	}
	fmt.Fprintln(p.w, line)
	p.printed, p.last, p.pending = time.Now(), line, ""
}

func (p *lineProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending != "" && p.pending != p.last {
		fmt.Fprintln(p.w, p.pending)
	}
}
