package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
)

// devAuth is what `bccstop dev --auth` sets up: a NATS server configuration
// with the shipped roles (deploy/nats/permissions.conf, embedded), an nkey
// user per role, and a NATS context per role for the nats CLI and bccstop.
type devAuth struct {
	dir      string            // <store>/auth: the configuration and the seeds
	conf     string            // the server configuration file
	seeds    map[string]string // role → seed file
	contexts map[string]string // role → context file
}

// devContextName is the NATS context of role.
func devContextName(role string) string { return "bccstop-dev-" + role }

// setUpDevAuth writes (or reuses) the seeds, the configuration and the
// contexts. The seeds are kept in the store between runs, so the contexts
// stay valid; they are readable by the user alone.
func setUpDevAuth(store string) (*devAuth, error) {
	a := &devAuth{dir: filepath.Join(store, "auth"), seeds: map[string]string{}, contexts: map[string]string{}}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return nil, err
	}
	var users []string
	for _, role := range natsauth.RoleNames {
		seed, public, err := devSeed(filepath.Join(a.dir, role+".nk"))
		if err != nil {
			return nil, fmt.Errorf("nkey of %s: %w", role, err)
		}
		a.seeds[role] = seed
		users = append(users, fmt.Sprintf("      { nkey: %s, permissions: $BCCSTOP_%s }", public, strings.ToUpper(role)))
	}
	if err := os.WriteFile(filepath.Join(a.dir, "permissions.conf"), []byte(natsauth.File), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# Written by bccstop dev --auth: the shipped roles, an nkey user each.
include ./permissions.conf

accounts {
  %s: {
    jetstream: enabled
    users: [
%s
    ]
  }
}
`, natsauth.Account, strings.Join(users, "\n"))
	a.conf = filepath.Join(a.dir, "nats-server.conf")
	if err := os.WriteFile(a.conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return a, nil
}

// writeContexts writes a NATS context per role, for url.
func (a *devAuth) writeContexts(url string) error {
	dir, err := natsContextDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, role := range natsauth.RoleNames {
		b, _ := json.MarshalIndent(map[string]string{
			"description": "bccstop dev --auth: the " + role + " role",
			"url":         url,
			"nkey":        a.seeds[role],
		}, "", "  ")
		path := filepath.Join(dir, devContextName(role)+".json")
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return err
		}
		a.contexts[role] = path
	}
	return nil
}

// natsContextDir is where the nats CLI (and bccstop --context, which reads
// contexts as it does) looks for contexts: $XDG_CONFIG_HOME/nats/context,
// else .config/nats/context in the home directory of the user account (the
// account's, as the nats CLI takes it, not $HOME: where the two differ,
// contexts written under $HOME would not be found).
func natsContextDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home := ""
		if u, err := user.Current(); err == nil {
			home = u.HomeDir
		}
		if home == "" {
			return "", errors.New("no home directory and no XDG_CONFIG_HOME for the NATS contexts")
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "nats", "context"), nil
}

// devSeed reads a user nkey seed from path, or makes one there.
func devSeed(path string) (seedPath, public string, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", "", err
		}
		seed, _ := kp.Seed()
		if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return "", "", err
		}
		raw = seed
	} else if err != nil {
		return "", "", err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(raw))))
	if err != nil {
		return "", "", fmt.Errorf("%s is not a user nkey seed: %w", path, err)
	}
	public, err = kp.PublicKey()
	return path, public, err
}

// print says how to use the roles.
func (a *devAuth) print(w io.Writer) {
	fmt.Fprintf(w, `NATS authorization is on (the roles of deploy/nats/permissions.conf). A NATS
context per role, for the nats CLI and bccstop (--context NAME):
`)
	for _, role := range natsauth.RoleNames {
		fmt.Fprintf(w, "  %-22s %s\n", devContextName(role), a.contexts[role])
	}
	fmt.Fprintf(w, `
  nats --context %[1]s pub bcc.instance.stop '{"instanceId":"i-YufwpQAe"}'
  bccstop stop --context %[2]s i-7fK2mQ9x --batch-id try-auth
  bccstop pause --context %[3]s --reason "trying it out"; bccstop resume --context %[3]s
  bccstop status --context %[4]s
A denied action fails at the server, for example a publisher forging a result:
  nats --context %[1]s pub bcc.instance.stop.result.succeeded '{}'
  → Permissions Violation for Publish to "bcc.instance.stop.result.succeeded"
`, devContextName(natsauth.Publisher), devContextName(natsauth.Publisher), devContextName(natsauth.Operator), devContextName(natsauth.Observer))
}
