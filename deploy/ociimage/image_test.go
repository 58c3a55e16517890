package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const repo = "../.."

// TestImageRunsAsNonRoot builds the image exactly as `make image-oci` does
// (the Makefile, the static binary with its build time, this program), reads
// both outputs back, checks the configuration a container engine would
// follow (a numeric non-root user, the entrypoint, the command), unpacks the
// filesystem, and runs the entrypoint's `bccstop version` in it as that user:
// chrooted into the unpacked image with the user's uid and gid when the test
// runs as root, as the current (non-root) user otherwise.
func TestImageRunsAsNonRoot(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out := t.TempDir()
	const built = "2026-01-02T03:04:05Z"
	mk := exec.Command("make", "-C", repo, "--no-print-directory", "image-oci", "BIN="+out,
		"VERSION=v0.0.0-imagetest", "COMMIT=0123456789abcdef", "BUILT="+built, "IMAGE=bccstop:imagetest")
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image-oci: %v\n%s", err, b)
	}

	idx, err := layout.ImageIndexFromPath(filepath.Join(out, "image-oci"))
	if err != nil {
		t.Fatalf("the OCI layout: %v", err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil || len(manifest.Manifests) != 1 {
		t.Fatalf("the layout's index: %v, %+v", err, manifest)
	}
	if ref := manifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != "imagetest" {
		t.Errorf("the layout names the image %q, want imagetest", ref)
	}
	img, err := idx.Image(manifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(filepath.Join(out, "bccstop-image.tar"), nil)
	if err != nil {
		t.Fatalf("the tarball for docker load: %v", err)
	}
	// docker load's format has no manifest of its own: the same image is
	// the same configuration (which names every layer's digest).
	if a, b := configName(t, img), configName(t, loaded); a != b {
		t.Errorf("the layout holds the image %s, the tarball %s", a, b)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	uid, gid := parseUser(t, cfg.User)
	switch {
	case uid == 0 || gid == 0:
		t.Fatalf("the image runs as %q: root", cfg.User)
	case cf.OS != "linux" || cf.Architecture != runtime.GOARCH:
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	case !slices.Equal(cfg.Entrypoint, []string{"/bccstop"}) || !slices.Equal(cfg.Cmd, []string{"worker"}):
		t.Errorf("entrypoint %q, command %q; want [/bccstop] [worker], as deploy/Dockerfile", cfg.Entrypoint, cfg.Cmd)
	case cfg.Labels["org.opencontainers.image.version"] != "v0.0.0-imagetest" || cfg.Labels["org.opencontainers.image.created"] != built:
		t.Errorf("labels %v", cfg.Labels)
	case cfg.Healthcheck == nil || !slices.Contains(cfg.Healthcheck.Test, "probe"):
		t.Errorf("health check %+v", cfg.Healthcheck)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v, want 8080/tcp", cfg.ExposedPorts)
	}

	root := t.TempDir()
	unpack(t, img, root)
	if err := os.Chmod(root, 0o755); err != nil { // a runtime's root directory
		t.Fatal(err)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if !strings.Contains(string(passwd), ":"+strconv.Itoa(uid)+":"+strconv.Itoa(gid)+":") {
		t.Errorf("/etc/passwd names no user %d:%d:\n%s", uid, gid, passwd)
	}
	certs, _ := os.ReadFile(filepath.Join(root, "etc", "ssl", "certs", "ca-certificates.crt"))
	if !x509.NewCertPool().AppendCertsFromPEM(certs) {
		t.Error("the image has no CA certificates for https://bcc.*.baidubce.com")
	}

	args := append(slices.Clone(cfg.Entrypoint), "version")
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		// What a container runtime does, less the namespaces: the image's
		// filesystem as /, the image's user, the image's environment.
		cmd = exec.Command(args[0], args[1:]...)
		cmd.Path = args[0]
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = "/"
		t.Logf("running %q chrooted in the image as %d:%d", args, uid, gid)
	} else {
		cmd = exec.Command(filepath.Join(root, args[0]), args[1:]...)
		t.Logf("not root: running %q from the image as this user, uid %d", args, os.Geteuid())
	}
	cmd.Env = cfg.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bccstop version in the image: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	got := stdout.String()
	t.Logf("bccstop version in the image:\n%s", got)
	for _, want := range []string{"bccstop v0.0.0-imagetest\n", "commit:   0123456789abcdef\n", "built:    " + built + "\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("bccstop version says\n%s\nwant a line %q", got, want)
		}
	}
}

// TestDockerfilePassesTheBuildTime: the Docker engine's path (make image)
// stamps the build time too, as this program's does.
func TestDockerfilePassesTheBuildTime(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join(repo, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile(filepath.Join(repo, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(dockerfile, []byte("-X main.built=$BUILT")) || !bytes.Contains(dockerfile, []byte("ARG BUILT")) {
		t.Error("deploy/Dockerfile does not set main.built from ARG BUILT: the image would say built: unknown")
	}
	if !bytes.Contains(makefile, []byte("--build-arg BUILT=$(BUILT)")) {
		t.Error("make image does not pass --build-arg BUILT")
	}
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// parseUser reads a numeric "uid:gid" (or "uid").
func parseUser(t *testing.T, user string) (uid, gid int) {
	t.Helper()
	u, g, ok := strings.Cut(user, ":")
	if !ok {
		g = u
	}
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("USER %q is not numeric (uid:gid): Kubernetes' runAsNonRoot cannot check it: %v", user, err)
	}
	return uid, gid
}

// unpack writes the image's flattened filesystem under root.
func unpack(t *testing.T, img v1.Image, root string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, h.FileInfo().Mode().Perm())
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, h.FileInfo().Mode().Perm()); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		default:
			t.Fatalf("%s: unexpected entry type %c in the image", h.Name, h.Typeflag)
		}
		if err == nil {
			err = os.Chmod(path, h.FileInfo().Mode()&(os.ModePerm|os.ModeSticky))
		}
		if err == nil && os.Geteuid() == 0 {
			err = os.Lchown(path, h.Uid, h.Gid)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
