package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

const completionUsage = `Usage: bccstop completion bash|zsh|fish

Prints a script that completes bccstop's commands, each command's flags,
the values of --output, --context (the NATS contexts) and the commands of
help and schedules. Load it:

  bash  source <(bccstop completion bash)          (for example in ~/.bashrc)
  zsh   source <(bccstop completion zsh)           (after compinit), or save it
        as _bccstop in a directory of $fpath
  fish  bccstop completion fish > ~/.config/fish/completions/bccstop.fish
`

func runCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop completion", completionUsage, stdout, stderr)
	shells, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	if len(shells) != 1 {
		fs.usageError("name one shell: bash, zsh or fish")
		return exitUsage
	}
	cmds := completions(ctx)
	switch shells[0] {
	case "bash":
		writeBash(stdout, cmds)
	case "zsh":
		writeZsh(stdout, cmds)
	case "fish":
		writeFish(stdout, cmds)
	default:
		fs.usageError("%q is not a shell this knows: bash, zsh or fish", shells[0])
		return exitUsage
	}
	return exitOK
}

// completable is a command and its flags, as the completion scripts need them.
type completable struct {
	command
	flags []completableFlag
	// positional is how to complete the arguments: "" for nothing, or a
	// list of words.
	positional string
}

type completableFlag struct {
	name, short string
	value       string // the value's name (FILE, URL, …), "" for a boolean flag
	usage       string // the first line of the usage
}

// flagSink receives the flags of a command's help (see flagCollector).
type flagSink struct {
	io.Writer
	fs *flag.FlagSet
}

func (s *flagSink) collectFlags(fs *flag.FlagSet) { s.fs = fs }

// completions asks every command for its help, and keeps its flags: the
// scripts complete exactly the flags the commands parse.
func completions(ctx context.Context) []completable {
	var out []completable
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	for _, c := range commands() {
		cc := completable{command: c}
		switch c.name {
		case "help":
			cc.positional = strings.Join(names, " ")
		case "completion":
			cc.positional = "bash zsh fish"
		case "schedules":
			cc.positional = "list cancel"
		}
		sink := &flagSink{Writer: io.Discard}
		c.run(ctx, []string{"--help"}, nil, sink, io.Discard)
		if sink.fs == nil {
			out = append(out, cc)
			continue
		}
		shorts := map[string]string{}
		sink.fs.VisitAll(func(f *flag.Flag) {
			if long, ok := strings.CutPrefix(f.Usage, shortFor); ok {
				shorts[strings.Fields(long)[0]] = f.Name
			}
		})
		sink.fs.VisitAll(func(f *flag.Flag) {
			if shorts[strings.Fields(strings.TrimPrefix(f.Usage, shortFor))[0]] == f.Name {
				return // an alias, completed with its flag
			}
			value, usage := flag.UnquoteUsage(f)
			usage, _, _ = strings.Cut(usage, "\n")
			if r := []rune(usage); len(r) > 72 {
				usage = string(r[:71]) + "…"
			}
			cc.flags = append(cc.flags, completableFlag{name: f.Name, short: shorts[f.Name], value: value, usage: usage})
		})
		out = append(out, cc)
	}
	return out
}

// contextsDir is where the nats CLI keeps its contexts, in shell syntax.
const contextsDir = `${XDG_CONFIG_HOME:-$HOME/.config}/nats/context`

func writeBash(w io.Writer, cmds []completable) {
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Fprintf(w, `# bash completion for bccstop; load it with: source <(bccstop completion bash)
_bccstop_contexts() {
    local f
    for f in %s/*.json; do
        [[ -e $f ]] || continue
        f=${f##*/}
        echo "${f%%.json}"
    done
}

_bccstop() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()
    if (( COMP_CWORD == 1 )); then
        COMPREPLY=($(compgen -W "%s --help --version" -- "$cur"))
        return
    fi
    local flags="" valued="" words=""
    case ${COMP_WORDS[1]} in
`, contextsDir, strings.Join(names, " "))
	for _, c := range cmds {
		var flags, valued []string
		for _, f := range c.flags {
			flags = append(flags, "--"+f.name)
			if f.short != "" {
				flags = append(flags, "-"+f.short)
			}
			if f.value != "" {
				valued = append(valued, "--"+f.name)
				if f.short != "" {
					valued = append(valued, "-"+f.short)
				}
			}
		}
		fmt.Fprintf(w, "        %s) flags=%q valued=%q words=%q ;;\n", c.name, strings.Join(flags, " "), strings.Join(valued, " "), c.positional)
	}
	fmt.Fprint(w, `    esac
    case $prev in
        --output|-o) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        --context) COMPREPLY=($(compgen -W "$(_bccstop_contexts)" -- "$cur")); return ;;
    esac
    if [[ " $valued " == *" $prev "* ]]; then
        return # a flag's value: file names, from -o default
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags --help" -- "$cur"))
    elif [[ -n $words ]] && (( COMP_CWORD == 2 )); then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}
complete -o default -F _bccstop bccstop
`)
}

func writeZsh(w io.Writer, cmds []completable) {
	fmt.Fprintf(w, `#compdef bccstop
# zsh completion for bccstop; load it with: source <(bccstop completion zsh)
# (after compinit), or save it as _bccstop in a directory of $fpath.

_bccstop_contexts() {
  local -a names
  names=(%s/*.json(N:t:r))
  compadd -a names
}

_bccstop() {
  local -a commands
  commands=(
`, contextsDir)
	for _, c := range cmds {
		fmt.Fprintf(w, "    %s\n", zshQuote(c.name+":"+strings.ReplaceAll(c.summary, "\n", " ")))
	}
	fmt.Fprint(w, `  )
  if (( CURRENT == 2 )); then
    if [[ $words[CURRENT] == -* ]]; then
      compadd -- --help --version
    else
      _describe -t commands 'bccstop command' commands
    fi
    return
  fi
  local cmd=$words[2]
  shift words
  (( CURRENT-- ))
  case $cmd in
`)
	for _, c := range cmds {
		specs := []string{"'(- *)'{-h,--help}'[show the help]'"}
		for _, f := range c.flags {
			spec := "[" + zshEscape(f.usage) + "]"
			if f.value != "" {
				action := ""
				switch {
				case f.name == "output":
					action = "(text json)"
				case f.name == "context":
					action = "_bccstop_contexts"
				case f.value == "FILE" || f.value == "DIR":
					action = "_files"
				}
				spec += ":" + zshEscape(f.value) + ":" + action
			}
			if f.short != "" {
				specs = append(specs, fmt.Sprintf("'(-%[1]s --%[2]s)'{-%[1]s,--%[2]s}%[3]s", f.short, f.name, zshQuote(spec)))
			} else {
				specs = append(specs, zshQuote("--"+f.name+spec))
			}
		}
		switch c.name {
		case "help":
			specs = append(specs, "'1:command:->commands'")
		case "stop":
			specs = append(specs, "'*:instance id:'")
		case "probe":
			specs = append(specs, "'1:URL:'")
		default:
			if c.positional != "" {
				specs = append(specs, zshQuote("1:argument:("+c.positional+")"))
			}
		}
		fmt.Fprintf(w, "    %s)\n      _arguments -s \\\n        %s\n      ;;\n", c.name, strings.Join(specs, " \\\n        "))
	}
	fmt.Fprint(w, `  esac
  if [[ $state == commands ]]; then
    _describe -t commands 'bccstop command' commands
  fi
}

if [[ $funcstack[1] == _bccstop ]]; then
  _bccstop "$@"
else
  compdef _bccstop bccstop
fi
`)
}

// zshQuote single-quotes s for zsh.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// zshEscape escapes what _arguments reads in a description or value name.
func zshEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

func writeFish(w io.Writer, cmds []completable) {
	fmt.Fprintf(w, `# fish completion for bccstop; save it as ~/.config/fish/completions/bccstop.fish
function __bccstop_contexts
    set -l dir $XDG_CONFIG_HOME
    test -n "$dir"; or set dir $HOME/.config
    for f in $dir/nats/context/*.json
        basename $f .json
    end
end

complete -c bccstop -f
complete -c bccstop -n __fish_use_subcommand -s h -l help -d 'show the help'
complete -c bccstop -n __fish_use_subcommand -l version -d 'print version and build information'
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c bccstop -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(strings.ReplaceAll(c.summary, "\n", " ")))
	}
	for _, c := range cmds {
		cond := fishQuote("__fish_seen_subcommand_from " + c.name)
		fmt.Fprintf(w, "complete -c bccstop -n %s -s h -l help -d 'show the help'\n", cond)
		for _, f := range c.flags {
			line := fmt.Sprintf("complete -c bccstop -n %s -l %s", cond, f.name)
			if f.short != "" {
				line += " -s " + f.short
			}
			switch {
			case f.value == "":
			case f.name == "output":
				line += " -x -a 'text json'"
			case f.name == "context":
				line += " -x -a '(__bccstop_contexts)'"
			case f.value == "FILE" || f.value == "DIR":
				line += " -r -F"
			default:
				line += " -x"
			}
			fmt.Fprintf(w, "%s -d %s\n", line, fishQuote(f.usage))
		}
		if c.positional != "" {
			fmt.Fprintf(w, "complete -c bccstop -n %s -a %s\n", cond, fishQuote(c.positional))
		}
	}
}

// fishQuote single-quotes s for fish.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
