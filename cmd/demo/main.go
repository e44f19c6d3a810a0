// Command demo is the one-command demo: a legacy JSON API that applies stale writes blindly on
// 127.0.0.1:8081 (articles and categories), and Caddy with caddy-conflict in front of it on :8080,
// configured by Caddyfile.example. Run it from the repository root:
//
//	go run ./cmd/demo
//
// Arguments, if any, go to Caddy instead of the default `run --config Caddyfile.example --adapter caddyfile`.
package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-conflict/caddy-conflict"
	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// upstreamAddr is where Caddyfile.example's reverse_proxy expects the legacy API.
const upstreamAddr = "127.0.0.1:8081"

func main() {
	ln, err := net.Listen("tcp", upstreamAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: the legacy API needs %s: %v\n", upstreamAddr, err)
		os.Exit(1)
	}
	api := &http.Server{Handler: legacyapi.New(legacyapi.DefaultSeed()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "demo: legacy API: %v\n", err)
			os.Exit(1)
		}
	}()

	if len(os.Args) > 1 {
		os.Args[0] = "caddy"
	} else {
		config, err := findConfig()
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v (run it from the repository root, or pass Caddy's own arguments)\n", err)
			os.Exit(1)
		}
		os.Args = []string{"caddy", "run", "--config", config, "--adapter", "caddyfile"}
		fmt.Fprint(os.Stderr, banner)
	}
	caddycmd.Main()
}

// findConfig looks for Caddyfile.example in the working directory and the folders above it, up to
// the module root.
func findConfig() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		config := filepath.Join(dir, "Caddyfile.example")
		if _, err := os.Stat(config); err == nil {
			return config, nil
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no Caddyfile.example found")
}

const banner = `
caddy-conflict demo
  legacy API, applies every write blindly:  http://127.0.0.1:8081  (/articles, /categories)
  the same API behind caddy-conflict:       http://localhost:8080

  # read a version
  curl -si localhost:8080/articles/1
  # write based on it: 200 and a new ETag
  curl -si -X PUT localhost:8080/articles/1 -H 'Content-Type: application/json' \
       -H 'If-Match: "<ETag from the GET>"' -d '{"title":"mine"}'
  # the same PUT again with the now stale ETag: 409 application/problem+json
  # the same stale PUT sent straight to :8081: 200, the update is lost

`
