package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the program if the bench itself dies
// without its clean-up (kill -9), so no worker outlives it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
