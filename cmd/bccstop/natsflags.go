package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bulkstop"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/internal/natsconn"
)

// natsConnectionHelp explains where the connection settings come from; the
// commands using natsFlags print it in their --help.
const natsConnectionHelp = `NATS connection, as the nats CLI makes it: the NATS context named by
--context or $NATS_CONTEXT, else the one chosen with "nats context select"
(in $XDG_CONFIG_HOME/nats, else ~/.config/nats), if any; the NATS_*
variables (NATS_URL, NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD,
NATS_TOKEN, NATS_CA, NATS_CERT, NATS_KEY) override the context's settings,
and the flags below override both. With none of them:
nats://127.0.0.1:4222.
`

// natsFlags are the connection and naming flags of the commands that talk
// to the workers' JetStream (stop, pause, resume, status, schedules): a NATS
// context, the NATS_* variables as the worker reads them, and flags named as
// the nats CLI names them, in the nats CLI's order (natsConnectionHelp).
type natsFlags struct {
	// denied is the last permissions violation the server reported on the
	// connection (see fail).
	denied atomic.Pointer[string]
	// abort ends the context of failFast on a permissions violation.
	abort   atomic.Pointer[context.CancelCauseFunc]
	aborted atomic.Bool

	context                       string
	server, creds, user, password string
	commands, consumer, results   string
	legacy, controlStream         string
	fleet, schedules, ledger      string
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.context, "context", "", "the NATS context `NAME` to use (default $NATS_CONTEXT, else the selected one), or a context's .json file")
	fs.StringVar(&n.server, "server", "", "NATS server `URL`s, comma-separated (default $NATS_URL, else the context's, else nats://127.0.0.1:4222)")
	shorthand(fs, "s", "server")
	fs.StringVar(&n.creds, "creds", "", "NATS user credentials `FILE` (default $NATS_CREDS, else the context's)")
	fs.StringVar(&n.user, "user", "", "NATS user `NAME` (default $NATS_USER, else the context's)")
	fs.StringVar(&n.password, "password", "", "NATS `PASSWORD` (default $NATS_PASSWORD, else the context's)")
	fs.StringVar(&n.commands, "commands-stream", envOr("BCCSTOP_COMMANDS_STREAM", layout.CommandsStream), "the workers' commands `STREAM`")
	n.legacy = envOr("BCCSTOP_LEGACY_COMMANDS_STREAM", layout.LegacyCommandsStream)
	n.fleet, n.schedules, n.ledger = layout.FleetBucket, layout.SchedulesStream, envOr("BCCSTOP_LEDGER_BUCKET", layout.LedgerBucket)
	fs.StringVar(&n.consumer, "consumer", envOr("BCCSTOP_CONSUMER", layout.Consumer), "the workers' durable `CONSUMER`")
	fs.StringVar(&n.results, "results-stream", envOr("BCCSTOP_RESULTS_STREAM", layout.ResultsStream), "the workers' results `STREAM`")
	fs.StringVar(&n.controlStream, "control-stream", envOr("BCCSTOP_CONTROL_STREAM", layout.ControlStream), "the workers' control events `STREAM`")
}

// connect opens the connection: the NATS context, the NATS_* variables
// over it, and the flags over both.
func (n *natsFlags) connect(ctx context.Context, name string) (*nats.Conn, error) {
	cfg, err := config.LoadNATS()
	if err != nil {
		return nil, usageError{err}
	}
	if os.Getenv("NATS_URL") == "" {
		cfg.URL = "" // not the variable's default: the context's URL, if any
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
	contextName := n.context
	if contextName == "" {
		contextName = os.Getenv("NATS_CONTEXT")
	}
	nctx, err := natsconn.LoadContext(ctx, contextName, cfg)
	if err != nil {
		return nil, usageError{err}
	}
	nc, err := natsconn.ConnectContext(nctx, natsconn.Options{Name: name})
	if errors.Is(err, natsconn.ErrContext) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			msg := err.Error()
			n.denied.Store(&msg)
			if abort := n.abort.Load(); abort != nil {
				n.aborted.Store(true)
				(*abort)(errRefusedByNATS)
			}
		}
	})
	return nc, nil
}

// errRefusedByNATS ends the context of failFast.
var errRefusedByNATS = errors.New("refused by the NATS server")

// failFast returns ctx ended as soon as the server reports a permissions
// violation on the connection (fail then says which): the server answers a
// publish the role may not make with an asynchronous error only, so the
// request would otherwise wait out its whole timeout. For commands whose
// every request is needed (pause, resume, hold, release).
func (n *natsFlags) failFast(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	n.abort.Store(&cancel)
	if n.denied.Load() != nil {
		cancel(errRefusedByNATS)
	}
	return ctx, func() { cancel(nil) }
}

// jetStream connects and returns a JetStream context; on failure js is nil
// and code is the exit status (the error is reported).
func (n *natsFlags) jetStream(ctx context.Context, name string, stderr io.Writer) (js jetstream.JetStream, nc *nats.Conn, code int) {
	nc, err := n.connect(ctx, name)
	if err != nil {
		return nil, nil, failf(stderr, name, err)
	}
	js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, failf(stderr, name, err)
	}
	return js, nc, exitOK
}

// fail reports err as failf does and, when the server refused something on
// the connection, says so: a request the role may not make only times out
// on the client's side.
func (n *natsFlags) fail(stderr io.Writer, cmd string, err error) int {
	if d := n.denied.Load(); d != nil && n.aborted.Load() && errors.Is(err, context.Canceled) {
		// Ended by failFast: the refusal is the whole story.
		err = fmt.Errorf("NATS refused it: %s; the credentials in use may not do this (docs/contract.md, section 7: who may do what)", *d)
	} else if d != nil {
		err = fmt.Errorf("%w\n  NATS refused it: %s; the credentials in use may not do this (docs/contract.md, section 7: who may do what)", err, *d)
	}
	return failf(stderr, cmd, err)
}

func (n *natsFlags) target() control.Target {
	return control.Target{CommandsStream: n.commands, LegacyCommandsStream: n.legacy, Consumer: n.consumer, ResultsStream: n.results,
		ControlStream: n.controlStream, FleetBucket: n.fleet}
}

// streams names the streams scheduling involves.
func (n *natsFlags) streams() bulkstop.Streams {
	return bulkstop.Streams{Commands: n.commands, Schedules: n.schedules, Legacy: n.legacy, Results: n.results}
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
