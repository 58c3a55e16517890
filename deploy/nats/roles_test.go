package natsauth_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
	"github.com/bccstop/bccstop/internal/layout"
)

// TestPermissionsFileIsRendered: the shipped permissions.conf is what the
// code renders from the layout's names, so no subject is restated by hand
// (run go run ./deploy/nats/render after changing a role).
func TestPermissionsFileIsRendered(t *testing.T) {
	if got := natsauth.Render(layout.Defaults()); got != natsauth.File {
		t.Fatal("deploy/nats/permissions.conf is not what the code renders: run go run ./deploy/nats/render")
	}
}

// TestShippedServerConfigLoads: the Compose server configuration parses,
// gives every role a user in the account KEDA names, and refuses to load
// without the passwords (no user without one).
func TestShippedServerConfigLoads(t *testing.T) {
	if _, err := server.ProcessConfigFile("nats-server.conf"); err == nil {
		t.Fatal("the configuration loaded with no passwords in the environment")
	}
	for _, role := range natsauth.RoleNames {
		t.Setenv("BCCSTOP_"+upper(role)+"_PASSWORD", "pw-"+role)
	}
	opts, err := server.ProcessConfigFile("nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	for _, role := range natsauth.RoleNames {
		u := users[role]
		if u == nil {
			t.Fatalf("no user %s", role)
		}
		if u.Account == nil || u.Account.Name != natsauth.Account {
			t.Errorf("user %s is not in the account %s", role, natsauth.Account)
		}
		if u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0 {
			t.Errorf("user %s has no publish permissions", role)
		}
	}
	if opts.NoAuthUser != "" {
		t.Errorf("no_auth_user %q: connections without credentials would be let in", opts.NoAuthUser)
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}
