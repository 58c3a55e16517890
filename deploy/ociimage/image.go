package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The runtime user, as deploy/Dockerfile declares it (distroless's
// nonroot): numeric, so Kubernetes can verify runAsNonRoot.
const (
	uid  = 65532
	user = "65532:65532"
)

// spec is what goes into the image.
type spec struct {
	binary  string    // a static Linux build of ./cmd/bccstop
	caCerts string    // a PEM bundle of CA certificates, for https://bcc.*.baidubce.com
	created time.Time // the image's and its files' time (the binary's build time)
	labels  map[string]string
}

// caBundles are where Linux distributions keep their CA bundle (the list
// Go's crypto/x509 reads on Linux).
var caBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// build assembles the image the Dockerfile's runtime stage describes, from
// scratch: the binary as /bccstop (the entrypoint, worker by default), the
// CA certificates, /etc/passwd and /etc/group naming the non-root user,
// its home and /tmp; run as 65532:65532, port 8080, the same health check.
func build(s spec) (v1.Image, error) {
	bin, err := os.ReadFile(s.binary)
	if err != nil {
		return nil, err
	}
	arch, err := staticLinuxArch(s.binary)
	if err != nil {
		return nil, err
	}
	certs, err := os.ReadFile(s.caCerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name     string
		mode     int64
		owner    int
		contents []byte // nil for a directory
	}{
		{"etc/", 0o755, 0, nil},
		{"etc/passwd", 0o644, 0, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{"etc/group", 0o644, 0, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{"etc/ssl/", 0o755, 0, nil},
		{"etc/ssl/certs/", 0o755, 0, nil},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, 0, certs},
		{"home/", 0o755, 0, nil},
		{"home/nonroot/", 0o700, uid, nil},
		{"tmp/", 0o1777, 0, nil},
		{"bccstop", 0o755, 0, bin},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.owner, Gid: e.owner, ModTime: s.created, Format: tar.FormatPAX}
		if e.contents == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.contents))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: s.created}, CreatedBy: "deploy/ociimage", Comment: "bccstop, CA certificates, the nonroot user"}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", arch, v1.Time{Time: s.created}
	cfg.Config = v1.Config{
		User:         user,
		Entrypoint:   []string{"/bccstop"},
		Cmd:          []string{"worker"},
		WorkingDir:   "/",
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Labels:       s.labels,
		// As the Dockerfile's HEALTHCHECK (Docker reads it; Kubernetes has its probes).
		Healthcheck: &v1.HealthConfig{Test: []string{"CMD", "/bccstop", "probe", "http://127.0.0.1:8080/readyz"},
			Interval: 10 * time.Second, Timeout: 5 * time.Second, StartPeriod: 20 * time.Second, Retries: 3},
	}
	return mutate.ConfigFile(img, cfg)
}

// staticLinuxArch returns the GOARCH of a statically linked Linux binary,
// and refuses any other: the image has no libc or loader.
func staticLinuxArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: not a Linux binary: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; the image has no libc: build it with CGO_ENABLED=0 (make build)", path)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("%s: unknown machine %v", path, f.Machine)
}

// hostCABundle is the first CA bundle of the build machine.
func hostCABundle() (string, error) {
	for _, p := range caBundles {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no CA certificate bundle found on this machine (install ca-certificates, or pass -ca-certs FILE)")
}
