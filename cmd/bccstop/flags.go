package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// flagSet is a command's flags and its help. --help (-h) prints the help
// on stdout and exits 0; a bad flag or argument is reported on stderr with
// a pointer to the help and exits 2, so that stdout carries only what the
// command was asked for (--output json > file stays clean).
type flagSet struct {
	*flag.FlagSet
	// help writes what precedes the list of flags: the usage line and
	// what the command does.
	help           func(io.Writer)
	stdout, stderr io.Writer
}

// newFlagSet is the flag set of the command name ("bccstop stop"), whose
// help starts with text.
func newFlagSet(name, text string, stdout, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr,
		help: func(w io.Writer) { io.WriteString(w, text) }}
	fs.SetOutput(io.Discard) // parse reports errors itself
	fs.Usage = func() {}
	return fs
}

// parse parses args, with flags anywhere among the other arguments (so
// "bccstop stop i-a i-b --force" works as a user expects; "--" ends the
// flags), and returns the other arguments. On --help, or on a bad flag
// after reporting it, the error says how to exit (flagExit).
func (fs *flagSet) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.printHelp(fs.stdout)
			} else {
				fs.usageError("%s", doubleDash(err.Error()))
			}
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// errUsage is a usage error already reported.
var errUsage = errors.New("usage error")

// parseNoArgs is parse for a command that takes flags only.
func (fs *flagSet) parseNoArgs(args []string) error {
	positional, err := fs.parse(args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		fs.usageError("unexpected argument %q", positional[0])
		return errUsage
	}
	return nil
}

// usageError reports a usage error on stderr, with where to find the help.
func (fs *flagSet) usageError(format string, a ...any) {
	fmt.Fprintf(fs.stderr, "%s: %s\nRun \"bccstop help %s\" for usage.\n", fs.Name(), fmt.Sprintf(format, a...), strings.TrimPrefix(fs.Name(), "bccstop "))
}

// flagCollector is a writer that also wants the flags of a help written to
// it: completion gathers every command's flags by asking for its help.
type flagCollector interface {
	collectFlags(*flag.FlagSet)
}

// printHelp writes the help and the flags.
func (fs *flagSet) printHelp(w io.Writer) {
	if c, ok := w.(flagCollector); ok {
		c.collectFlags(fs.FlagSet)
	}
	fs.help(w)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	// PrintDefaults writes "  -name VALUE\n    \tusage"; a long name gets
	// the double dash the README and most tools use.
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok && len(strings.Fields(rest)) > 0 && len(strings.Fields(rest)[0]) > 1 {
			line = "  --" + rest
		}
		io.WriteString(w, line)
	}
	fmt.Fprint(w, "  -h, --help\n    \tshow this help\n")
}

// shortFor begins the usage of a one-letter alias (see shorthand).
const shortFor = "short for --"

// shorthand makes -short an alias of the flag --long.
func shorthand(fs *flag.FlagSet, short, long string) {
	f := fs.Lookup(long)
	usage := shortFor + long
	if name, _ := flag.UnquoteUsage(f); name != "" {
		usage += " `" + name + "`"
	}
	fs.Var(f.Value, short, usage)
}

var singleDash = regexp.MustCompile(`(flag|for|defined:|argument:) -(\w[\w-]+)`)

// doubleDash rewrites the flag package's "-name" in its errors as "--name".
func doubleDash(msg string) string { return singleDash.ReplaceAllString(msg, "$1 --$2") }

// flagExit maps a flag parsing error to an exit status: --help is success.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	return exitUsage
}

// durationValue is a time.Duration flag whose parse error names the
// forms it takes, where the flag package says only "parse error".
type durationValue time.Duration

// durationForms is what a duration flag accepts, for its errors.
const durationForms = "want a number and a unit, like 90s, 30m, 1h or 1h30m (units: ms, s, m, h)"

func (d *durationValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New(durationForms)
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string { return (*time.Duration)(d).String() }

// duration defines a duration flag (see durationValue). Its usage should
// name its value in back quotes (`DURATION`), as the help shows it.
func duration(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	d := def
	fs.Var((*durationValue)(&d), name, usage)
	return &d
}
