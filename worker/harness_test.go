package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// harness is a real NATS server, the simulator and a running worker.
type harness struct {
	t       *testing.T
	url     string
	nc      *nats.Conn
	js      jetstream.JetStream
	sim     *fakebcc.Server
	simURL  string
	results *testenv.Results
	logs    *testenv.Buffer
	w       *worker.Worker
	stop    func()
	// apiOpts adjusts the API client's options (telemetry, say); nil for none
	apiOpts func(*bcc.Options)
}

// fastOptions are worker options for tests: short delays everywhere.
func fastOptions(o *worker.Options) {
	o.MaxDeliver = 3
	o.Backoff = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}
	o.AckWait = 3 * time.Second
	o.CallTimeout = 2 * time.Second
	o.ShutdownTimeout = 5 * time.Second
	o.Concurrency = 8
	o.Jitter = func(time.Duration) time.Duration { return 0 }
}

func startHarness(t *testing.T, customize ...func(*worker.Options)) *harness {
	t.Helper()
	return startHarnessWith(t, nil, customize...)
}

// startHarnessWith is startHarness with the API client's options adjusted.
func startHarnessWith(t *testing.T, apiOpts func(*bcc.Options), customize ...func(*worker.Options)) *harness {
	t.Helper()
	h := newHarness(t, apiOpts)
	h.startWorker(customize...)
	h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
	return h
}

// newHarness is a server, a client connection and the simulator, with no
// worker yet (so nothing is provisioned and h.results is nil).
func newHarness(t *testing.T, apiOpts func(*bcc.Options)) *harness {
	t.Helper()
	srv := testenv.NATS(t)
	h := &harness{t: t, url: srv.ClientURL(), logs: &testenv.Buffer{}, apiOpts: apiOpts}
	h.nc, h.js = testenv.Connect(t, h.url)
	h.sim, h.simURL = testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	return h
}

// startWorker starts a worker (on its own connection) and waits until it
// consumes; stop stops it and waits for Run to return.
func (h *harness) startWorker(customize ...func(*worker.Options)) *worker.Worker {
	h.t.Helper()
	return h.startWorkers(1, customize...)[0]
}

// startWorkers starts n workers at once, each on its own connection, as a
// fleet rolled out together does, and waits until every one consumes. h.w
// and h.stop are the last one's.
func (h *harness) startWorkers(n int, customize ...func(*worker.Options)) []*worker.Worker {
	h.t.Helper()
	var fleet []*worker.Worker
	for i := range n {
		nc, _ := testenv.Connect(h.t, h.url)
		opts := worker.Options{Conn: nc, WorkerID: "test-worker", Provision: true,
			Logger: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		if n > 1 {
			opts.WorkerID = fmt.Sprintf("test-worker-%d", i+1)
		}
		fastOptions(&opts)
		for _, c := range customize {
			c(&opts)
		}
		if opts.API == nil {
			apiOpts := bcc.Options{Endpoint: h.simURL, Credentials: testenv.Credentials, Timeout: opts.CallTimeout,
				Regions: map[string]string{"gz": h.simURL}}
			if h.apiOpts != nil {
				h.apiOpts(&apiOpts)
			}
			api, err := bcc.New(apiOpts)
			if err != nil {
				h.t.Fatal(err)
			}
			opts.API = api
		}
		w, err := worker.New(opts)
		if err != nil {
			h.t.Fatal(err)
		}
		fleet = append(fleet, w)
	}
	for _, w := range fleet {
		h.w, h.stop = w, h.run(w)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range fleet {
		for w.Ready() != nil {
			if time.Now().After(deadline) {
				h.t.Fatalf("worker not ready: %v", w.Ready())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return fleet
}

// run runs w until the returned stop (also called at cleanup) cancels it
// and waits for Run to return.
func (h *harness) run(w *worker.Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			h.t.Error("worker did not stop within 15s")
		}
	}
	h.t.Cleanup(stop)
	return stop
}

// publish stores a command and returns what names its result when the
// command gives no identity (see testenv.StoredAt).
func (h *harness) publish(payload string, header nats.Header) string {
	h.t.Helper()
	msg := &nats.Msg{Subject: messages.CommandSubject, Data: []byte(payload), Header: header}
	ack, err := h.js.PublishMsg(context.Background(), msg)
	if err != nil {
		h.t.Fatal(err)
	}
	return testenv.StoredAt("BCCSTOP_COMMANDS_V2", ack.Sequence)
}

func (h *harness) wait(ids ...string) map[string]testenv.Result {
	h.t.Helper()
	return h.results.Wait(h.t, 20*time.Second, ids...)
}
