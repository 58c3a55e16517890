package guard

import (
	"errors"
	"fmt"
)

// Errors returned by this package; check them with errors.Is.
var (
	// ErrInvalidOption is wrapped by the error a constructor returns for
	// invalid options; the message names the option.
	ErrInvalidOption = errors.New("guard: invalid option")
	// ErrClosed is returned by Rate.Wait once Run has returned.
	ErrClosed = errors.New("guard: closed")
	// ErrNotReady is wrapped by Ready (and by the errors of calls that
	// could not be decided) while a guard cannot answer: not started, not
	// yet synchronised with NATS, or NATS unreachable. The message says why.
	ErrNotReady = errors.New("guard: not ready")
	// ErrInvalidBudget is wrapped by ParseBudget's errors.
	ErrInvalidBudget = errors.New("guard: invalid budget")
	// ErrInvalidHold is wrapped by PutHolds and ReleaseHolds for ids,
	// times or texts they refuse before writing anything.
	ErrInvalidHold = errors.New("guard: invalid hold")
	// ErrHeld is matched by a *HeldError: the instance is held by someone
	// else and the hold was not replaced.
	ErrHeld = errors.New("guard: instance is held")
)

func invalidOption(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, name, fmt.Sprintf(format, args...))
}

func notReady(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotReady, fmt.Sprintf(format, args...))
}
