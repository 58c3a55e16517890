// Package natsserver runs a NATS server with JetStream inside the process:
// for `bccstop dev`, for tests and for benchmarks.
package natsserver

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server. The zero value listens on a random
// loopback port and needs StoreDir.
type Options struct {
	Host     string // default 127.0.0.1
	Port     int    // 0 picks a free port
	StoreDir string // JetStream state; required
	// Name is the server's name; every member of a JetStream cluster needs
	// its own.
	Name string
	// ClusterName makes the server a member of a cluster: it listens for
	// routes on ClusterPort (0 picks a free port) and connects to Routes.
	ClusterName string
	ClusterPort int
	Routes      []string // nats-route://host:port of every member (itself included is fine)
	// MonitorPort, when not 0, serves the monitoring endpoints (/jsz…); -1 picks a free port.
	MonitorPort int
	Logs        bool // print the server's own log lines
	// ConfigFile, when set, is a NATS server configuration file to load
	// (its accounts, users and permissions); the options above override
	// its listen address, store and logging.
	ConfigFile string
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("natsserver: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{}
	if o.ConfigFile != "" {
		loaded, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("natsserver: %w", err)
		}
		opts = loaded
	}
	opts.ServerName, opts.Host, opts.Port = o.Name, o.Host, port
	opts.JetStream, opts.StoreDir = true, o.StoreDir
	opts.NoLog, opts.NoSigs, opts.MaxPayload = !o.Logs, true, 1<<20
	opts.HTTPPort, opts.HTTPHost = 0, ""
	if o.MonitorPort != 0 {
		opts.HTTPHost, opts.HTTPPort = o.Host, o.MonitorPort
	}
	switch {
	case o.ClusterName != "":
		// A cluster port of 0 would turn clustering off without a word.
		clusterPort := o.ClusterPort
		if clusterPort == 0 {
			clusterPort = server.RANDOM_PORT
		}
		opts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: o.Host, Port: clusterPort}
		for _, r := range o.Routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
		}
	case len(o.Routes) > 0 || o.ClusterPort != 0:
		return nil, fmt.Errorf("natsserver: Routes and ClusterPort need a ClusterName")
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	if o.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready for connections on %s:%d after 10s", o.Host, o.Port)
	}
	return s, nil
}
