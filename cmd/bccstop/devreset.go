package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
)

// devStoreParts are what dev keeps in its store between runs, which
// --reset removes; nothing else in the folder is touched, whatever it is.
func devStoreParts() []struct{ name, what string } {
	return []struct{ name, what string }{
		{"jetstream", "JetStream state: commands, results, schedules, control events, the ledger, the pause record, holds, counters"},
		{"auth", "--auth's nkey seeds and NATS server configuration"},
	}
}

// resetDevStore removes what dev keeps in store, and the NATS contexts dev
// --auth wrote for the seeds it removes (they would name missing files),
// saying what on w before it removes anything. The simulator keeps nothing
// between runs.
func resetDevStore(store string, w io.Writer) error {
	type removal struct{ path, what string }
	var doomed []removal
	for _, part := range devStoreParts() {
		path := filepath.Join(store, part.name)
		if _, err := os.Lstat(path); err == nil {
			doomed = append(doomed, removal{path, part.what})
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	contexts, err := devContextsOf(filepath.Join(store, "auth"))
	if err != nil {
		return err
	}
	for _, c := range contexts {
		doomed = append(doomed, removal{c, "a NATS context of dev --auth, naming a seed removed above"})
	}
	if len(doomed) == 0 {
		fmt.Fprintf(w, "bccstop dev --reset: nothing kept in %s yet; starting clean\n", store)
		return nil
	}
	for _, r := range doomed {
		fmt.Fprintf(w, "bccstop dev --reset: removing %s (%s)\n", r.path, r.what)
	}
	for _, r := range doomed {
		if err := os.RemoveAll(r.path); err != nil {
			return err
		}
	}
	return nil
}

// devContextsOf lists the NATS contexts dev --auth wrote whose nkey is a
// seed in authDir; contexts of another store, or the user's own, are not.
func devContextsOf(authDir string) ([]string, error) {
	dir, err := natsContextDir()
	if err != nil {
		return nil, nil // no home, no contexts
	}
	var out []string
	for _, role := range natsauth.RoleNames {
		path := filepath.Join(dir, devContextName(role)+".json")
		raw, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		var ctx struct {
			NKey string `json:"nkey"`
		}
		if json.Unmarshal(raw, &ctx) != nil || ctx.NKey == "" {
			continue
		}
		if rel, err := filepath.Rel(authDir, ctx.NKey); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			out = append(out, path)
		}
	}
	return out, nil
}
