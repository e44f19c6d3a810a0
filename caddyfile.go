package caddyconflict

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("conflict", parseCaddyfile)
	// After encode: behind auth and request_body, before handle, route and
	// reverse_proxy, and inside encode so the upstream's raw ETags are seen.
	httpcaddyfile.RegisterDirectiveOrder("conflict", httpcaddyfile.After, "encode")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Handler)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. It checks
// the syntax (arguments, numbers, sizes, durations; a sub-directive given
// twice, guard excepted); what the values mean is checked by Validate.
// Syntax:
//
//	conflict [<matcher>] {
//	    methods      <method...>                 # default PUT PATCH DELETE
//	    key          <template>                  # default {http.request.hostport}{http.request.uri.path}
//	    version      etag | last_modified | header <Field> | json <pointer> | hash
//	    require      precondition
//	    stale_status 409 | 412
//	    lock_timeout <duration>                  # default 10s
//	    ttl          <duration>                  # default 10m
//	    cache_size   <size>                      # default 64MiB
//	    normalize    <status...> | off           # default 409
//	    problem_base <uri>
//	    max_body     <size>                      # default 1MiB
//	    mode         enforce | report
//	    preflight
//	    verify
//	    store        memory | redis { address ...; on_store_error reject|forward; ... }
//	    history      <n> [<size>]                # last n JSON representations per key (size default 16MiB)
//	    history_scope <template>                 # representations per caller, e.g. {http.auth.user.id}
//	    include_current                          # stale-version problems carry the current representation
//	    merge        auto                        # rebase stale JSON writes that do not overlap
//	    guard        parent | children | reference <pointer> <template>   # several allowed
//	    handle_errors                            # rejections go to the site's handle_errors ({http.conflict.problem.*})
//	    log_keys                                 # rejection log lines (Info) carry the key
//	    method_override on | off                 # default on: POST + X-HTTP-Method-Override: PUT is a PUT
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for d.NextBlock(0) {
		name := d.Val()
		args := d.RemainingArgs()
		if seen[name] && name != "guard" {
			return d.Errf("%s: given twice; give it once (only guard may repeat)", name)
		}
		seen[name] = true
		need := func(n int) error {
			if len(args) != n {
				return d.Errf("%s: expected %d argument(s), got %d", name, n, len(args))
			}
			return nil
		}
		switch name {
		case "methods":
			if len(args) == 0 {
				return d.Errf("methods: at least one method is required")
			}
			h.Methods = nil
			for _, m := range args {
				h.Methods = append(h.Methods, strings.ToUpper(m))
			}
		case "key":
			if err := need(1); err != nil {
				return err
			}
			h.Key = args[0]
		case "version":
			if len(args) == 0 {
				return d.Errf("version: expected etag, last_modified, header <Field>, json <pointer> or hash")
			}
			v := &VersionSource{Source: args[0]}
			switch args[0] {
			case "header":
				if len(args) != 2 {
					return d.Errf("version: header needs exactly one header field name")
				}
				v.Field = args[1]
			case "json":
				if len(args) != 2 {
					return d.Errf("version: json needs exactly one JSON pointer, such as /version")
				}
				v.Pointer = args[1]
			default:
				if len(args) != 1 {
					return d.Errf("version: %s takes no argument", args[0])
				}
			}
			h.Version = v
		case "require":
			if err := need(1); err != nil {
				return err
			}
			h.Require = args[0]
		case "stale_status":
			if err := need(1); err != nil {
				return err
			}
			s, err := strconv.Atoi(args[0])
			if err != nil {
				return d.Errf("stale_status: %q is not a status code", args[0])
			}
			h.StaleStatus = s
		case "lock_timeout", "ttl":
			if err := need(1); err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil {
				return d.Errf("%s: invalid duration %q", name, args[0])
			}
			if name == "ttl" {
				h.TTL = caddy.Duration(dur)
			} else {
				h.LockTimeout = caddy.Duration(dur)
			}
		case "cache_size", "max_body":
			if err := need(1); err != nil {
				return err
			}
			n, err := humanize.ParseBytes(args[0])
			if err != nil || n == 0 || n > 1<<50 {
				return d.Errf("%s: invalid size %q (for example 64MiB)", name, args[0])
			}
			if name == "cache_size" {
				h.CacheSize = int64(n)
			} else {
				h.MaxBody = int64(n)
			}
		case "normalize":
			if len(args) == 0 {
				return d.Errf("normalize: expected statuses such as 409 412, or off")
			}
			h.Normalize = nil
			if len(args) == 1 && args[0] == "off" {
				h.Normalize = []int{0}
				continue
			}
			for _, a := range args {
				s, err := strconv.Atoi(a)
				if err != nil || s == 0 {
					return d.Errf("normalize: %q is not a status code", a)
				}
				h.Normalize = append(h.Normalize, s)
			}
		case "problem_base":
			if err := need(1); err != nil {
				return err
			}
			h.ProblemBase = args[0]
		case "mode":
			if err := need(1); err != nil {
				return err
			}
			h.Mode = args[0]
		case "preflight", "verify":
			if err := need(0); err != nil {
				return err
			}
			if name == "preflight" {
				h.Preflight = true
			} else {
				h.Verify = true
			}
		case "guard":
			if len(args) == 0 {
				return d.Errf("guard: expected parent, children or reference <pointer> <template>")
			}
			g := Guard{Kind: args[0]}
			switch {
			case args[0] == GuardReference:
				if len(args) != 3 {
					return d.Errf("guard: reference needs a JSON pointer and a path template, such as /categoryId /categories/{value}")
				}
				g.Pointer, g.Template = args[1], args[2]
			case len(args) != 1:
				return d.Errf("guard: %s takes no argument", args[0])
			}
			h.Guards = append(h.Guards, g)
		case "store":
			if len(args) != 1 {
				return d.Errf("store: expected memory or redis")
			}
			mod, err := caddyfile.UnmarshalModule(d, "http.handlers.conflict.stores."+args[0])
			if err != nil {
				return d.Errf("store: %v", err)
			}
			h.StoreRaw = caddyconfig.JSONModuleObject(mod, "type", args[0], nil)
		case "history":
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("history: expected the number of representations per key and a size, such as history 8 16MiB")
			}
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return d.Errf("history: %q is not a number of representations", args[0])
			}
			h.History = &HistoryConfig{Count: n}
			if len(args) == 2 {
				size, err := humanize.ParseBytes(args[1])
				if err != nil || size == 0 || size > 1<<50 {
					return d.Errf("history: invalid size %q (for example 16MiB)", args[1])
				}
				h.History.Size = int64(size)
			}
		case "method_override":
			if err := need(1); err != nil {
				return err
			}
			switch args[0] {
			case "on", "off":
				on := args[0] == "on"
				h.MethodOverride = &on
			default:
				return d.Errf("method_override: must be on or off, got %q", args[0])
			}
		case "history_scope":
			if err := need(1); err != nil {
				return err
			}
			h.HistoryScope = args[0]
		case "handle_errors", "log_keys":
			if err := need(0); err != nil {
				return err
			}
			if name == "handle_errors" {
				h.HandleErrors = true
			} else {
				h.LogKeys = true
			}
		case "include_current":
			if err := need(0); err != nil {
				return err
			}
			h.IncludeCurrent = true
		case "merge":
			if err := need(1); err != nil {
				return err
			}
			h.Merge = args[0]
		default:
			return d.Errf("unrecognized conflict sub-directive %q", name)
		}
	}
	// The meaning of the values is checked in one place, Validate; here it
	// is run so that `caddy adapt` already reports a bad value.
	if err := h.Validate(); err != nil {
		return d.Errf("%v", err)
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
