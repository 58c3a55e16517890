package config

import (
	"fmt"
	"io"
	"reflect"
	"text/tabwriter"
)

// Variable describes one environment variable the program reads.
type Variable struct {
	Name, Default, Description string
	Secret                     bool // may also be given as <Name>_FILE
}

// WorkerVariables lists every variable of the worker configuration, in
// declaration order; --help and the deployment checks use it.
func WorkerVariables() []Variable { return variables(reflect.TypeOf(Worker{})) }

func variables(t reflect.Type) []Variable {
	var out []Variable
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, variables(f.Type)...)
			continue
		}
		if name == "" {
			continue
		}
		v := Variable{Name: name, Default: f.Tag.Get("default"), Description: f.Tag.Get("desc")}
		for _, s := range secretFiles {
			v.Secret = v.Secret || s == name
		}
		out = append(out, v)
	}
	return out
}

// PrintVariables writes a table of vars to w.
func PrintVariables(w io.Writer, vars []Variable) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, v := range vars {
		name := v.Name
		if v.Secret {
			name += " (or " + v.Name + "_FILE)"
		}
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, def, v.Description)
	}
	tw.Flush()
}
