package tests

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/config"
)

// TestREADMEFollowsTheBinary: the README's configuration table names every
// variable the worker reads, and its table of commands every flag each
// command's --help lists, so the two cannot drift apart silently. The
// README never points outside the repository.
func TestREADMEFollowsTheBinary(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	_, configTable, _ := strings.Cut(readme, "## Configuration")
	configTable, _, _ = strings.Cut(configTable, "\n## ")
	for _, v := range config.WorkerVariables() {
		if !strings.Contains(configTable, "`"+v.Name+"`") {
			t.Errorf("README's configuration table lacks %s (bccstop worker --help lists it)", v.Name)
		}
	}
	if strings.Contains(readme, "../shared") {
		t.Error("README points at ../shared, which a clone does not have")
	}
	_, binaryTable, _ := strings.Cut(readme, "## The binary")
	binaryTable, _, _ = strings.Cut(binaryTable, "\n## ")
	flagName := regexp.MustCompile(`(?m)^\s+--?([a-z][a-z0-9-]*)`)
	for _, cmd := range []string{"dev", "stop", "fakebcc", "pause", "status", "schedules"} {
		p := start(t, nil, cmd, "--help")
		p.Wait(10 * time.Second)
		row := ""
		for _, line := range strings.Split(binaryTable, "\n") {
			if strings.Contains(line, "`bccstop "+cmd) {
				row += line
			}
		}
		if row == "" {
			t.Errorf("README's table of commands has no row for bccstop %s", cmd)
			continue
		}
		for _, m := range flagName.FindAllStringSubmatch(p.Stdout.String(), -1) {
			name := m[1]
			switch name {
			case "s", "server", "creds", "user", "password", "context", "commands-stream", "results-stream", "consumer", "control-stream", "help", "h":
				continue // the connection flags every client command shares, documented once
			}
			if !strings.Contains(row, "--"+name) {
				t.Errorf("README's row for bccstop %s lacks --%s (its --help lists it)", cmd, name)
			}
		}
	}
}
