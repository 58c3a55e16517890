package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Buffer is a bytes.Buffer that a subprocess may write while a test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Build builds the Go package pkg (a directory, for example
// "../cmd/bccstop") into the file out; its output goes to stderr.
func Build(pkg, out string) error {
	build := exec.Command("go", "build", "-o", out, pkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// Proc is a running subprocess, killed at the end of its test if it is
// still running; its stderr is logged when the test failed.
type Proc struct {
	t      testing.TB
	Cmd    *exec.Cmd
	Stdout *Buffer
	Stderr *Buffer
	done   chan struct{}
	err    error
}

// Start runs bin with args and exactly env, plus PATH, and HOME and
// XDG_CONFIG_HOME in empty temporary folders (so no NATS context of the
// machine's user is read); env may set them.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, Stdout: &Buffer{}, Stderr: &Buffer{}, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "XDG_CONFIG_HOME=" + t.TempDir()}, env...)
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.Cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %s stderr:\n%s", bin, strings.Join(args, " "), Tail(p.Stderr.String(), 4000))
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig and waits for the exit status (see Wait).
func (p *Proc) Signal(sig os.Signal, timeout time.Duration) int {
	p.t.Helper()
	p.Cmd.Process.Signal(sig)
	return p.Wait(timeout)
}

// Wait waits for the process to exit and returns its exit status, or minus
// the signal that killed it; it fails the test after timeout.
func (p *Proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("%s did not exit within %v", p.Cmd.Path, timeout)
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 0
}

// FreeAddr returns a loopback address nobody listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitHTTP polls url until it answers want, and fails the test after timeout.
func WaitHTTP(t testing.TB, url string, want int, timeout time.Duration) {
	t.Helper()
	last := 0
	Eventually(t, timeout, fmt.Sprintf("%s did not answer %d", url, want), func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		last = resp.StatusCode
		return last == want
	})
}

// WaitOutput polls buf until it contains s, returns what it holds then, and
// fails the test after timeout, showing the end of it.
func WaitOutput(t testing.TB, buf *Buffer, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if out := buf.String(); strings.Contains(out, s) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("output never contained %q; got:\n%s", s, Tail(buf.String(), 3000))
	return ""
}

// Lines splits s into lines (long ones too).
func Lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// Tail returns the last n bytes of s, marked as cut when they are.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
