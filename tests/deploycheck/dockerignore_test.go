package deploycheck

// .dockerignore, read and matched by Docker's own code
// (github.com/moby/patternmatcher, which BuildKit and the docker CLI use),
// against the exact files `go build ./cmd/bccstop` reads, as `go list` names
// them: Go files and embedded files of every package of this module it
// builds, plus go.mod and go.sum.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func TestDockerignore(t *testing.T) {
	report(t, checkDockerignore(t, theRepo))
}

func checkDockerignore(t *testing.T, r repo) problems {
	const file = ".dockerignore"
	var ps problems
	data, err := r.read(file)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	ignored := func(name string) bool {
		ok, err := pm.MatchesOrParentMatches(name)
		if err != nil {
			ps.add("%s: %v", file, err)
		}
		return ok
	}
	if !ignored(".git") {
		ps.add("%s: .git is not excluded, so every build sends the repository history", file)
	}
	var excluded []string
	for _, need := range buildInputs(t) {
		if ignored(need) {
			excluded = append(excluded, need)
		}
	}
	if len(excluded) > 0 {
		if len(excluded) > 5 {
			excluded = append(excluded[:5], fmt.Sprintf("… (%d files in all)", len(excluded)))
		}
		ps.add("%s excludes files the image build needs: %s", file, strings.Join(excluded, ", "))
	}
	return ps
}

var (
	buildInputsOnce sync.Once
	buildInputsList []string
	buildInputsErr  error
)

// buildInputs lists, relative to the repository root, what
// `go build ./cmd/bccstop` reads from the build context.
func buildInputs(t *testing.T) []string {
	t.Helper()
	buildInputsOnce.Do(func() {
		root := theRepo.abs(".")
		cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/bccstop")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			buildInputsErr = fmt.Errorf("go list: %v: %s", err, stderr.String())
			return
		}
		inputs := []string{"go.mod", "go.sum"}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var pkg struct {
				Dir                 string
				GoFiles, EmbedFiles []string
				Module              *struct{ Main bool }
			}
			if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				buildInputsErr = err
				return
			}
			if pkg.Module == nil || !pkg.Module.Main {
				continue // the standard library or a module from the proxy
			}
			rel, err := filepath.Rel(root, pkg.Dir)
			if err != nil {
				buildInputsErr = err
				return
			}
			for _, f := range append(pkg.GoFiles, pkg.EmbedFiles...) {
				inputs = append(inputs, path.Join(filepath.ToSlash(rel), f))
			}
		}
		buildInputsList = inputs
	})
	if buildInputsErr != nil {
		t.Fatal(buildInputsErr)
	}
	return buildInputsList
}
