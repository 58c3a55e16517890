package deploycheck

// deploy/Dockerfile, read by BuildKit's own parser (the one `docker build`
// runs), its typed instructions, its linter (the rules of
// `docker build --check`) and its shell lexer for RUN lines.

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	dfparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/mod/modfile"
)

const dockerfile = "deploy/Dockerfile"

func TestDockerfile(t *testing.T) {
	report(t, checkDockerfile(t, theRepo))
}

func checkDockerfile(t *testing.T, r repo) problems {
	const file = dockerfile
	var ps problems
	data, err := r.read(file)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	parsed, err := dfparser.Parse(bytes.NewReader(data))
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	for _, w := range parsed.Warnings {
		ps.add("%s: %s", file, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, url, msg string, loc []dfparser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		ps.add("%s:%d: %s (BuildKit check %s, %s)", file, line, msg, rule, url)
	}})
	stages, metaArgs, err := instructions.Parse(parsed.AST, lint)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	if len(stages) < 2 {
		ps.add("%s: want a build stage and a runtime stage, found %d stage(s)", file, len(stages))
		return ps
	}
	build, final := stages[0], stages[len(stages)-1]

	// The build stage compiles a static binary of ./cmd/bccstop with the Go
	// release go.mod asks for.
	args := map[string]string{} // ARG name → default
	for _, a := range metaArgs {
		addArgs(args, &a)
	}
	for _, st := range stages {
		for _, a := range commands[*instructions.ArgCommand](st) {
			addArgs(args, a)
		}
	}
	goVersion := goModVersion(t)
	if m := regexp.MustCompile(`^golang:(\d+\.\d+)`).FindStringSubmatch(build.BaseName); m == nil {
		ps.add("%s: the build stage starts FROM %q; want an official golang:<version> image", file, build.BaseName)
	} else if !strings.HasPrefix(goVersion+".", m[1]+".") {
		ps.add("%s: the build stage uses Go %s but go.mod says go %s; keep them on the same release", file, m[1], goVersion)
	}
	var goBuild []string // the words of the RUN line that runs go build
	var env []string
	for k, v := range args {
		env = append(env, k+"="+v)
	}
	for _, run := range commands[*instructions.RunCommand](build) {
		words, err := runWords(run, env)
		if err != nil {
			ps.add("%s: %s: %v", file, run.String(), err)
			continue
		}
		if i := slices.Index(words, "go"); i >= 0 && i+1 < len(words) && words[i+1] == "build" {
			goBuild = words
		}
	}
	cgoOff := slices.Contains(goBuild, "CGO_ENABLED=0")
	for _, e := range commands[*instructions.EnvCommand](build) {
		for _, kv := range e.Env {
			cgoOff = cgoOff || kv.Key == "CGO_ENABLED" && kv.Value == "0"
		}
	}
	switch {
	case goBuild == nil:
		ps.add("%s: the build stage has no RUN … go build", file)
	case !cgoOff:
		ps.add("%s: go build runs without CGO_ENABLED=0; the runtime image has no libc, so the binary must be static", file)
	case !slices.Contains(goBuild, "./cmd/bccstop"):
		ps.add("%s: go build does not build ./cmd/bccstop", file)
	}
	// -X on a variable that does not exist is silently ignored by the linker.
	vars := mainStringVars(t)
	for _, name := range ldflagsVars(goBuild) {
		if !vars[name] {
			ps.add("%s: -ldflags sets main.%s, but cmd/bccstop declares no package-level string %s (it has: %s)", file, name, name, keys(vars))
		}
	}
	// The Makefile's `make image` passes build args; each must be declared.
	makefile, err := r.read("Makefile")
	if err != nil {
		ps.add("Makefile: %v", err)
	}
	if !bytes.Contains(makefile, []byte("-f "+file)) {
		ps.add("Makefile: `make image` does not build with -f %s", file)
	}
	for _, m := range regexp.MustCompile(`--build-arg\s+(\w+)=`).FindAllSubmatch(makefile, -1) {
		if _, ok := args[string(m[1])]; !ok {
			ps.add("%s: the Makefile passes --build-arg %s, but the Dockerfile declares no ARG %s", file, m[1], m[1])
		}
	}

	// The runtime stage: non-root, the binary as entrypoint, a valid command.
	user := ""
	if u := last(commands[*instructions.UserCommand](final)); u != nil {
		user = u.User
	}
	uid, _, _ := strings.Cut(user, ":")
	switch {
	case user == "" && !strings.HasSuffix(final.BaseName, ":nonroot"):
		ps.add("%s: the final stage (FROM %s) sets no USER, so the worker would run as root", file, final.BaseName)
	case uid == "0" || uid == "root":
		ps.add("%s: the final stage runs as USER %s; it must not be root", file, user)
	case user != "" && !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user):
		ps.add("%s: USER %q is not numeric; Kubernetes' runAsNonRoot can only verify a numeric user", file, user)
	}
	ep := last(commands[*instructions.EntrypointCommand](final))
	if ep == nil || ep.PrependShell || len(ep.CmdLine) != 1 {
		ps.add("%s: ENTRYPOINT: want exactly the binary in exec form, like [\"/bccstop\"], so CMD and `docker run IMAGE <command>` pick the subcommand (the image has no shell)", file)
		return ps
	}
	entrypoint := ep.CmdLine[0]
	copied := slices.ContainsFunc(commands[*instructions.CopyCommand](final), func(c *instructions.CopyCommand) bool {
		return c.From != "" && c.DestPath == entrypoint
	})
	if !copied {
		ps.add("%s: ENTRYPOINT runs %s, but no COPY --from=… puts the binary there", file, entrypoint)
	}
	switch cmd := last(commands[*instructions.CmdCommand](final)); {
	case cmd == nil || cmd.PrependShell:
		ps.add("%s: CMD: want the exec form, a JSON array like [\"worker\"]; the image has no shell", file)
	default:
		if p := commandProblem(t, cmd.CmdLine); p != "" {
			ps.add("%s: CMD %q: %s", file, cmd.CmdLine, p)
		}
	}

	// EXPOSE and HEALTHCHECK follow the worker's default BCCSTOP_HTTP_ADDR.
	defaultAddr := workerDefault(t, "BCCSTOP_HTTP_ADDR")
	p := port(defaultAddr)
	var exposed []string
	for _, e := range commands[*instructions.ExposeCommand](final) {
		exposed = append(exposed, e.Ports...)
	}
	if !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
		ps.add("%s: EXPOSE %v does not include %s, the port of the default BCCSTOP_HTTP_ADDR %q", file, exposed, p, defaultAddr)
	}
	hc := last(commands[*instructions.HealthCheckCommand](final))
	switch {
	case hc == nil || hc.Health == nil || len(hc.Health.Test) < 2 || hc.Health.Test[0] != "CMD":
		ps.add("%s: HEALTHCHECK: want HEALTHCHECK [options] CMD [\"%s\", \"probe\", URL] in exec form; the image has no shell", file, entrypoint)
	case hc.Health.Test[1] != entrypoint:
		ps.add("%s: HEALTHCHECK runs %s; the image has no shell or curl, only %s", file, hc.Health.Test[1], entrypoint)
	default:
		if p := probeProblem(t, hc.Health.Test[2:], defaultAddr); p != "" {
			ps.add("%s: HEALTHCHECK %q: %s", file, hc.Health.Test[1:], p)
		}
	}
	return ps
}

// commands returns the stage's instructions of type C, in order.
func commands[C instructions.Command](st instructions.Stage) []C {
	var out []C
	for _, c := range st.Commands {
		if c, ok := c.(C); ok {
			out = append(out, c)
		}
	}
	return out
}

// last returns the last of cs, the one that takes effect, or nil.
func last[C any](cs []*C) *C {
	if len(cs) == 0 {
		return nil
	}
	return cs[len(cs)-1]
}

func addArgs(args map[string]string, a *instructions.ArgCommand) {
	for _, kv := range a.Args {
		args[kv.Key] = kv.ValueString()
	}
}

// runWords splits a RUN line into words as the shell would, expanding the
// build args that have defaults.
func runWords(run *instructions.RunCommand, env []string) ([]string, error) {
	if !run.PrependShell {
		return run.CmdLine, nil // exec form: the words already
	}
	lex := shell.NewLex('\\')
	lex.SkipUnsetEnv = true
	return lex.ProcessWords(strings.Join(run.CmdLine, " "), shell.EnvsFromSlice(env))
}

// ldflagsVars returns the NAMEs of -X main.NAME=… in go build's -ldflags.
func ldflagsVars(goBuild []string) []string {
	var flags string
	for i, w := range goBuild {
		if v, ok := strings.CutPrefix(w, "-ldflags="); ok {
			flags = v
		} else if w == "-ldflags" && i+1 < len(goBuild) {
			flags = goBuild[i+1]
		}
	}
	var out []string
	for _, m := range regexp.MustCompile(`-X[= ]\s*main\.(\w+)=`).FindAllStringSubmatch(flags, -1) {
		out = append(out, m[1])
	}
	return out
}

// goModVersion is the Go release of the go directive, such as "1.26".
func goModVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(theRepo.abs("go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil || f.Go == nil {
		t.Fatalf("go.mod: no go directive (%v)", err)
	}
	major, minor, _ := strings.Cut(f.Go.Version, ".")
	minor, _, _ = strings.Cut(minor, ".")
	return major + "." + minor
}

// mainStringVars lists cmd/bccstop's package-level string variables, the
// ones -ldflags -X can set.
func mainStringVars(t *testing.T) map[string]bool {
	t.Helper()
	dir := theRepo.abs("cmd/bccstop")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	vars := map[string]bool{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					isString := false
					if id, ok := vs.Type.(*ast.Ident); ok {
						isString = id.Name == "string"
					} else if vs.Type == nil && i < len(vs.Values) {
						lit, ok := vs.Values[i].(*ast.BasicLit)
						isString = ok && lit.Kind == token.STRING
					}
					if isString {
						vars[name.Name] = true
					}
				}
			}
		}
	}
	return vars
}
