package caddyconflict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func TestAdminCallRequest(t *testing.T) {
	for _, c := range []struct {
		call       adminCall
		method     string
		uri        string
		wantErrors bool
	}{
		{call: adminCall{op: "get", arg: "example.com/articles/1"}, method: http.MethodGet,
			uri: "/conflict/versions?key=example.com%2Farticles%2F1"},
		{call: adminCall{op: "get", arg: "example.com/a b?c&d"}, method: http.MethodGet,
			uri: "/conflict/versions?key=example.com%2Fa+b%3Fc%26d"},
		{call: adminCall{op: "get"}, wantErrors: true},
		{call: adminCall{op: "list", arg: "example.com/"}, method: http.MethodGet,
			uri: "/conflict/versions?prefix=example.com%2F"},
		{call: adminCall{op: "list"}, method: http.MethodGet, uri: "/conflict/versions?prefix="},
		{call: adminCall{op: "list", arg: "example.com/", after: "example.com/b", limit: 10}, method: http.MethodGet,
			uri: "/conflict/versions?after=example.com%2Fb&limit=10&prefix=example.com%2F"},
		{call: adminCall{op: "purge", arg: "example.com/articles/1"}, method: http.MethodDelete,
			uri: "/conflict/versions?key=example.com%2Farticles%2F1"},
		{call: adminCall{op: "purge", arg: "example.com/", prefix: true}, method: http.MethodDelete,
			uri: "/conflict/versions?prefix=example.com%2F"},
		{call: adminCall{op: "purge", prefix: true}, method: http.MethodDelete, uri: "/conflict/versions?prefix="},
		{call: adminCall{op: "purge"}, wantErrors: true}, // an empty key would purge nothing; everything needs --prefix ''
		{call: adminCall{op: "drop", arg: "x"}, wantErrors: true},
	} {
		method, uri, err := c.call.request()
		if c.wantErrors {
			if err == nil {
				t.Errorf("%+v: no error, want one", c.call)
			}
			continue
		}
		if err != nil || method != c.method || uri != c.uri {
			t.Errorf("%+v: %s %s (%v), want %s %s", c.call, method, uri, err, c.method, c.uri)
		}
	}
}

func TestConflictCommandRegistered(t *testing.T) {
	cmd, ok := caddycmd.Commands()["conflict"]
	if !ok || cmd.CobraFunc == nil {
		t.Fatal("caddy conflict is not registered")
	}
}

// conflictCommand builds `caddy conflict` as caddycmd does, with its output
// captured.
func conflictCommand(t *testing.T, out *bytes.Buffer, args ...string) *cobra.Command {
	t.Helper()
	cmd := &cobra.Command{Use: "conflict"}
	caddycmd.Commands()["conflict"].CobraFunc(cmd)
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(io.Discard)
	return cmd
}

func freeAdminAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprintf("localhost:%d", ln.Addr().(*net.TCPAddr).Port)
}

func writeCaddyfile(t *testing.T, admin string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte("{\n\tadmin "+admin+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The admin endpoint is found as caddy stop finds it: --address, else the
// config file's admin listen address, else Caddy's default.
func TestConflictCommandAdminAddress(t *testing.T) {
	caddyfile := writeCaddyfile(t, "localhost:2100")
	jsonConfig := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(jsonConfig, []byte(`{"admin": {"listen": "unix//run/caddy-admin.sock"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{args: nil, want: caddy.DefaultAdminListen},
		{args: []string{"--address", "localhost:2200"}, want: "localhost:2200"},
		{args: []string{"--config", caddyfile}, want: "localhost:2100"},
		{args: []string{"-c", caddyfile, "-a", "caddyfile"}, want: "localhost:2100"},
		{args: []string{"--config", caddyfile, "--address", "localhost:2200"}, want: "localhost:2200"},
		{args: []string{"--config", jsonConfig}, want: "unix//run/caddy-admin.sock"},
	} {
		var got string
		cmd := conflictCommand(t, new(bytes.Buffer), append([]string{"list"}, c.args...)...)
		list, _, err := cmd.Find([]string{"list"})
		if err != nil {
			t.Fatal(err)
		}
		list.RunE = func(c *cobra.Command, _ []string) (err error) {
			got, err = adminAddress(c)
			return err
		}
		if err := cmd.Execute(); err != nil || got != c.want {
			t.Errorf("%v: %q (%v), want %q", c.args, got, err, c.want)
		}
	}
	if err := conflictCommand(t, new(bytes.Buffer), "list", "--config", filepath.Join(t.TempDir(), "missing")).Execute(); err == nil {
		t.Error("no error for a config file that does not exist")
	}
}

// A Caddy whose admin endpoint is not on localhost:2019 is reached through
// the Caddyfile that configures it.
func TestConflictCommandReachesAdminFromCaddyfile(t *testing.T) {
	admin := freeAdminAddress(t)
	cfg := fmt.Sprintf(`{"admin": {"listen": %q, "config": {"persist": false}}}`, admin)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatalf("starting the admin endpoint on %s: %v", admin, err)
	}
	t.Cleanup(func() {
		_ = caddy.Load([]byte(`{"admin": {"disabled": true, "config": {"persist": false}}}`), true)
		_ = caddy.Stop()
	})
	caddyfile := writeCaddyfile(t, admin)

	var out bytes.Buffer
	if err := conflictCommand(t, &out, "list", "--limit", "1", "--config", caddyfile).Execute(); err != nil {
		t.Fatalf("caddy conflict list --config %s: %v", caddyfile, err)
	}
	var page struct {
		Items []KeyState `json:"items"`
		Next  *string    `json:"next"`
	}
	if err := json.Unmarshal(out.Bytes(), &page); err != nil || page.Items == nil || page.Next == nil {
		t.Fatalf("output is not a list page of the admin API (%v):\n%s", err, out.String())
	}

	out.Reset()
	err := conflictCommand(t, &out, "get", "example.com/never-seen", "--config", caddyfile).Execute()
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("get of an unknown key: %v, want the admin API's 404 problem", err)
	}
}
