//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing here: only Linux can tie a child's life to its
// parent's. The bench reads /proc and is meant for Linux anyway.
func dieWithParent(*exec.Cmd) {}
