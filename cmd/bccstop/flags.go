package main

import (
	"errors"
	"flag"
)

// flagExit maps a flag parsing error to an exit status: --help is success.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}
