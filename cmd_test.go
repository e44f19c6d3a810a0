package caddyconflict

import (
	"net/http"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
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
