package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// program is one of the two programs compared: the plain loop (the anchor,
// bench/plainloop) or the worker (cmd/bccstop).
type program struct {
	name  string // as printed
	short string // in command ids
}

var (
	plainLoop = program{name: "plain loop", short: "plain"}
	worker    = program{name: "worker", short: "worker"}
)

// contenders run alternately, the anchor first: A B A B …
var contenders = []program{plainLoop, worker}

// build compiles a main package of this module into dir.
func build(ctx context.Context, dir, pkg, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return out, nil
}

// startOptions say how to start a program.
type startOptions struct {
	Concurrency int
	// Env adds variables to the worker's environment.
	Env []string
	// PProf serves /debug/pprof on the worker's HTTP address.
	PProf bool
}

// proc is a running program. Its output goes to a log file in the
// environment's folder.
type proc struct {
	name     string
	cmd      *exec.Cmd
	logPath  string
	httpAddr string // the worker's /readyz and /metrics; "" for the plain loop
	exited   chan struct{}
	waitErr  error // set before exited is closed
	stopOnce sync.Once
}

// start starts p in e and waits until it consumes. The process is stopped
// when e closes, whatever happens to the scenario.
func (b *bench) start(ctx context.Context, e *env, p program, o startOptions) (*proc, error) {
	logFile, err := os.CreateTemp(e.dir, p.short+"-*.log")
	if err != nil {
		return nil, err
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"NATS_URL=" + e.srv.ClientURL(),
		"BCC_ENDPOINT=" + e.simURL,
		"BCE_ACCESS_KEY_ID=" + creds.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
	}
	pr := &proc{name: p.name, logPath: logFile.Name(), exited: make(chan struct{})}
	var ready *lineWatch
	switch p {
	case worker:
		if pr.httpAddr, err = freeAddr(); err != nil {
			logFile.Close()
			return nil, err
		}
		env = append(env,
			"BCCSTOP_HTTP_ADDR="+pr.httpAddr,
			"BCCSTOP_CONCURRENCY="+strconv.Itoa(o.Concurrency),
			"BCCSTOP_RATE_LIMIT=0",
			"BCCSTOP_WORKER_ID=bench",
			"BCCSTOP_PPROF="+strconv.FormatBool(o.PProf),
			// Tracing on and exported as in production (OTLP/HTTP,
			// batched, to the environment's span sink); metrics on; one
			// info line per command.
			"OTEL_TRACES_EXPORTER=otlp",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+e.spans.url,
			"BCCSTOP_LOG_LEVEL=info",
		)
		env = append(env, b.workerEnv...)
		env = append(env, o.Env...)
		pr.cmd = exec.Command(b.workerBin, "worker")
		pr.cmd.Stdout, pr.cmd.Stderr = logFile, logFile
	case plainLoop:
		pr.cmd = exec.Command(b.anchorBin, "-concurrency", strconv.Itoa(o.Concurrency))
		ready = &lineWatch{w: logFile, want: []byte("plainloop: ready\n"), seen: make(chan struct{})}
		pr.cmd.Stdout, pr.cmd.Stderr = ready, logFile
	}
	pr.cmd.Env = env
	dieWithParent(pr.cmd)
	if err := pr.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	go func() {
		pr.waitErr = pr.cmd.Wait()
		logFile.Close()
		close(pr.exited)
	}()
	e.undo.add(pr.stop)

	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if ready != nil {
		err = pr.waitLine(readyCtx, ready.seen)
	} else {
		err = pr.waitReadyz(readyCtx)
	}
	if err != nil {
		pr.stop()
		return nil, fmt.Errorf("%s not ready: %w (log: %s)", p.name, err, pr.logPath)
	}
	return pr, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (p *proc) waitLine(ctx context.Context, seen <-chan struct{}) error {
	select {
	case <-seen:
		return nil
	case <-p.exited:
		return fmt.Errorf("exited: %v", p.waitErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitReadyz polls /readyz every 5 ms until it answers 200.
func (p *proc) waitReadyz(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + p.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM (and SIGCONT, in case it is frozen) and waits 30 s for
// the process to exit, then kills it. It is safe to call more than once.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			fmt.Fprintf(os.Stderr, "bench: %s did not stop within 30s of SIGTERM; killed\n", p.name)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

func (p *proc) freeze() error { return p.cmd.Process.Signal(syscall.SIGSTOP) }
func (p *proc) thaw() error   { return p.cmd.Process.Signal(syscall.SIGCONT) }

// cpu is the CPU time (user and system) the process has used so far.
func (p *proc) cpu() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// After the command name, which is in parentheses, utime and stime are
	// the 12th and 13th fields, in clock ticks of 10 ms.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", p.cmd.Process.Pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// peakRSS is the process's high-water resident set size, in MiB.
func (p *proc) peakRSS() (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/<pid>/status")
}

// selfCPU is the CPU time of the bench process: the NATS server and the
// simulator (and the bench's own polling).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// logCount counts the lines of p's log that contain s.
func (p *proc) logCount(s string) (int, error) {
	raw, err := os.ReadFile(p.logPath)
	return bytes.Count(raw, []byte(s)), err
}

// metric reads one unlabelled series from the worker's /metrics.
func (p *proc) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
		if v, ok := strings.CutPrefix(line, name+"{"); ok {
			if _, val, ok := strings.Cut(v, "} "); ok {
				return strconv.ParseFloat(strings.TrimSpace(val), 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// cpuProfile saves a CPU profile of the worker taken over d.
func (p *proc) cpuProfile(ctx context.Context, path string, d time.Duration) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.httpAddr, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// lineWatch passes output on to w and closes seen once want has appeared.
type lineWatch struct {
	w    io.Writer
	want []byte
	seen chan struct{}

	mu   sync.Mutex
	head []byte // output so far, until want is seen
	done bool
}

func (l *lineWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	if !l.done {
		l.head = append(l.head, p...)
		if bytes.Contains(l.head, l.want) {
			l.done, l.head = true, nil
			close(l.seen)
		}
	}
	l.mu.Unlock()
	return l.w.Write(p)
}
