package bulkstop

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/bccstop/bccstop/messages"
)

// NewProgress returns the progress display for w: a live bar on a terminal,
// plain lines every interval otherwise (logs, CI, pipes).
func NewProgress(w io.Writer, terminal bool, interval time.Duration) Progress {
	if terminal {
		return &barProgress{w: w}
	}
	return &lineProgress{w: w, every: interval}
}

func countsText(counts map[messages.Outcome]int) string {
	return fmt.Sprintf("succeeded %d · forbidden %d · failed %d · rejected %d",
		counts[messages.Succeeded], counts[messages.Forbidden], counts[messages.Failed], counts[messages.Rejected])
}

// barProgress draws with github.com/schollz/progressbar.
type barProgress struct {
	w         io.Writer
	mu        sync.Mutex
	bar       *progressbar.ProgressBar
	published bool
}

func (p *barProgress) newBar(total int, desc string) {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
}

func (p *barProgress) Published(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil {
		p.newBar(total, "publishing")
	}
	_ = p.bar.Set(done)
}

func (p *barProgress) Result(done, total int, counts map[messages.Outcome]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.published {
		p.published = true
		p.newBar(total, "waiting")
	}
	p.bar.Describe(countsText(counts))
	_ = p.bar.Set(done)
}

func (p *barProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}

// lineProgress prints a line now and then, and the last state at the end.
type lineProgress struct {
	w     io.Writer
	every time.Duration
	mu    sync.Mutex
	last  time.Time
	line  string
}

func (p *lineProgress) say(line string, force bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.line = line
	if force || time.Since(p.last) >= p.every {
		fmt.Fprintln(p.w, line)
		p.last = time.Now()
		p.line = ""
	}
}

func (p *lineProgress) Published(done, total int) {
	p.say(fmt.Sprintf("published %d/%d commands", done, total), done == total)
}

func (p *lineProgress) Result(done, total int, counts map[messages.Outcome]int) {
	p.say(fmt.Sprintf("%d/%d results: %s", done, total, countsText(counts)), false)
}

func (p *lineProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.line != "" {
		fmt.Fprintln(p.w, p.line)
	}
}
