package caddyconflict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "conflict",
		Usage: "get <key> | list [<prefix>] | purge [--prefix] <key_or_prefix> [--config <path> [--adapter <name>]] [--address <interface>]",
		Short: "Reads and purges the version table of caddy-conflict",
		Long: `
Calls the admin API of a running Caddy (admin.api.conflict):

  caddy conflict get example.com/articles/1       one key's state
  caddy conflict list example.com/articles/       keys with a prefix (--limit, --after)
  caddy conflict purge example.com/articles/1     forget one key
  caddy conflict purge --prefix example.com/      forget every key with a prefix

The admin endpoint is found as caddy stop finds it: --address if given,
else the admin listen address of the --config file (adapted with
--adapter, or as a Caddyfile if its name says so), else the CADDY_ADMIN
environment variable, else localhost:2019. Unix sockets (unix//path) work.

Keys are written as the key template expands them (default: the Host,
lower-cased, then the cleaned path). The next write to a purged key is
forwarded unchecked: purge after writing to the upstream behind the proxy.
`,
		CobraFunc: func(cmd *cobra.Command) {
			// The same flags as caddy stop, read the same way (adminAddress).
			cmd.PersistentFlags().StringP("config", "c", "", "Configuration file to use to parse the admin address, if --address is not used")
			cmd.PersistentFlags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
			cmd.PersistentFlags().String("address", "", "The address to use to reach the admin API endpoint, if not the default")
			get := &cobra.Command{
				Use:   "get <key>",
				Short: "Shows what the proxy knows about one key",
				Args:  cobra.ExactArgs(1),
				RunE: func(c *cobra.Command, args []string) error {
					return runConflictCommand(c, adminCall{op: "get", arg: args[0]})
				},
			}
			list := &cobra.Command{
				Use:   "list [<prefix>]",
				Short: "Lists the keys with a prefix, a page at a time",
				Args:  cobra.MaximumNArgs(1),
				RunE: func(c *cobra.Command, args []string) error {
					call := adminCall{op: "list"}
					if len(args) == 1 {
						call.arg = args[0]
					}
					call.after, _ = c.Flags().GetString("after")
					call.limit, _ = c.Flags().GetInt("limit")
					return runConflictCommand(c, call)
				},
			}
			list.Flags().String("after", "", `Cursor: the "next" of the previous page`)
			list.Flags().Int("limit", 0, "Keys per page (default 100, at most 1000)")
			purge := &cobra.Command{
				Use:   "purge [--prefix] <key_or_prefix>",
				Short: "Forgets one key, or every key with a prefix",
				Args:  cobra.ExactArgs(1),
				RunE: func(c *cobra.Command, args []string) error {
					prefix, _ := c.Flags().GetBool("prefix")
					return runConflictCommand(c, adminCall{op: "purge", arg: args[0], prefix: prefix})
				},
			}
			purge.Flags().Bool("prefix", false, "Purge every key starting with the argument")
			cmd.AddCommand(get, list, purge)
		},
	})
}

// adminCall is one `caddy conflict` subcommand.
type adminCall struct {
	op     string // get, list, purge
	arg    string // key or prefix
	prefix bool   // purge: arg is a prefix
	after  string // list: cursor
	limit  int    // list: page size (0: the server's default)
}

// request is the method and URI of the admin API request for c.
func (c adminCall) request() (method, uri string, err error) {
	q := url.Values{}
	method = http.MethodGet
	switch c.op {
	case "get":
		if c.arg == "" {
			return "", "", fmt.Errorf("get: the key must not be empty")
		}
		q.Set("key", c.arg)
	case "list":
		q.Set("prefix", c.arg)
		if c.after != "" {
			q.Set("after", c.after)
		}
		if c.limit != 0 {
			q.Set("limit", strconv.Itoa(c.limit))
		}
	case "purge":
		method = http.MethodDelete
		switch {
		case c.prefix:
			q.Set("prefix", c.arg)
		case c.arg == "":
			return "", "", fmt.Errorf("purge: the key must not be empty (to purge every key: --prefix '')")
		default:
			q.Set("key", c.arg)
		}
	default:
		return "", "", fmt.Errorf("unknown subcommand %q", c.op)
	}
	return method, "/conflict/versions?" + q.Encode(), nil
}

// adminAddress finds the admin endpoint with the flags and precedence of
// caddy stop: --address, else --config's admin.listen, else
// caddy.DefaultAdminListen (CADDY_ADMIN, else localhost:2019).
func adminAddress(cmd *cobra.Command) (string, error) {
	address, _ := cmd.Flags().GetString("address")
	configFile, _ := cmd.Flags().GetString("config")
	adapter, _ := cmd.Flags().GetString("adapter")
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, adapter)
	if err != nil {
		return "", fmt.Errorf("finding the admin API address: %w", err)
	}
	return addr, nil
}

func runConflictCommand(cmd *cobra.Command, call adminCall) error {
	method, uri, err := call.request()
	if err != nil {
		return err
	}
	addr, err := adminAddress(cmd)
	if err != nil {
		return err
	}
	// AdminAPIRequest dials unix sockets too, sets the Origin the admin
	// endpoint expects and turns an error status into an error carrying
	// the problem document.
	res, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, nil)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") != nil {
		out.Reset()
		out.Write(body)
	}
	out.WriteByte('\n')
	_, err = cmd.OutOrStdout().Write(out.Bytes())
	return err
}
