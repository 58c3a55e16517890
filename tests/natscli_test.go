package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// natsCLIPackage is the nats CLI the README installs, and the tests run
// the README's nats lines with.
const natsCLIPackage = "github.com/nats-io/natscli/nats"

// natsCLI is the nats CLI, built once per run of this package.
var natsCLI struct {
	once     sync.Once
	dir, out string
	err      error
}

// natsCLIDir returns a directory holding the nats CLI, at the version the
// README's `go install` line names, installed there by that line (through
// the Go module proxy the first time on a machine, from Go's caches after
// that), so the README's nats lines need nothing but Go. The PATH's own
// nats, if any, is not used: another version may print other things.
func natsCLIDir(t *testing.T) string {
	t.Helper()
	natsCLI.once.Do(func() {
		raw, err := os.ReadFile("../README.md")
		if err != nil {
			natsCLI.err = err
			return
		}
		m := regexp.MustCompile(`go install ` + regexp.QuoteMeta(natsCLIPackage) + `@(v[0-9][0-9A-Za-z.+-]*)`).FindSubmatch(raw)
		if m == nil {
			natsCLI.out = "the README says nowhere `go install " + natsCLIPackage + "@VERSION`"
			natsCLI.err = os.ErrNotExist
			return
		}
		natsCLI.dir = filepath.Join(filepath.Dir(binary), "natscli")
		cmd := exec.Command("go", "install", natsCLIPackage+"@"+string(m[1]))
		// Outside this module.
		cmd.Dir = filepath.Dir(binary)
		cmd.Env = append(goEnv(), "GOBIN="+natsCLI.dir)
		out, err := cmd.CombinedOutput()
		natsCLI.out, natsCLI.err = string(out), err
	})
	if natsCLI.err != nil {
		t.Fatalf("the README's nats lines run with the nats CLI of its `go install %s@…` line, which failed (it needs the Go module proxy once): %v\n%s",
			natsCLIPackage, natsCLI.err, natsCLI.out)
	}
	return natsCLI.dir
}

// goEnv is the environment of the go commands the README's lines run
// outside this module: the module cache first, as a proxy (so that what
// was downloaded once is not looked up again, and a machine offline runs
// them), then the GOPROXY of the environment; no go.work, and none of the
// environment's GOFLAGS (-mod=… is refused for a package at a version).
func goEnv() []string {
	proxy := "https://proxy.golang.org,direct"
	if out, err := exec.Command("go", "env", "GOPROXY", "GOMODCACHE").Output(); err == nil {
		if v := strings.Fields(string(out)); len(v) == 2 {
			proxy = "file://" + filepath.ToSlash(filepath.Join(v[1], "cache", "download")) + "," + v[0]
		}
	}
	return append(os.Environ(), "GOPROXY="+proxy, "GOFLAGS=", "GOWORK=off")
}
