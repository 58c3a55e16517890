package natsconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jsm.go/natscontext"
	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/config"
)

// ErrContext wraps every failure to load a NATS context: a user's input,
// not a connection problem.
var ErrContext = errors.New("NATS context")

// LoadContext loads the NATS context the nats CLI would use, with the nats
// ecosystem's own library: name, or when name is "" the one chosen with
// `nats context select` (none is fine), from $XDG_CONFIG_HOME/nats/context
// (else ~/.config/nats/context); a name ending in .json that names a file is
// read from that file. Every setting of over that is not empty is laid over
// the context's, as the nats CLI lays its flags and NATS_* variables over
// it. With no context and no URL the server is nats://127.0.0.1:4222.
//
// A context that names a JetStream domain or API prefix is refused: the
// commands here would not honour it.
func LoadContext(ctx context.Context, name string, over config.NATS) (*natscontext.Context, error) {
	opts := []natscontext.Option{
		natscontext.WithServerURL(over.URL),
		natscontext.WithCreds(over.Creds),
		natscontext.WithNKey(over.NKey),
		natscontext.WithUser(over.User),
		natscontext.WithPassword(over.Password.Reveal()),
		natscontext.WithToken(over.Token.Reveal()),
		natscontext.WithCA(over.CA),
		natscontext.WithCertificate(over.Cert),
		natscontext.WithKey(over.Key),
	}
	reg := natscontext.NewRegistry(natscontext.NewDefaultFileBackend())
	if strings.HasSuffix(name, ".json") {
		if _, err := os.Stat(name); err == nil {
			file := natscontext.NewSingleFileBackend(name)
			reg, name = natscontext.NewRegistry(file), file.Name()
		}
	}
	nctx, err := reg.Load(ctx, name, opts...)
	switch {
	case err != nil && name == "":
		return nil, fmt.Errorf("%w: the selected one (nats context select): %v", ErrContext, err)
	case err != nil:
		return nil, fmt.Errorf("%w %q: %v (nats context ls lists them)", ErrContext, name, err)
	case nctx.JSDomain() != "":
		return nil, fmt.Errorf("%w %q sets the JetStream domain %q, which bccstop does not support; use a context without it", ErrContext, nctx.Name, nctx.JSDomain())
	case nctx.JSAPIPrefix() != "":
		return nil, fmt.Errorf("%w %q sets the JetStream API prefix %q, which bccstop does not support; use a context without it", ErrContext, nctx.Name, nctx.JSAPIPrefix())
	}
	return nctx, nil
}

// ConnectContext opens a connection with the settings of a context from
// LoadContext (its authentication, TLS, inbox prefix, SOCKS proxy, …) and
// the options every connection here has. It fails at once when no server
// answers.
func ConnectContext(nctx *natscontext.Context, o Options) (*nats.Conn, error) {
	opts, err := nctx.NATSOptions(baseOptions(o)...)
	switch {
	case err != nil && nctx.Name != "":
		return nil, fmt.Errorf("%w %q: %v", ErrContext, nctx.Name, err)
	case err != nil:
		return nil, fmt.Errorf("NATS settings: %w", err)
	}
	url := nctx.ServerURL()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		where := RedactURLs(url)
		if nctx.Name != "" {
			where += " (context " + nctx.Name + ")"
		}
		return nil, &UnreachableError{Where: where, Err: err}
	}
	return nc, nil
}

// UnreachableError means no NATS server could be reached (or it refused
// the credentials); it says what to try.
type UnreachableError struct {
	Where string
	Err   error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot connect to NATS at %s: %v (give the servers with --server or NATS_URL, credentials with --creds, --user/--password or a NATS context with --context; for a local try, bccstop dev (make run in a checkout) starts one)",
		e.Where, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }
