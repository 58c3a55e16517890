package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/natsserver"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// jsCluster is a NATS cluster with JetStream running inside the test
// process, every node on loopback with its own store.
type jsCluster struct {
	nodes []*server.Server
}

// startCluster starts n nodes routed to one another and waits until
// JetStream has a meta leader. The nodes are shut down at cleanup.
func startCluster(t *testing.T, n int) *jsCluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &jsCluster{}
	for i := range n {
		s, err := natsserver.Start(natsserver.Options{
			Name:        fmt.Sprintf("n%d", i+1),
			Port:        ports[i],
			StoreDir:    t.TempDir(),
			ClusterName: "bccstop-test",
			ClusterPort: ports[n+i],
			Routes:      routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		c.nodes = append(c.nodes, s)
	}

	// The meta leader is elected a few seconds after the routes are up;
	// until then JetStream requests time out, so each poll gets its own
	// short timeout.
	_, js := testenv.Connect(t, c.url())
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream meta leader after 45s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, s := range c.nodes {
		if !s.JetStreamIsClustered() {
			t.Fatalf("node %s is not a clustered JetStream server", s.Name())
		}
	}
	return c
}

// url lists every node's client URL, as NATS_URL does.
func (c *jsCluster) url() string {
	var urls []string
	for _, s := range c.nodes {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// node returns the node named name.
func (c *jsCluster) node(t *testing.T, name string) *server.Server {
	t.Helper()
	for _, s := range c.nodes {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no node named %q", name)
	return nil
}

// freePorts returns n distinct loopback ports nobody listens on right now
// (all held open together, so no two are the same).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// byWorker counts stored results per data.workerId.
func byWorker(rs []testenv.Result) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.Event.Data.WorkerID]++
	}
	return out
}

// logSummary counts a worker's JSON log lines: finished commands, results
// published again from the ledger, and the warnings and errors by message,
// with the first line of each kind.
func logSummary(stderr string) (finished int, problems map[string]int, first []string) {
	problems = map[string]int{}
	note := func(kind, l string) {
		if problems[kind] == 0 {
			first = append(first, tail(l, 400))
		}
		problems[kind]++
	}
	for _, l := range lines(stderr) {
		var line struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(l), &line) != nil {
			note("(not JSON)", l)
			continue
		}
		switch {
		case line.Msg == "command finished":
			finished++
		case line.Msg == "command already decided; result published again":
			problems["INFO "+line.Msg]++
		case line.Level == "WARN" || line.Level == "ERROR":
			note(line.Level+" "+line.Msg, l)
		}
	}
	return finished, problems, first
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// TestScaleOutClusterNodeLossAndWorkerKill: three workers share the consumer
// on a 3-node JetStream cluster with the streams and the ledger replicated 3
// times. A third of the way through 3,000 commands, one worker is killed
// with SIGKILL and the node leading the command consumer is shut down. Every
// command still ends with exactly one stored result, all succeeded, and each
// worker did its share of the work while it was alive.
//
// Each worker is held to 8 commands at once against an API answering in
// 40–80 ms, so, as in production, the API latency caps what one worker can
// do (about 100/s here) well below what the machine can: a worker cannot
// take over another's share just by being scheduled more.
func TestScaleOutClusterNodeLossAndWorkerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster, 3 workers and 3,000 commands: skipped with -short")
	}
	const total = 3000
	setup := time.Now()
	c := startCluster(t, 3)
	clusterUp := time.Since(setup)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: 40 * time.Millisecond, Jitter: 40 * time.Millisecond})
	f := newFleet(sim, "scale", total)

	// w1 provisions the replicated streams, consumer and bucket before the
	// others start: when several clients create the same new replicated
	// stream at once, the server answers only the first, and the others
	// wait out their request timeout (10 s in the worker) before retrying.
	ids := []string{"w1", "w2", "w3"}
	workers := map[string]*proc{}
	for i, id := range ids {
		workers[id] = start(t, workerEnv(t, c.url(), simURL, freeAddr(t),
			"BCCSTOP_WORKER_ID="+id, "BCCSTOP_REPLICAS=3", "BCCSTOP_CONCURRENCY=8",
			"BCCSTOP_ACK_WAIT=3s", "BCCSTOP_MAX_DELIVER=20"), "worker")
		if i == 0 {
			waitOutput(t, workers[id].Stderr, "consuming commands", 60*time.Second)
		}
	}
	for _, id := range ids {
		waitOutput(t, workers[id].Stderr, "consuming commands", 60*time.Second)
	}
	t.Logf("cluster up (meta leader) in %v; 3 workers consuming after %v", clusterUp.Round(time.Millisecond), time.Since(setup).Round(time.Millisecond))

	nc, js := testenv.Connect(t, c.url())
	live := testenv.SubscribeResults(t, nc)
	ctx := context.Background()
	for _, stream := range []string{"BCCSTOP_COMMANDS_V2", "BCCSTOP_RESULTS", "KV_bccstop-ledger"} {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("stream %s has %d replicas, want 3", stream, r)
		}
	}
	// The node leading the command consumer is the one whose loss hurts
	// most: the consumer's state and every pending pull move elsewhere.
	var victimNode string
	for deadline := time.Now().Add(20 * time.Second); victimNode == ""; {
		cons, err := js.Consumer(ctx, "BCCSTOP_COMMANDS_V2", "bccstop-worker")
		if err == nil && cons.CachedInfo().Cluster != nil {
			victimNode = cons.CachedInfo().Cluster.Leader
		}
		if victimNode == "" {
			if time.Now().After(deadline) {
				t.Fatalf("the command consumer has no leader after 20s (last error: %v)", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	const victimWorker = "w3"

	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	begin := time.Now()
	f.publish(t, js, 1)
	published := time.Since(begin)

	deadline := time.Now().Add(60 * time.Second)
	for len(results.All()) < total/3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d results after 60s", len(results.All()), total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The worker dies first, with its calls in flight (those that reached
	// the API are reconciled by whoever gets them next); the node goes
	// right after, while the survivors take over the dead worker's commands.
	lossTime := time.Now()
	lossAt := lossTime.Sub(begin)
	inFlight := sim.Stats().InFlight
	if code := workers[victimWorker].Signal(syscall.SIGKILL, 5*time.Second); code != -int(syscall.SIGKILL) {
		t.Fatalf("%s exit %d, want killed", victimWorker, code)
	}
	atKill := len(results.All())
	node := c.node(t, victimNode)
	node.Shutdown()
	node.WaitForShutdown()

	results.Wait(t, 90*time.Second, f.ids...)
	took := time.Since(begin)
	reconciled := checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	si, err := js.Stream(ctx, "BCCSTOP_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	if n := si.CachedInfo().State.Msgs; n != total {
		t.Errorf("results stream holds %d messages, want %d", n, total)
	}

	// Fair share. The results stored while all three workers were alive
	// (atKill) would split evenly three ways, the rest two ways between the
	// survivors. A worker passes with at least half of its even split: one
	// that stopped pulling (stuck on the lost node, say) for much of its
	// life fails, while the uneven spread of a pull consumer and the
	// survivors' pause after the node loss stay well inside it. That pause
	// is bounded too: a survivor whose pull request was parked on the lost
	// consumer leader learns of it only from two missed heartbeats (5 s
	// with the worker's 5 s pull expiry), one that lost its own connection
	// reconnects within a few seconds, and requests caught on a lost stream
	// leader time out after 5 s; 15 s allows for a busy machine.
	all := results.All()
	counts := byWorker(all)
	pauses := pausesAfter(all, lossTime)
	s := sim.Stats()
	t.Logf("scale-out on 3 nodes (R3): %d commands published in %v, all succeeded once in %v (%.0f/s); at %d results (%v) worker %s was killed (%d API calls in flight across workers), then node %s (the command consumer's leader) shut down",
		total, published.Round(time.Millisecond), took.Round(time.Millisecond), float64(total)/took.Seconds(), atKill, lossAt.Round(time.Millisecond), victimWorker, inFlight, victimNode)
	again, againReconciled := calledAgain(sim, all)
	t.Logf("reconciled %d; simulator: %d stop calls, %d applied, %d describes; %d instances called more than once, whose stored results are %d reconciled and %d not",
		reconciled, s.StopCalls, s.StopsApplied, s.DescribeCalls, again, againReconciled, again-againReconciled)
	for _, id := range ids {
		fair := float64(atKill)/3 + float64(total-atKill)/2
		if id == victimWorker {
			fair = float64(atKill) / 3
		}
		finished, problems, first := logSummary(workers[id].Stderr.String())
		pause := "-"
		if id != victimWorker {
			pause = pauses[id].Round(time.Millisecond).String()
		}
		t.Logf("worker %s: %d results (even split while alive: %.0f, %.0f%% of it); longest pause after the node loss: %s; %d 'command finished' lines; other notable lines: %s",
			id, counts[id], fair, 100*float64(counts[id])/fair, pause, finished, formatCounts(problems))
		for _, l := range first {
			t.Logf("  %s: %s", id, l)
		}
		if float64(counts[id]) < fair/2 {
			t.Errorf("worker %s decided %d commands, less than half of its even share %.0f", id, counts[id], fair)
		}
		if pause, ok := pauses[id]; id != victimWorker && (!ok || pause > 15*time.Second) {
			t.Errorf("worker %s decided nothing for %v after the node loss", id, pause)
		}
	}
	if len(counts) != len(ids) {
		t.Errorf("results by worker: %v", counts)
	}
	if s.StopsApplied != total {
		t.Errorf("%d stops applied, want %d", s.StopsApplied, total)
	}
	for _, id := range ids[:2] {
		if code := workers[id].Signal(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("worker %s exit %d after SIGTERM", id, code)
		}
	}
}

// pausesAfter returns, per worker, the longest time after since during
// which it decided nothing, judged by the time of its result events (up to
// its last one: the run ending is not a pause). A worker that decided
// nothing after since is missing from the map.
func pausesAfter(rs []testenv.Result, since time.Time) map[string]time.Duration {
	times := map[string][]time.Time{}
	for _, r := range rs {
		if ts := r.Event.Time; ts.After(since) {
			times[r.Event.Data.WorkerID] = append(times[r.Event.Data.WorkerID], ts)
		}
	}
	out := map[string]time.Duration{}
	for id, ts := range times {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		prev := since
		for _, ts := range ts {
			out[id] = max(out[id], ts.Sub(prev))
			prev = ts
		}
	}
	return out
}

// calledAgain counts the instances the API was asked to stop more than
// once, and how many of their stored results say they were reconciled.
func calledAgain(sim *fakebcc.Server, rs []testenv.Result) (again, reconciled int) {
	byInstance := map[string]messages.ResultData{}
	for _, r := range rs {
		byInstance[r.Event.Data.InstanceID] = r.Event.Data
	}
	for inst, calls := range sim.StopCallsByInstance() {
		if calls > 1 {
			again++
			if byInstance[inst].Reconciled {
				reconciled++
			}
		}
	}
	return again, reconciled
}

// TestThroughputScalesWithWorkers: with every API call taking 100 ms and 16
// commands at once per worker, one worker can do at most 160 commands/s;
// three workers sharing the consumer must be at least twice as fast. The
// NATS server is a single node, so the API latency, not replication, is
// what limits a worker.
func TestThroughputScalesWithWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("2 × 1,500 commands at 100 ms each: skipped with -short")
	}
	const total = 1500
	rates := map[int]float64{}
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d workers", n), func(t *testing.T) {
			rates[n] = measureThroughput(t, n, total)
		})
	}
	if t.Failed() {
		return
	}
	t.Logf("throughput at 100 ms per API call, concurrency 16 per worker: 1 worker %.0f/s (ceiling 160/s), 3 workers %.0f/s (ceiling 480/s): %.2f×",
		rates[1], rates[3], rates[3]/rates[1])
	if rates[3] < 2*rates[1] {
		t.Errorf("3 workers did %.0f/s, less than twice one worker's %.0f/s", rates[3], rates[1])
	}
}

// measureThroughput runs n workers against a fresh server and simulator and
// returns the commands per second from the first publish to the last stored
// result.
func measureThroughput(t *testing.T, n, total int) float64 {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, Latency: 100 * time.Millisecond})
	f := newFleet(sim, fmt.Sprintf("tp%d", n), total)
	var workers []*proc
	for i := range n {
		workers = append(workers, start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t),
			fmt.Sprintf("BCCSTOP_WORKER_ID=w%d", i+1), "BCCSTOP_CONCURRENCY=16"), "worker"))
	}
	for _, w := range workers {
		waitOutput(t, w.Stderr, "consuming commands", 30*time.Second)
	}
	nc, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	live := testenv.SubscribeResults(t, nc)
	begin := time.Now()
	f.publish(t, js, 1)
	results.Wait(t, 60*time.Second, f.ids...)
	took := time.Since(begin)
	checkExactlyOnce(t, results, live, sim, js, f, messages.Succeeded)
	rate := float64(total) / took.Seconds()
	t.Logf("%d worker(s): %d commands in %v: %.0f/s; by worker: %s; %d stop calls",
		n, total, took.Round(time.Millisecond), rate, formatCounts(byWorker(results.All())), sim.Stats().StopCalls)
	for _, w := range workers {
		if code := w.Signal(syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Errorf("worker exit %d after SIGTERM", code)
		}
	}
	return rate
}
