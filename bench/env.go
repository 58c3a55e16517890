package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/natsserver"
	"github.com/bccstop/bccstop/messages"
)

// creds are the simulator's credentials, given to both programs.
var creds = bce.Credentials{AccessKeyID: "bench-ak", SecretAccessKey: "bench-sk"}

// The worker's default JetStream names, which the plain loop binds to.
const (
	commandsStream = "BCCSTOP_COMMANDS_V2"
	resultsStream  = "BCCSTOP_RESULTS"
	ledgerStream   = "KV_bccstop-ledger"
)

// cleanups is a stack of undo steps, run last first.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// envOptions configure one scenario's environment.
type envOptions struct {
	// Latency is added to every simulated API answer.
	Latency time.Duration
	// StopDuration is how long an instance stays Stopping; an hour when 0.
	StopDuration time.Duration
}

// env is one scenario's NATS server (JetStream on disk) and BCC simulator,
// with the connection the bench uses to publish and observe. Programs
// started in it are stopped by close, which also removes its folder unless
// the bench keeps it.
type env struct {
	dir    string
	srv    *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	sim    *fakebcc.Server
	simURL string
	spans  *spanSink
	undo   cleanups
}

// newEnv starts a NATS server and a simulator in a new folder under root.
// On error nothing is left running.
func newEnv(root string, keep bool, o envOptions) (_ *env, err error) {
	e := &env{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.dir, err = os.MkdirTemp(root, "env-"); err != nil {
		return nil, err
	}
	if !keep {
		e.undo.add(func() { _ = os.RemoveAll(e.dir) })
	}
	if e.srv, err = natsserver.Start(natsserver.Options{StoreDir: filepath.Join(e.dir, "nats")}); err != nil {
		return nil, err
	}
	e.undo.add(func() { e.srv.Shutdown(); e.srv.WaitForShutdown() })
	if e.nc, err = nats.Connect(e.srv.ClientURL(), nats.Name("bench")); err != nil {
		return nil, err
	}
	e.undo.add(e.nc.Close)
	e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(publishWindow),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	if o.StopDuration == 0 {
		o.StopDuration = time.Hour
	}
	e.sim = fakebcc.New(fakebcc.Options{Credentials: creds, AutoCreate: true, StopDuration: o.StopDuration, Latency: o.Latency})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: e.sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	e.undo.add(func() { _ = hs.Close() })
	e.simURL = "http://" + ln.Addr().String()
	if e.spans, err = startSpanSink(); err != nil {
		return nil, err
	}
	e.undo.add(e.spans.close)
	return e, nil
}

// spanSink is an OTLP/HTTP traces endpoint that counts what it is sent and
// keeps nothing, so that the worker's spans are exported as in production
// (batched, encoded, posted) without a collector on the machine. Its CPU is
// the bench's, counted with the environment's.
type spanSink struct {
	url   string
	bytes atomic.Int64
	hs    *http.Server
}

func startSpanSink() (*spanSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &spanSink{url: "http://" + ln.Addr().String() + "/v1/traces"}
	k.hs = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		k.bytes.Add(n)
		// An empty body is an ExportTraceServiceResponse with nothing rejected.
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = k.hs.Serve(ln) }()
	return k, nil
}

func (k *spanSink) close() { _ = k.hs.Close() }

// close stops everything started in the environment, programs first.
func (e *env) close() { e.undo.run() }

// reset empties the results stream and the ledger so that every run starts
// from the same state, and checks that the previous run left no command.
func (e *env) reset(ctx context.Context) error {
	cmds, err := e.js.Stream(ctx, commandsStream)
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	if left := cmds.CachedInfo().State.Msgs; left > 0 {
		return fmt.Errorf("reset: %d commands left in %s by the previous run", left, commandsStream)
	}
	// The results stream and the ledger refuse purges (nobody may erase
	// them): they are deleted whole, and the next worker, which provisions,
	// makes them again.
	for _, name := range []string{resultsStream, ledgerStream} {
		if err := e.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("reset: delete %s: %w", name, err)
		}
	}
	return nil
}

// commandJSON is one stop command, id "<prefix>-<i>" for instance "i-<id>".
func commandJSON(prefix string, i int, waitUntilStopped bool) []byte {
	id := prefix + "-" + strconv.Itoa(i)
	wait := ""
	if waitUntilStopped {
		wait = `,"waitUntilStopped":true`
	}
	return []byte(`{"instanceId":"i-` + id + `","commandId":"` + id + `"` + wait + `}`)
}

// commandIndex reads i back from a command id "<prefix>-<i>".
func commandIndex(id string) (int, bool) {
	for j := len(id) - 1; j >= 0; j-- {
		if id[j] == '-' {
			i, err := strconv.Atoi(id[j+1:])
			return i, err == nil
		}
	}
	return 0, false
}

// publishWindow bounds the commands published and not yet acknowledged.
const publishWindow = 4096

// await waits for one asynchronous publish: stored, refused, or ctx ended.
func await(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish command: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publishCommands stores n commands as fast as JetStream takes them.
func (e *env) publishCommands(ctx context.Context, prefix string, n int, waitUntilStopped bool) error {
	pending := make([]jetstream.PubAckFuture, 0, n)
	oldest := 0
	for i := range n {
		if len(pending)-oldest == publishWindow {
			if err := await(ctx, pending[oldest]); err != nil {
				return err
			}
			oldest++
		}
		f, err := e.js.PublishAsync(messages.CommandSubject, commandJSON(prefix, i, waitUntilStopped))
		if err != nil {
			return fmt.Errorf("publish command: %w", err)
		}
		pending = append(pending, f)
	}
	for _, f := range pending[oldest:] {
		if err := await(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// stored is when the results stream first held a result and when it held n.
type stored struct{ first, last time.Time }

func (s stored) rate(n int) float64 { return float64(n-1) / s.last.Sub(s.first).Seconds() }

// waitResults polls the results stream every 5 ms until it holds n results.
// It gives up when ctx ends, after timeout, or when p exits.
func (e *env) waitResults(ctx context.Context, n int, timeout time.Duration, p *proc) (stored, error) {
	var s stored
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results, err := e.js.Stream(ctx, resultsStream)
	if err != nil {
		return s, err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	got := uint64(0)
	for {
		if info, err := results.Info(ctx); err == nil {
			got = info.State.Msgs
			if got > 0 && s.first.IsZero() {
				s.first = time.Now()
			}
			if got >= uint64(n) {
				s.last = time.Now()
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return s, fmt.Errorf("%d of %d results after %v", got, n, timeout)
			}
			return s, fmt.Errorf("%d of %d results: %w", got, n, context.Cause(ctx))
		case <-p.exited:
			return s, fmt.Errorf("%d of %d results: %s exited: %v (log: %s)", got, n, p.name, p.waitErr, p.logPath)
		case <-tick.C:
		}
	}
}

// resultCount is how many results the results stream holds.
func (e *env) resultCount(ctx context.Context) (int, error) {
	s, err := e.js.Stream(ctx, resultsStream)
	if err != nil {
		return 0, err
	}
	return int(s.CachedInfo().State.Msgs), nil
}

// resultTimes reads every result in the results stream and returns, per
// command index, when its result was stored (JetStream's own timestamp).
func (e *env) resultTimes(ctx context.Context, n int) ([]time.Time, error) {
	cons, err := e.js.OrderedConsumer(ctx, resultsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	times := make([]time.Time, n)
	for read := 0; read < n; {
		batch, err := cons.Fetch(min(n-read, 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			var ev struct {
				Data struct {
					CommandID string `json:"commandId"`
				} `json:"data"`
			}
			if err := json.Unmarshal(msg.Data(), &ev); err != nil {
				return nil, fmt.Errorf("result %d: %w", meta.Sequence.Stream, err)
			}
			if i, ok := commandIndex(ev.Data.CommandID); ok && i >= 0 && i < n {
				times[i] = meta.Timestamp
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if got == 0 {
			return nil, fmt.Errorf("read %d of %d results", read, n)
		}
		read += got
	}
	return times, nil
}
