// Command caddy is Caddy with its standard modules and caddy-conflict, for users without xcaddy and
// for tests that need a built binary:
//
//	go build -o caddy ./cmd/caddy
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-conflict/caddy-conflict"
)

func main() {
	caddycmd.Main()
}
