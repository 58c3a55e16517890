package tests

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/config"
)

// TestREADMEFollowsTheBinary: the README's configuration table names every
// variable the worker reads, and its table of commands every flag each
// command's --help lists, so the two cannot drift apart silently.
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

// TestDocsLinksStayInTheRepository: every relative link in the project's
// Markdown names a file of the repository, and no path written in it
// climbs out of the repository, so a clone has everything its documents
// point at (no sibling folders, no stale paths).
func TestDocsLinksStayInTheRepository(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	climbing := regexp.MustCompile(`(?:^|[\s(\x60"'])((?:\.\./)+[\w.-][\w./-]*)`)
	checked := 0
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(path, ".md") {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			abs := filepath.Join(filepath.Dir(path), filepath.FromSlash(target))
			if inside, _ := filepath.Rel(root, abs); inside == ".." || strings.HasPrefix(inside, ".."+string(filepath.Separator)) {
				t.Errorf("%s links to %s, outside the repository (a clone does not have it)", rel, m[1])
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links to %s, which does not exist", rel, m[1])
			}
		}
		for _, m := range climbing.FindAllStringSubmatch(string(raw), -1) {
			abs := filepath.Join(filepath.Dir(path), filepath.FromSlash(m[1]))
			if inside, _ := filepath.Rel(root, abs); inside == ".." || strings.HasPrefix(inside, ".."+string(filepath.Separator)) {
				t.Errorf("%s names %s, outside the repository (a clone does not have it)", rel, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("no relative link found in the project's Markdown: the link pattern is broken")
	}
}
