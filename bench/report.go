package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// resultsFormat is the version of results.json; a before file of another
// format measured other things and is not shown.
const resultsFormat = 2

// Stat is one measure over runs.
type Stat struct {
	Runs   []float64 `json:"runs"`
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	Max    float64   `json:"max"`
}

func statOf(runs []float64) Stat {
	if len(runs) == 0 {
		return Stat{}
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Runs: runs, Min: s[0], Median: m, Max: s[len(s)-1]}
}

// Anchor is what a figure is measured against: the plain loop, the SDK, or
// a fixed bound.
type Anchor struct {
	Name string `json:"name"`
	Stat
}

// Figure is one row of the table: the worker's measure (or our signer's),
// its anchor, the ratio of their medians, and the target.
type Figure struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Unit     string  `json:"unit"`
	Value    Stat    `json:"value"`
	Anchor   *Anchor `json:"anchor,omitempty"`
	// Ratio is Value.Median / Anchor.Median.
	Ratio  float64 `json:"ratio,omitempty"`
	Target string  `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
}

func figure(scenario, metric, unit string, runs []float64) Figure {
	return Figure{Scenario: scenario, Metric: metric, Unit: unit, Value: statOf(runs)}
}

// vs sets the anchor and the ratio.
func (f Figure) vs(name string, runs []float64) Figure {
	f.Anchor = &Anchor{Name: name, Stat: statOf(runs)}
	if f.Anchor.Median != 0 {
		f.Ratio = f.Value.Median / f.Anchor.Median
	}
	return f
}

// bound sets a fixed anchor.
func (f Figure) bound(name string, v float64) Figure { return f.vs(name, []float64{v}) }

// want sets the target: text as printed, ok judged on the figure.
func (f Figure) want(text string, ok func(Figure) bool) Figure {
	met := ok(f)
	f.Target, f.Met = text, &met
	return f
}

func ratioAtLeast(r float64) func(Figure) bool { return func(f Figure) bool { return f.Ratio >= r } }
func ratioAtMost(r float64) func(Figure) bool {
	return func(f Figure) bool { return f.Ratio > 0 && f.Ratio <= r }
}
func atMost(v float64) func(Figure) bool { return func(f Figure) bool { return f.Value.Median <= v } }

// maxAtMost judges the worst run, for targets every run must meet.
func maxAtMost(v float64) func(Figure) bool { return func(f Figure) bool { return f.Value.Max <= v } }

// Results is bench/results.json.
type Results struct {
	Format   int               `json:"format"`
	When     string            `json:"when"`
	Machine  map[string]string `json:"machine"`
	Settings map[string]string `json:"settings"`
	Figures  []Figure          `json:"figures"`
	Failed   map[string]string `json:"failed,omitempty"`
}

// machine describes where and with what the figures were taken.
func machine(workerBin string) map[string]string {
	m := map[string]string{
		"cores":       strconv.Itoa(runtime.NumCPU()),
		"os":          runtime.GOOS + "/" + runtime.GOARCH,
		"go":          runtime.Version(),
		"nats-server": server.VERSION,
		"nats.go":     nats.Version,
	}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["load at start"] = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	if workerBin != "" {
		m["worker"] = workerBin
	} else if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m["worker"] = "./cmd/bccstop at " + strings.TrimSpace(string(out))
	}
	return m
}

// readBefore loads a before file; its figures are shown only if it is of
// this format. A missing file is no before column, silently.
func readBefore(path string) (map[string]float64, string) {
	if path == "" {
		return nil, ""
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("before: %v; column left out", err)
	}
	var r Results
	if err := json.Unmarshal(raw, &r); err != nil || r.Format != resultsFormat {
		return nil, fmt.Sprintf("before: %s is not of this harness's format %d (other measures, no anchor): column left out", path, resultsFormat)
	}
	before := map[string]float64{}
	for _, f := range r.Figures {
		before[f.Scenario+"\x00"+f.Metric] = f.Value.Median
	}
	return before, fmt.Sprintf("before: %s, taken %s", path, r.When)
}

// print writes the table.
func (r Results) print(w io.Writer, before map[string]float64, beforeNote string) {
	m := r.Machine
	fmt.Fprintf(w, "\nmachine: %s, %s cores, %s, %s; nats-server %s, nats.go %s; load at start %s\nworker: %s\n",
		m["cpu"], m["cores"], m["os"], m["go"], m["nats-server"], m["nats.go"], m["load at start"], m["worker"])
	if beforeNote != "" {
		fmt.Fprintln(w, beforeNote)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := "SCENARIO\tMEASURE\tVALUE (MIN–MAX)\tANCHOR\tRATIO\tTARGET\tMET"
	if before != nil {
		head += "\tBEFORE"
	}
	fmt.Fprintln(tw, head)
	for _, f := range r.Figures {
		value := strings.TrimSpace(format(f.Value.Median) + " " + f.Unit)
		if len(f.Value.Runs) > 1 {
			value += " (" + format(f.Value.Min) + "–" + format(f.Value.Max) + ")"
		}
		anchor, ratio, met := "", "", ""
		if f.Anchor != nil {
			anchor = f.Anchor.Name + " " + format(f.Anchor.Median)
			if len(f.Anchor.Runs) > 1 {
				anchor += " (" + format(f.Anchor.Min) + "–" + format(f.Anchor.Max) + ")"
			}
		}
		if f.Ratio != 0 {
			ratio = strconv.FormatFloat(f.Ratio, 'f', 2, 64)
		}
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		line := strings.Join([]string{f.Scenario, f.Metric, value, anchor, ratio, f.Target, met}, "\t")
		if before != nil {
			if v, ok := before[f.Scenario+"\x00"+f.Metric]; ok {
				line += "\t" + format(v)
			} else {
				line += "\t–"
			}
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
	for name, err := range r.Failed {
		fmt.Fprintf(w, "\n%s FAILED: %s\n", name, err)
	}
}

func format(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func (r Results) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }
