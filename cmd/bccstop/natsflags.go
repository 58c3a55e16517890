package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/user"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/natsconn"
)

// natsConnectionHelp explains where the connection settings come from; the
// commands using natsFlags print it in their --help.
const natsConnectionHelp = `NATS connection: NATS_URL (default nats://127.0.0.1:4222) and the other
NATS_* variables, as for the worker, or the flags below.
`

// natsFlags are the connection and naming flags of the commands that talk
// to the workers' JetStream (stop, pause, resume, status, schedules): the
// NATS_* variables as the worker reads them, overridden by flags named as
// the nats CLI names them.
type natsFlags struct {
	server, creds, user, password string
	commands, consumer, results   string
	controlStream                 string
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.server, "server", "", "NATS server `URL`s, comma-separated (default $NATS_URL, else nats://127.0.0.1:4222)")
	shorthand(fs, "s", "server")
	fs.StringVar(&n.creds, "creds", "", "NATS user credentials `FILE` (default $NATS_CREDS)")
	fs.StringVar(&n.user, "user", "", "NATS user `NAME` (default $NATS_USER)")
	fs.StringVar(&n.password, "password", "", "NATS `PASSWORD` (default $NATS_PASSWORD)")
	fs.StringVar(&n.commands, "commands-stream", envOr("BCCSTOP_COMMANDS_STREAM", "BCCSTOP_COMMANDS"), "the workers' commands `STREAM`")
	fs.StringVar(&n.consumer, "consumer", envOr("BCCSTOP_CONSUMER", "bccstop-worker"), "the workers' durable `CONSUMER`")
	fs.StringVar(&n.results, "results-stream", envOr("BCCSTOP_RESULTS_STREAM", "BCCSTOP_RESULTS"), "the workers' results `STREAM`")
	fs.StringVar(&n.controlStream, "control-stream", envOr("BCCSTOP_CONTROL_STREAM", "BCCSTOP_CONTROL"), "the workers' control events `STREAM`")
}

// connect opens the connection: NATS_* variables, then the flags.
func (n *natsFlags) connect(_ context.Context, name string) (*nats.Conn, error) {
	cfg, err := config.LoadNATS()
	if err != nil {
		return nil, usageError{err}
	}
	if n.server != "" {
		cfg.URL = n.server
	}
	if n.creds != "" {
		cfg.Creds = n.creds
	}
	if n.user != "" {
		cfg.User = n.user
	}
	if n.password != "" {
		cfg.Password = config.Secret(n.password)
	}
	return natsconn.Connect(cfg, natsconn.Options{Name: name})
}

func (n *natsFlags) target() control.Target {
	return control.Target{CommandsStream: n.commands, Consumer: n.consumer, ResultsStream: n.results, ControlStream: n.controlStream}
}

// usageError is a failure of the user's input (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// whoami is the default requestedBy: user@host.
func whoami() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	if name == "" {
		name = "unknown"
	}
	if host == "" {
		return name
	}
	return name + "@" + strings.SplitN(host, ".", 2)[0]
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// checkOutput validates --output.
func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return fmt.Errorf("--output must be text or json, not %q", output)
	}
	return nil
}
