// Package tests runs the bccstop binary itself as a subprocess against an
// in-process NATS server and the BCC simulator.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bccstop/bccstop/internal/testenv"
)

// binary is the bccstop binary built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bccstop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "bccstop")
	if err := testenv.Build("../cmd/bccstop", binary); err != nil {
		fmt.Fprintln(os.Stderr, "building bccstop:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running bccstop subprocess (see testenv.Proc).
type proc = testenv.Proc

// start runs bccstop with args and exactly env (see testenv.Start).
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return testenv.Start(t, binary, env, args...)
}

// startBinary is start with another build of bccstop.
func startBinary(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	return testenv.Start(t, bin, env, args...)
}

var (
	freeAddr   = testenv.FreeAddr
	waitHTTP   = testenv.WaitHTTP
	waitOutput = testenv.WaitOutput
	lines      = testenv.Lines
	tail       = testenv.Tail
)

// execCommand is exec.Command, named so tests that drive a pty read clearly.
var execCommand = exec.Command
