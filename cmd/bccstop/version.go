package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at build time by the Makefile: -ldflags "-X main.version=… -X main.commit=… -X main.built=…".
var (
	version = ""
	commit  = ""
	built   = ""
)

// versionString is the version, from the build flags or the module
// information the Go toolchain records.
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop version", "Usage: bccstop version\n\nPrints the version and how the binary was built (also: bccstop --version).\n", stdout, stderr)
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	fmt.Fprintf(stdout, "bccstop %s\n", versionString())
	c, b := commit, built
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && b == "":
				b = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if b == "" {
		b = "unknown"
	}
	fmt.Fprintf(stdout, "  commit:   %s\n  built:    %s\n  go:       %s %s/%s\n", c, b, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
