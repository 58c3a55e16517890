// Package ops serves a process's operational endpoints: /healthz, /readyz,
// /metrics and, when enabled, /debug/pprof.
package ops

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Options configure a Server.
type Options struct {
	Addr string
	// Ready returns nil when the process can do its work, else why not.
	Ready func() error
	// Metrics serves /metrics; absent when nil.
	Metrics http.Handler
	// PProf adds /debug/pprof.
	PProf bool
}

// Server is the operational HTTP server. Start it once; Stop is idempotent.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Start listens on o.Addr and serves in the background.
func Start(o Options) (*Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := o.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("BCCSTOP_HTTP_ADDR: listen on %s: %w", o.Addr, err)
	}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() { _ = s.srv.Serve(ln) }() // returns ErrServerClosed after Stop
	return s, nil
}

// Addr is the address actually listened on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stop shuts the server down, waiting for requests in progress until ctx ends.
func (s *Server) Stop(ctx context.Context) error { return s.srv.Shutdown(ctx) }
