// Package testenv starts the real pieces bccstop's tests run against: an
// in-process NATS server with JetStream, the BCC simulator behind an HTTP
// server, and a reader of the results stream. Everything started is stopped
// by the test's cleanup.
package testenv

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/internal/natsserver"
	"github.com/bccstop/bccstop/messages"
)

// Credentials the simulator started by Simulator accepts.
var Credentials = bce.Credentials{AccessKeyID: "test-access-key", SecretAccessKey: "test-secret-key-never-logged"}

// NATS starts a NATS server with JetStream on a random loopback port, its
// state in a temporary directory.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return NATSAt(t, t.TempDir(), 0)
}

// NATSAt starts a server on port (0: random) with state in dir, so a test
// can restart it on the same port and store.
func NATSAt(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	s, err := natsserver.Start(natsserver.Options{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Connect opens a client connection closed at cleanup.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Simulator starts the BCC simulator for Credentials and returns it with
// its endpoint URL.
func Simulator(t testing.TB, opts fakebcc.Options) (*fakebcc.Server, string) {
	t.Helper()
	if !opts.Credentials.Valid() {
		opts.Credentials = Credentials
	}
	sim := fakebcc.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

// Result is one stored result event with its NATS headers.
type Result struct {
	Event  messages.ResultEvent
	Header nats.Header
	Seq    uint64
}

// Results reads the results stream from the start, in the background.
type Results struct {
	mu     sync.Mutex
	all    []Result
	byID   map[string][]Result
	notify chan struct{}
}

// ReadResults follows stream (created by the worker; waited for) until cleanup.
func ReadResults(t testing.TB, js jetstream.JetStream, stream string) *Results {
	t.Helper()
	r := &Results{byID: map[string][]Result{}, notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var cons jetstream.Consumer
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		cons, err = js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results stream %s: %v", stream, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := messages.DecodeResultEvent(m.Data())
		if err != nil {
			t.Errorf("result on %s is not a valid event: %v: %s", m.Subject(), err, m.Data())
			return
		}
		meta, _ := m.Metadata()
		res := Result{Event: ev, Header: m.Headers()}
		if meta != nil {
			res.Seq = meta.Sequence.Stream
		}
		r.mu.Lock()
		r.all = append(r.all, res)
		r.byID[ev.Data.CommandID] = append(r.byID[ev.Data.CommandID], res)
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return r
}

// StoredAt names, for Wait, the command stored at seq in stream that gives
// no identity of its own: its identity is the stream, the sequence and the
// stored time (messages.FallbackIdentity), which a test cannot know in
// advance, so Wait matches it by this prefix.
func StoredAt(stream string, seq uint64) string {
	return stream + "-" + strconv.FormatUint(seq, 10) + "-"
}

// Wait blocks until results for all ids are stored, and returns them (the
// first per id), keyed as given. An id made by StoredAt matches the
// identity it begins. It fails the test after timeout.
func (r *Results) Wait(t testing.TB, timeout time.Duration, ids ...string) map[string]Result {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		out := make(map[string]Result, len(ids))
		for _, id := range ids {
			if rs := r.lookupLocked(id); len(rs) > 0 {
				out[id] = rs[0]
			}
		}
		r.mu.Unlock()
		if len(out) == len(ids) {
			return out
		}
		select {
		case <-r.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			var missing []string
			for _, id := range ids {
				if _, ok := out[id]; !ok {
					missing = append(missing, id)
				}
			}
			if len(missing) > 10 {
				missing = append(missing[:10], "…")
			}
			t.Fatalf("after %v, %d of %d results missing: %v", timeout, len(ids)-len(out), len(ids), missing)
		}
	}
}

// All returns every stored result so far.
func (r *Results) All() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.all...)
}

// Count returns how many results are stored for id (see Wait for ids
// made by StoredAt).
func (r *Results) Count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lookupLocked(id))
}

func (r *Results) lookupLocked(id string) []Result {
	if !strings.HasSuffix(id, "-") {
		return r.byID[id]
	}
	var out []Result
	for _, res := range r.all {
		if strings.HasPrefix(res.Event.Data.CommandID, id) {
			out = append(out, res)
		}
	}
	return out
}

// Eventually polls cond every 20ms until it holds, and fails the test with
// what after timeout. It replaces sleeps used as synchronisation.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Published records every result event published on the result subjects,
// including repeats the results stream drops as duplicates: a live view of
// what the workers said, not of what was stored.
type Published struct {
	mu   sync.Mutex
	byID map[string][]Result
}

// SubscribeResults starts recording on nc until cleanup.
func SubscribeResults(t testing.TB, nc *nats.Conn) *Published {
	t.Helper()
	p := &Published{byID: map[string][]Result{}}
	sub, err := nc.Subscribe(messages.ResultSubjects, func(m *nats.Msg) {
		ev, err := messages.DecodeResultEvent(m.Data)
		if err != nil {
			t.Errorf("result on %s is not a valid event: %v", m.Subject, err)
			return
		}
		p.mu.Lock()
		p.byID[ev.Data.CommandID] = append(p.byID[ev.Data.CommandID], Result{Event: ev, Header: m.Header})
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return p
}

// ByID returns every event published for a command identity so far.
func (p *Published) ByID(id string) []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Result(nil), p.byID[id]...)
}

// IDs returns every command identity seen so far.
func (p *Published) IDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.byID))
	for id := range p.byID {
		ids = append(ids, id)
	}
	return ids
}

// Proxy forwards TCP connections from a fixed loopback address to a
// backend that can change: a NATS server restarted on a new port stays
// reachable at the same address, which another process cannot take while
// the server is down (as a restart on the same port allows).
type Proxy struct {
	ln      net.Listener
	mu      sync.Mutex
	backend string
	conns   map[net.Conn]bool
}

// NewProxy listens on a free loopback port until cleanup.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.SetBackend("") })
	go p.serve()
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetBackend points new connections at addr ("" refuses them) and closes
// every connection to the old backend.
func (p *Proxy) SetBackend(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backend = addr
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		backend := p.backend
		p.mu.Unlock()
		if backend == "" {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", backend)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.backend != backend { // changed meanwhile
			p.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close(); in.Close() }()
		go func() { io.Copy(in, out); in.Close(); out.Close() }()
	}
}

// RolePasswords are the passwords NATSWithRoles gives the shipped roles'
// users (the configuration reads them from the environment).
var RolePasswords = map[string]string{
	"publisher": "test-publisher-pw", "operator": "test-operator-pw", "observer": "test-observer-pw", "worker": "test-worker-pw",
}

// NATSWithRoles starts a server from the shipped configuration file conf
// (deploy/nats/nats-server.conf: the roles of deploy/nats/permissions.conf,
// a user each), with RolePasswords, on a random port and a temporary
// store. It sets the passwords in the test's environment, so the test
// cannot run in parallel.
func NATSWithRoles(t *testing.T, conf string) *server.Server {
	t.Helper()
	for role, pw := range RolePasswords {
		t.Setenv("BCCSTOP_"+strings.ToUpper(role)+"_PASSWORD", pw)
	}
	s, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir(), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// ConnectAs connects as one of the shipped roles' users; errs receives the
// connection's asynchronous errors (permissions violations among them).
func ConnectAs(t testing.TB, url, role string, errs chan<- error) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.UserInfo(role, RolePasswords[role]), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	if role == "worker" {
		// The worker role receives its replies only under its own prefix.
		opts = append(opts, nats.CustomInboxPrefix(layout.WorkerInboxPrefix))
	}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
