package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// guards: what the fleet's guardrails cost per command: the worker with
// the guards off, with the fleet-wide API rate on (set far above what the
// worker reaches, so that it never makes a call wait and only its
// bookkeeping is measured), and with a blast-radius budget that never
// trips; the plain loop (which has neither) as the anchor. Each is measured
// under two loads, with an instant API and concurrency 256: the ceiling's
// stored backlog, where charges race and share their slot reads (one in
// flight and one queued per slot, see internal/guard), and a steady 200
// commands a second, where each charge is mostly alone and reads its slots
// itself.
//
// CPU per command is the program's own, as in ceiling. Broker messages per
// command are the messages the program sent to the NATS server, counted by
// the server on the program's connection (Connz in-msgs) over the same
// span: every publish, JetStream API request and acknowledgement, whether
// it waits for an answer or not. A guard adds only requests the worker
// waits on (the budget's increment, its slot reads and the ledger's record
// of the charge; the rate's heartbeats), so the difference from the worker
// with the guards off is the broker requests, each a round trip, that the
// guard adds per command; requests sent together count one each.
func guards(ctx context.Context, b *bench) error {
	const (
		concurrency = 256
		steady      = 200 // commands a second
		// rateLimit is five times the worker's ceiling (about 10,000/s).
		rateLimit = "50000"
		// budget never trips: far more stops than the runs make, in a
		// window of a typical length (its slots are 10 s).
		budget = "1000000/10m"
	)
	loads := []guardLoad{
		{name: "stored", n: b.size(20000, 100)},
		{name: fmt.Sprintf("%d/s", steady), short: "steady", n: b.size(10*steady, 100), perSecond: steady},
	}
	e, err := b.env(ctx, envOptions{})
	if err != nil {
		return err
	}
	defer e.close()

	variants := []guardVariant{
		{name: "plain loop", program: plainLoop},
		{name: "guards off", program: worker},
		{name: "rate " + rateLimit + "/s", program: worker, env: []string{"BCCSTOP_RATE_LIMIT=" + rateLimit},
			cpuTarget: 10, requestsStored: 0.01, requestsSteady: 0.01},
		{name: "budget " + budget, program: worker, env: []string{"BCCSTOP_MAX_STOPS=" + budget},
			cpuTarget: 60, requestsStored: 2.5, requestsSteady: 4},
	}
	for _, load := range loads {
		cpu := map[string][]float64{}
		msgs := map[string][]float64{}
		for run := range b.pairs(3) {
			for i, v := range variants {
				if err := ctx.Err(); err != nil {
					return err
				}
				c, m, err := v.measure(ctx, b, e, fmt.Sprintf("guards-%s-%d-%d", load.id(), run, i), load, concurrency)
				if err != nil {
					return fmt.Errorf("%s, %s, run %d: %w", v.name, load.name, run+1, err)
				}
				cpu[v.name] = append(cpu[v.name], c)
				msgs[v.name] = append(msgs[v.name], m)
				fmt.Fprintf(os.Stderr, "  guards %s run %d, %s: µs CPU %s, msgs/cmd %s\n", load.name, run+1, v.name, format(c), format(m))
			}
		}
		off := variants[1].name
		b.add(
			figure("guards", fmt.Sprintf("CPU per command, guards off, %d %s, 0 ms API", load.n, load.name), "µs", cpu[off]).
				vs(plainLoop.name, cpu[plainLoop.name]),
			figure("guards", "broker messages per command, guards off, "+load.name, "msg", msgs[off]).vs(plainLoop.name, msgs[plainLoop.name]),
		)
		for _, v := range variants[2:] {
			extraCPU := figure("guards", fmt.Sprintf("extra CPU per command, %s, %s", v.name, load.name), "µs", pairwise(cpu[v.name], cpu[off]))
			requests, requestsTarget := pairwise(msgs[v.name], msgs[off]), v.requestsStored
			if load.perSecond == 0 {
				extraCPU = extraCPU.want(fmt.Sprintf("≤ %s µs", format(v.cpuTarget)), atMost(v.cpuTarget))
			} else {
				// At a low rate a command's CPU carries the worker's work
				// of every second (the rate's heartbeats among it): shown,
				// not judged.
				requestsTarget = v.requestsSteady
			}
			b.add(extraCPU, figure("guards", fmt.Sprintf("extra broker requests per command, %s, %s", v.name, load.name), "msg", requests).
				want("≤ "+format(requestsTarget), atMost(requestsTarget)))
		}
	}
	return nil
}

// guardLoad is how the commands come: n stored before the program starts,
// or n offered at perSecond to the running program.
type guardLoad struct {
	name, short string
	n           int
	perSecond   int // 0: stored
}

// id names the load in command ids.
func (l guardLoad) id() string {
	if l.short != "" {
		return l.short
	}
	return l.name
}

// guardVariant is one program and its settings, with the targets of what
// it adds to the worker with the guards off: CPU per command under the
// stored load, broker requests per command under each. The rate limiter
// makes no request per call (its heartbeat is one a second, whatever the
// load) and answers Wait from memory: a few microseconds. The budget makes
// two requests more per command, the increment and the ledger's record of
// the charge, and reads the slots that may still change, one or two, sent
// together (three round trips in time); racing charges share those reads,
// so under the stored load they cost little. Each request costs about what
// one of the worker's own messages does (a command is four, and some
// 120-130 µs with the HTTP call): the budget's two, at most 60 µs. Neither
// can be one round trip or less: the charge and its record in the ledger
// must both be acknowledged before the stop is sent.
type guardVariant struct {
	name                           string
	program                        program
	env                            []string
	cpuTarget                      float64
	requestsStored, requestsSteady float64
}

// measure runs v over the load's commands and returns its CPU (µs) and
// the messages it sent to the broker, per command.
func (v guardVariant) measure(ctx context.Context, b *bench, e *env, prefix string, load guardLoad, concurrency int) (cpuPerCmd, msgsPerCmd float64, err error) {
	n := load.n
	if err := b.reset(ctx, e); err != nil {
		return 0, 0, err
	}
	if load.perSecond == 0 {
		if err := e.publishCommands(ctx, prefix, n, false); err != nil {
			return 0, 0, err
		}
	}
	before := e.connections()
	pr, err := b.start(ctx, e, v.program, startOptions{Concurrency: concurrency, Env: v.env})
	if err != nil {
		return 0, 0, err
	}
	defer pr.stop()
	cid, err := e.newConnection(before)
	if err != nil {
		return 0, 0, fmt.Errorf("%s's connection: %w", v.name, err)
	}
	cpu0, err := pr.cpu()
	if err != nil {
		return 0, 0, err
	}
	in0, err := e.inMsgs(cid)
	if err != nil {
		return 0, 0, err
	}
	if load.perSecond > 0 {
		if _, err := e.offer(ctx, prefix, n, load.perSecond); err != nil {
			return 0, 0, err
		}
	}
	if _, err := e.waitResults(ctx, n, 5*time.Minute, pr); err != nil {
		return 0, 0, err
	}
	cpu1, err := pr.cpu()
	if err != nil {
		return 0, 0, err
	}
	in1, err := e.inMsgs(cid)
	if err != nil {
		return 0, 0, err
	}
	return perCommand(cpu1-cpu0, n), float64(in1-in0) / float64(n), nil
}

// connections returns the ids of the connections open on the server now.
func (e *env) connections() map[uint64]bool {
	out := map[uint64]bool{}
	if cz, err := e.srv.Connz(&server.ConnzOptions{Limit: 1 << 16}); err == nil {
		for _, c := range cz.Conns {
			out[c.Cid] = true
		}
	}
	return out
}

// newConnection returns the id of the one connection opened since before
// (the program just started: each opens one).
func (e *env) newConnection(before map[uint64]bool) (uint64, error) {
	cz, err := e.srv.Connz(&server.ConnzOptions{Limit: 1 << 16})
	if err != nil {
		return 0, err
	}
	var fresh []uint64
	for _, c := range cz.Conns {
		if !before[c.Cid] {
			fresh = append(fresh, c.Cid)
		}
	}
	if len(fresh) != 1 {
		return 0, fmt.Errorf("%d new connections, want the program's one", len(fresh))
	}
	return fresh[0], nil
}

// inMsgs is how many messages the server has received on connection cid.
func (e *env) inMsgs(cid uint64) (int64, error) {
	cz, err := e.srv.Connz(&server.ConnzOptions{CID: cid})
	if err != nil {
		return 0, err
	}
	if len(cz.Conns) != 1 {
		return 0, errors.New("the program's connection is gone")
	}
	return cz.Conns[0].InMsgs, nil
}

// pairwise subtracts each run of base from the same run of v: runs are
// paired, measured one after the other on the same machine.
func pairwise(v, base []float64) []float64 {
	out := make([]float64, min(len(v), len(base)))
	for i := range out {
		out[i] = v[i] - base[i]
	}
	return out
}
