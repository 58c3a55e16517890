// Command ociimage assembles bccstop's container image without a container
// engine: no daemon, no base image to pull, nothing run as root. It takes
// the static binary `make build` writes and lays out what the Dockerfile's
// runtime stage describes (see image.go), then writes it as an OCI image
// layout (for skopeo, crane, podman or containerd) and as a tarball that
// `docker load` and `podman load` read. `make image-oci` runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	binary := fs.String("binary", "bin/bccstop", "the static Linux build of ./cmd/bccstop")
	caCerts := fs.String("ca-certs", "", "PEM `FILE` of CA certificates (default: this machine's bundle)")
	created := fs.String("created", "", "build time, RFC 3339 (default now); the image's time and its files'")
	version := fs.String("version", "dev", "org.opencontainers.image.version")
	revision := fs.String("revision", "unknown", "org.opencontainers.image.revision")
	tag := fs.String("tag", "bccstop:dev", "the image's name in the tarball and the layout")
	layoutDir := fs.String("layout", "bin/image-oci", "write an OCI image layout in this `DIR` (replaced)")
	tarPath := fs.String("tarball", "bin/bccstop-image.tar", "write a tarball for docker load / podman load to this `FILE` (\"\" for none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s := spec{binary: *binary, caCerts: *caCerts, created: time.Now().UTC().Truncate(time.Second)}
	if *created != "" {
		t, err := time.Parse(time.RFC3339, *created)
		if err != nil {
			return fmt.Errorf("-created: %w", err)
		}
		s.created = t.UTC()
	}
	if s.caCerts == "" {
		var err error
		if s.caCerts, err = hostCABundle(); err != nil {
			return err
		}
	}
	s.labels = map[string]string{
		"org.opencontainers.image.title":       "bccstop",
		"org.opencontainers.image.description": "Stops Baidu Cloud (BCC) instances on command from NATS JetStream",
		"org.opencontainers.image.version":     *version,
		"org.opencontainers.image.revision":    *revision,
		"org.opencontainers.image.created":     s.created.Format(time.RFC3339),
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	img, err := build(s)
	if err != nil {
		return err
	}
	if *layoutDir != "" {
		if err := os.RemoveAll(*layoutDir); err != nil {
			return err
		}
		p, err := layout.Write(*layoutDir, empty.Index)
		if err != nil {
			return err
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref.TagStr()})); err != nil {
			return err
		}
	}
	if *tarPath != "" {
		if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
			return err
		}
	}
	if *layoutDir == "" && *tarPath == "" {
		return errors.New("nothing to write: give -layout or -tarball")
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s (user %s): OCI layout %s, tarball %s\n", ref, digest, user, orNone(*layoutDir), orNone(*tarPath))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
