package deploycheck

// The README's lines for trying Compose from the host, held to
// docker-compose.yml: what they export is what the file's services accept
// there, and the instances they name are in the simulator's seed
// (TestComposeSimulatorFromTheHost runs their bccstop lines, as dry runs,
// against the simulator as the file starts it).

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/layout"
)

const (
	readmeFile = "README.md"
	// composeSection is the README's section with the Compose lines.
	composeSection = "## Deploying and scaling out"
)

// readmeComposeLines returns the logical lines (continuations joined) of
// the sh blocks in the README's section on deploying, and the variables
// their export lines set.
func readmeComposeLines(r repo) (lines []string, exported map[string]string, err error) {
	raw, err := r.read(readmeFile)
	if err != nil {
		return nil, nil, err
	}
	_, section, _ := strings.Cut(string(raw), "\n"+composeSection+"\n")
	section, _, _ = strings.Cut(section, "\n## ")
	exported = map[string]string{}
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		for _, line := range strings.Split(strings.ReplaceAll(block[1], "\\\n", " "), "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			lines = append(lines, line)
			if rest, ok := strings.CutPrefix(line, "export "); ok {
				for _, kv := range strings.Fields(rest) {
					if k, v, ok := strings.Cut(kv, "="); ok {
						exported[k] = v
					}
				}
			}
		}
	}
	return lines, exported, nil
}

// seedSource is the host file a service's --seed reads, through its bind
// mount, or "".
func seedSource(svc types.ServiceConfig) string {
	seed := flagValue(svc.Command, "seed")
	for _, v := range svc.Volumes {
		if seed != "" && v.Type == types.VolumeTypeBind && v.Target == seed {
			return v.Source
		}
	}
	return ""
}

// publishedOnLoopback is the host port svc publishes target on at
// 127.0.0.1, or "".
func publishedOnLoopback(svc types.ServiceConfig, target string) string {
	for _, p := range svc.Ports {
		if strconv.Itoa(int(p.Target)) == target && p.HostIP == "127.0.0.1" {
			return p.Published
		}
	}
	return ""
}

func TestREADMEComposeLines(t *testing.T) {
	report(t, checkREADMECompose(t, theRepo))
}

func checkREADMECompose(t *testing.T, r repo) problems {
	var ps problems
	c, err := loadCompose(r, "default")
	if err != nil {
		ps.add("%s: %v", composeFile, err)
		return ps
	}
	lines, exported, err := readmeComposeLines(r)
	if err != nil || len(lines) == 0 {
		ps.add("%s: no sh block in %q with the lines for trying Compose from the host (%v)", readmeFile, composeSection, err)
		return ps
	}
	worker, sim, nats := c.Services["worker"], c.Services["fakebcc"], c.Services["nats"]
	workerEnv := environment(worker)
	want := map[string]string{
		"BCE_ACCESS_KEY_ID":     workerEnv["BCE_ACCESS_KEY_ID"],
		"BCE_SECRET_ACCESS_KEY": workerEnv["BCE_SECRET_ACCESS_KEY"],
		"NATS_URL":              "nats://127.0.0.1:" + publishedOnLoopback(nats, "4222"),
		"BCC_ENDPOINT":          "http://127.0.0.1:" + publishedOnLoopback(worker, port(flagValue(sim.Command, "addr"))),
	}
	for _, k := range keys(want) {
		if exported[k] != want[k] {
			ps.add("%s: the Compose lines export %s=%s; from the host, %s gives %s", readmeFile, k, exported[k], composeFile, want[k])
		}
	}

	// The user and password are a publisher's, as the server loads them.
	if opts, problem := composeNATSOptions(composeFile, nats); problem != "" {
		ps.add("%s", problem)
	} else {
		var publisher []string
		for _, role := range natsauth.Roles(layout.Defaults()) {
			if role.Name == natsauth.Publisher {
				publisher = role.Publish
			}
		}
		if !slices.ContainsFunc(opts.Users, func(u *server.User) bool {
			return u.Username == exported["NATS_USER"] && u.Password == exported["NATS_PASSWORD"] &&
				u.Permissions != nil && u.Permissions.Publish != nil && slices.Equal(u.Permissions.Publish.Allow, publisher)
		}) {
			ps.add("%s: the Compose lines connect as NATS_USER=%s with NATS_PASSWORD=%s, which is no publisher of %s's NATS server", readmeFile, exported["NATS_USER"], exported["NATS_PASSWORD"], composeFile)
		}
	}

	// The instances they name exist in the simulator.
	seeded := fakebcc.New(fakebcc.Options{})
	if source := seedSource(sim); source == "" {
		ps.add("%s: service fakebcc has no seed mounted", composeFile)
	} else if _, err := seeded.LoadSeedFile(source); err != nil {
		ps.add("%s: %v", composeFile, err)
	}
	for _, line := range lines {
		for _, id := range regexp.MustCompile(`"instanceId":"(i-[^"]+)"`).FindAllStringSubmatch(line, -1) {
			if _, ok := seeded.Status(id[1]); !ok {
				ps.add("%s: the Compose line %q names %s, which the simulator's seed does not have (it would be unknown: 404 NoSuchObject)", readmeFile, line, id[1])
			}
		}
	}
	return ps
}
