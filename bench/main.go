// Command bench measures bccstop against its physical limits, all on this
// machine: a real NATS server with JetStream and the BCC simulator run in
// this process, the real worker binary runs as a subprocess. It prints a
// table and writes the figures as JSON. Run it with `make bench`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/natsserver"
	"github.com/bccstop/bccstop/messages"
)

var creds = bce.Credentials{AccessKeyID: "bench-ak", SecretAccessKey: "bench-sk"}

// Figure is one measured number and, when it has one, its target.
type Figure struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
	// Anchor is what the figure is measured against (the broker's own
	// ceiling, the Little's-law bound, the SDK) and Ratio the figure over it.
	Anchor string  `json:"anchor,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"`
}

type bench struct {
	binary  string
	workdir string
	figures []Figure
	quick   bool
	profile string
	repeat  int
}

func main() {
	out := flag.String("out", "bench/results.json", "write the figures as JSON to `FILE`")
	only := flag.String("scenarios", "ceiling,little,overhead,backlog,signer", "comma-separated scenarios to run")
	quick := flag.Bool("quick", false, "smaller sizes, for a smoke run")
	plot := flag.String("plot", "", "also measure throughput against concurrency at 100 ms and draw it to `PNG`")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the worker during the ceiling scenario to `FILE`")
	repeat := flag.Int("repeat", 3, "run the ceiling scenario this many times and report the median")
	workerBin := flag.String("worker-bin", "", "measure this bccstop `BINARY` instead of building ./cmd/bccstop (to compare versions)")
	flag.Parse()

	dir, err := os.MkdirTemp("", "bccstop-bench-")
	check(err)
	if os.Getenv("BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "keeping worker logs and NATS state in", dir)
	}
	b := &bench{workdir: dir, binary: filepath.Join(dir, "bccstop"), quick: *quick, profile: *profile, repeat: max(*repeat, 1)}
	if *workerBin != "" {
		b.binary = *workerBin
	} else {
		fmt.Fprintln(os.Stderr, "building the worker binary…")
		build := exec.Command("go", "build", "-o", b.binary, "./cmd/bccstop")
		build.Stderr = os.Stderr
		check(build.Run())
	}

	for _, s := range strings.Split(*only, ",") {
		fmt.Fprintf(os.Stderr, "== %s\n", s)
		switch strings.TrimSpace(s) {
		case "ceiling":
			b.ceiling()
		case "little":
			b.little()
		case "overhead":
			b.overhead()
		case "backlog":
			b.backlog()
		case "signer":
			b.signer()
		case "":
		default:
			fmt.Fprintf(os.Stderr, "unknown scenario %q\n", s)
			os.Exit(2)
		}
	}
	if *plot != "" {
		b.concurrencyCurve(*plot)
	}
	b.print(os.Stdout)
	check(b.write(*out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (b *bench) add(f Figure) { b.figures = append(b.figures, f) }

func met(ok bool) *bool { return &ok }

// env is one scenario's NATS server and simulator.
type env struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	sim *fakebcc.Server
	url string // simulator
	hs  *http.Server
}

func (b *bench) newEnv(latency time.Duration) *env {
	store, err := os.MkdirTemp(b.workdir, "nats-")
	check(err)
	srv, err := natsserver.Start(natsserver.Options{StoreDir: store})
	check(err)
	nc, err := nats.Connect(srv.ClientURL())
	check(err)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	check(err)
	sim := fakebcc.New(fakebcc.Options{Credentials: creds, AutoCreate: true, StopDuration: time.Hour, Latency: latency})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	hs := &http.Server{Handler: sim}
	go hs.Serve(ln)
	return &env{srv: srv, nc: nc, js: js, sim: sim, url: "http://" + ln.Addr().String(), hs: hs}
}

func (e *env) close() {
	e.hs.Close()
	e.nc.Close()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// worker is a running worker subprocess.
type worker struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

func (b *bench) startWorker(e *env, concurrency int, extra ...string) *worker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := ln.Addr().String()
	ln.Close()
	logFile, err := os.CreateTemp(b.workdir, "worker-*.log")
	check(err)
	cmd := exec.Command(b.binary, "worker")
	// BENCH_WORKER_ENV adds settings to the worker, to try variations:
	// BENCH_WORKER_ENV="BCCSTOP_LOG_LEVEL=warn;OTEL_TRACES_SAMPLER=always_off".
	if more := os.Getenv("BENCH_WORKER_ENV"); more != "" {
		extra = append(extra, strings.Split(more, ";")...)
	}
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"NATS_URL=" + e.srv.ClientURL(),
		"BCE_ACCESS_KEY_ID=" + creds.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"BCC_ENDPOINT=" + e.url,
		"BCCSTOP_HTTP_ADDR=" + addr,
		"BCCSTOP_CONCURRENCY=" + strconv.Itoa(concurrency),
		"BCCSTOP_RATE_LIMIT=0",
		"BCCSTOP_WORKER_ID=bench",
	}, extra...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	check(cmd.Start())
	w := &worker{cmd: cmd, addr: addr, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait(); logFile.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return w
			}
		}
		if time.Now().After(deadline) {
			check(errors.New("worker not ready after 30s; see its log in " + logFile.Name()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peakRSS is the worker's high-water resident set size, in MiB.
func (w *worker) peakRSS() float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return -1
}

// cpuProfile saves a CPU profile of the worker taken over d.
func (w *worker) cpuProfile(path string, d time.Duration) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", w.addr, int(d.Seconds())))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	check(err)
	defer f.Close()
	io.Copy(f, resp.Body)
}

// cpuSeconds is the CPU time (user and system) the worker has used so far.
func (w *worker) cpuSeconds() float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: utime is the
	// 12th and stime the 13th of them, in clock ticks (100 per second).
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// selfCPU is the CPU time of this process: the NATS server and the simulator.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func (w *worker) stop() {
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
	}
}

// provision creates the worker's streams by starting and stopping a worker,
// so commands can be stored before the measured worker starts.
func (b *bench) provision(e *env) {
	w := b.startWorker(e, 1)
	w.stop()
}

// publish stores n commands (ids prefix-0…) as fast as JetStream takes them.
func publish(e *env, prefix string, n int) {
	futures := make([]jetstream.PubAckFuture, 0, 8192)
	flush := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				check(err)
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		payload := `{"instanceId":"i-` + id + `","commandId":"` + id + `"}`
		f, err := e.js.PublishAsync(messages.CommandSubject, []byte(payload))
		check(err)
		futures = append(futures, f)
		if len(futures) == cap(futures) {
			flush()
		}
	}
	flush()
}

// waitResults waits until the results stream holds n events and returns when
// the first and the last arrived (sampled every 5 ms).
func waitResults(e *env, n int, timeout time.Duration) (first, last time.Time) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := e.js.Stream(context.Background(), "BCCSTOP_RESULTS")
		if err == nil {
			got := int(s.CachedInfo().State.Msgs)
			if got > 0 && first.IsZero() {
				first = time.Now()
			}
			if got >= n {
				return first, time.Now()
			}
		}
		if time.Now().After(deadline) {
			check(fmt.Errorf("only part of %d results after %v", n, timeout))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bare measures JetStream's own ceiling on this machine: a pull consumer
// that only acknowledges n stored messages.
func bare(e *env, n int) float64 {
	ctx := context.Background()
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_BARE", Subjects: []string{"bench.bare"}})
	check(err)
	futures := make([]jetstream.PubAckFuture, 0, n)
	for range n {
		f, err := e.js.PublishAsync("bench.bare", []byte(`{"instanceId":"i-bare","commandId":"bare"}`))
		check(err)
		futures = append(futures, f)
	}
	for _, f := range futures {
		<-f.Ok()
	}
	cons, err := e.js.CreateConsumer(ctx, "BENCH_BARE", jetstream.ConsumerConfig{Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy})
	check(err)
	begin := time.Now()
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	check(err)
	for range n {
		m, err := it.Next()
		check(err)
		check(m.Ack())
	}
	it.Stop()
	check(e.nc.Flush())
	return float64(n) / time.Since(begin).Seconds()
}

func (b *bench) ceiling() {
	n := 20000
	if b.quick {
		n = 4000
	}
	type run struct{ bare, rate, workerCPU, envCPU float64 }
	var runs []run
	for i := range b.repeat {
		bareRate, rate, workerCPU, envCPU := b.ceilingOnce(n, i == 0)
		runs = append(runs, run{bareRate, rate, workerCPU / float64(n) * 1e6, envCPU / float64(n) * 1e6})
		fmt.Fprintf(os.Stderr, "  run %d: bare %.0f msg/s, worker %.0f cmd/s (%.0f µs worker CPU, %.0f µs NATS+simulator CPU per command)\n",
			i+1, bareRate, rate, runs[i].workerCPU, runs[i].envCPU)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].rate < runs[j].rate })
	m := runs[len(runs)/2]
	b.add(Figure{Scenario: "ceiling", Metric: "bare JetStream pull+ack", Value: m.bare, Unit: "msg/s", Anchor: "broker"})
	b.add(Figure{Scenario: "ceiling", Metric: fmt.Sprintf("worker, %d commands, 0 ms API (median of %d)", n, len(runs)), Value: m.rate, Unit: "cmd/s",
		Target: "≥ 10000/s and ≥ 10% of bare", Met: met(m.rate >= 10000 && m.rate >= 0.1*m.bare), Anchor: "bare JetStream", Ratio: m.rate / m.bare})
	b.add(Figure{Scenario: "ceiling", Metric: "worker CPU per command", Value: m.workerCPU, Unit: "µs"})
	b.add(Figure{Scenario: "ceiling", Metric: "NATS server + simulator CPU per command", Value: m.envCPU, Unit: "µs"})
}

// ceilingOnce measures the bare consumer and the worker on a fresh server.
func (b *bench) ceilingOnce(n int, profile bool) (bareRate, rate, workerCPU, envCPU float64) {
	e := b.newEnv(0)
	defer e.close()
	bareRate = bare(e, n)
	b.provision(e)
	publish(e, "ceil", n)
	w := b.startWorker(e, 256, "BCCSTOP_PPROF="+strconv.FormatBool(profile && b.profile != ""))
	// From the moment the worker consumes: process start-up is not the
	// worker's throughput.
	begin, workerCPU, envCPU := time.Now(), w.cpuSeconds(), selfCPU()
	if profile && b.profile != "" {
		go w.cpuProfile(b.profile, 3*time.Second)
	}
	_, last := waitResults(e, n, 5*time.Minute)
	rate = float64(n) / last.Sub(begin).Seconds()
	workerCPU, envCPU = w.cpuSeconds()-workerCPU, selfCPU()-envCPU
	w.stop()
	return bareRate, rate, workerCPU, envCPU
}

func (b *bench) little() {
	const latency, concurrency = 100 * time.Millisecond, 256
	bound := float64(concurrency) / latency.Seconds()
	n := int(bound * 4)
	if b.quick {
		n = int(bound * 2)
	}
	rate := b.steadyRate(latency, concurrency, n)
	b.add(Figure{Scenario: "little", Metric: "worker, 100 ms API, concurrency 256", Value: rate, Unit: "cmd/s",
		Target: "≥ 90% of 2560/s", Met: met(rate >= 0.9*bound), Anchor: "Little's law 2560/s", Ratio: rate / bound})
}

// steadyRate stores n commands, starts a worker and returns the rate
// between the first and the last result.
func (b *bench) steadyRate(latency time.Duration, concurrency, n int) float64 {
	e := b.newEnv(latency)
	defer e.close()
	b.provision(e)
	publish(e, "little", n)
	w := b.startWorker(e, concurrency)
	first, last := waitResults(e, n, 5*time.Minute)
	w.stop()
	return float64(n-1) / last.Sub(first).Seconds()
}

func (b *bench) overhead() {
	const latency, offered = 50 * time.Millisecond, 1000
	seconds := 10
	if b.quick {
		seconds = 3
	}
	e := b.newEnv(latency)
	defer e.close()
	ackP50, ackP99 := jetStreamAckLatency(e, 3*offered, 3*offered)
	w := b.startWorker(e, 256)
	defer w.stop()

	n := offered * seconds
	sent := make([]time.Time, n)
	received := make([]time.Time, n)
	var got atomic.Int64
	done := make(chan struct{})
	sub, err := e.nc.Subscribe(messages.ResultSubjects, func(m *nats.Msg) {
		now := time.Now()
		var ev struct {
			Data struct {
				CommandID string `json:"commandId"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		i, err := strconv.Atoi(strings.TrimPrefix(ev.Data.CommandID, "ovh-"))
		if err != nil || i < 0 || i >= n || !received[i].IsZero() {
			return
		}
		received[i] = now
		if got.Add(1) == int64(n) {
			close(done)
		}
	})
	check(err)
	sub.SetPendingLimits(-1, -1)
	check(e.nc.Flush())

	// Offer a steady 1000/s: each command is published at its slot.
	begin := time.Now()
	interval := time.Second / offered
	var acks sync.WaitGroup
	for i := range n {
		if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		id := fmt.Sprintf("ovh-%d", i)
		sent[i] = time.Now()
		f, err := e.js.PublishAsync(messages.CommandSubject, []byte(`{"instanceId":"i-`+id+`","commandId":"`+id+`"}`))
		check(err)
		acks.Add(1)
		go func() { defer acks.Done(); <-f.Ok() }()
	}
	acks.Wait()
	select {
	case <-done:
	case <-time.After(time.Minute):
		check(fmt.Errorf("overhead: %d of %d results", got.Load(), n))
	}
	over := make([]float64, n)
	for i := range n {
		over[i] = float64(received[i].Sub(sent[i])-latency) / float64(time.Millisecond)
	}
	sort.Float64s(over)
	p50, p99 := over[n/2], over[n*99/100]
	achieved := float64(n) / time.Since(begin).Seconds()
	b.add(Figure{Scenario: "overhead", Metric: "publish→result minus 50 ms API, p50", Value: p50, Unit: "ms", Target: "≤ 2 ms", Met: met(p50 <= 2), Anchor: "50 ms API latency", Ratio: (p50 + 50) / 50})
	b.add(Figure{Scenario: "overhead", Metric: "publish→result minus 50 ms API, p99", Value: p99, Unit: "ms", Target: "≤ 10 ms", Met: met(p99 <= 10), Anchor: "50 ms API latency", Ratio: (p99 + 50) / 50})
	b.add(Figure{Scenario: "overhead", Metric: "anchor: one JetStream publish→ack (file storage) at 3000/s, p50 / p99",
		Value: ackP50, Unit: fmt.Sprintf("ms / %.2f ms (a command makes 3 such writes in sequence)", ackP99)})
	b.add(Figure{Scenario: "overhead", Metric: "publish→result minus 50 ms API, p90 / max", Value: over[n*90/100], Unit: fmt.Sprintf("ms / %.1f ms", over[n-1])})
	b.add(Figure{Scenario: "overhead", Metric: "offered 1000/s, completed", Value: achieved, Unit: "cmd/s"})
}

// jetStreamAckLatency measures this machine's own floor for the overhead
// scenario: how long JetStream takes to acknowledge one stored message, at
// the write rate the worker causes (three writes per command), in
// milliseconds.
func jetStreamAckLatency(e *env, n, perSecond int) (p50, p99 float64) {
	_, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "BENCH_ACK", Subjects: []string{"bench.ack"}, Storage: jetstream.FileStorage})
	check(err)
	lat := make([]float64, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range n {
		if d := time.Until(begin.Add(time.Duration(i) * time.Second / time.Duration(perSecond))); d > 0 {
			time.Sleep(d)
		}
		sent := time.Now()
		f, err := e.js.PublishAsync("bench.ack", []byte(`{"instanceId":"i-ack"}`))
		check(err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-f.Ok()
			lat[i] = float64(time.Since(sent)) / float64(time.Millisecond)
		}()
	}
	wg.Wait()
	sort.Float64s(lat)
	return lat[n/2], lat[n*99/100]
}

func (b *bench) backlog() {
	n := 100000
	if b.quick {
		n = 20000
	}
	e := b.newEnv(0)
	defer e.close()
	b.provision(e)
	publish(e, "backlog", n)
	begin := time.Now()
	w := b.startWorker(e, 64)
	_, last := waitResults(e, n, 10*time.Minute)
	rss := w.peakRSS()
	w.stop()
	rate := float64(n) / last.Sub(begin).Seconds()
	b.add(Figure{Scenario: "backlog", Metric: fmt.Sprintf("worker peak RSS, %d stored commands", n), Value: rss, Unit: "MiB",
		Target: "≤ 64 MiB, all done", Met: met(rss > 0 && rss <= 64), Anchor: "64 MiB", Ratio: rss / 64})
	b.add(Figure{Scenario: "backlog", Metric: "drained at", Value: rate, Unit: "cmd/s"})
}

var benchLine = regexp.MustCompile(`^(BenchmarkSign\w+)-\d+\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op`)

func (b *bench) signer() {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkSign", "-benchmem", "-count", "3", "./internal/bce")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	check(err)
	ns := map[string][]float64{}
	allocs := map[string]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := benchLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			ns[m[1]] = append(ns[m[1]], v)
			a, _ := strconv.ParseFloat(m[4], 64)
			allocs[m[1]] = a
		}
	}
	ours, sdk := median(ns["BenchmarkSignOurs"]), median(ns["BenchmarkSignOfficialSDK"])
	if ours <= 0 || sdk <= 0 {
		check(fmt.Errorf("signer benchmark output not understood:\n%s", out))
	}
	b.add(Figure{Scenario: "signer", Metric: "official SDK signer", Value: sdk, Unit: "ns/op", Anchor: "SDK"})
	b.add(Figure{Scenario: "signer", Metric: "our signer", Value: ours, Unit: "ns/op", Target: "≥ 2× faster than the SDK", Met: met(sdk/ours >= 2),
		Anchor: "SDK", Ratio: sdk / ours})
	b.add(Figure{Scenario: "signer", Metric: "our signer, allocations", Value: allocs["BenchmarkSignOurs"], Unit: "allocs/op",
		Target: "≤ 8", Met: met(allocs["BenchmarkSignOurs"] <= 8), Anchor: "SDK allocs/op", Ratio: allocs["BenchmarkSignOurs"] / allocs["BenchmarkSignOfficialSDK"]})
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func machine() map[string]string {
	m := map[string]string{"cores": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func (b *bench) print(w io.Writer) {
	m := machine()
	fmt.Fprintf(w, "\nmachine: %s cores, %s, %s %s\n\n", m["cores"], m["cpu"], m["go"], m["os"])
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tMEASURE\tVALUE\tTARGET\tANCHOR\tRATIO\tMET")
	for _, f := range b.figures {
		ratio, ok := "", ""
		if f.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		if f.Met != nil {
			ok = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", f.Scenario, f.Metric, format(f.Value), f.Unit, f.Target, f.Anchor, ratio, ok)
	}
	tw.Flush()
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func (b *bench) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(map[string]any{"machine": machine(), "when": time.Now().UTC().Format(time.RFC3339), "figures": b.figures}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
