package main

import (
	"fmt"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// drawCurve plots measured throughput against concurrency, with the
// Little's-law bound (concurrency / latency) for comparison.
func drawCurve(path string, xs, ys []float64, latency time.Duration) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("bccstop worker throughput at %v API latency", latency)
	p.X.Label.Text = "BCCSTOP_CONCURRENCY"
	p.Y.Label.Text = "commands / s"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	measured, bound := make(plotter.XYs, len(xs)), make(plotter.XYs, len(xs))
	for i := range xs {
		measured[i] = plotter.XY{X: xs[i], Y: ys[i]}
		bound[i] = plotter.XY{X: xs[i], Y: xs[i] / latency.Seconds()}
	}
	line, points, err := plotter.NewLinePoints(measured)
	if err != nil {
		return err
	}
	boundLine, err := plotter.NewLine(bound)
	if err != nil {
		return err
	}
	boundLine.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(boundLine, line, points)
	p.Legend.Add("measured", line, points)
	p.Legend.Add("Little's law bound", boundLine)
	p.Legend.Top, p.Legend.Left = true, true
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
