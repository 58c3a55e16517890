// Command render writes deploy/nats/permissions.conf from the code (see
// package natsauth). Run it from the repository's root:
//
//	go run ./deploy/nats/render
package main

import (
	"fmt"
	"os"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
	"github.com/bccstop/bccstop/internal/layout"
)

func main() {
	if err := os.WriteFile("deploy/nats/permissions.conf", []byte(natsauth.Render(layout.Defaults())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}
