module github.com/caddy-conflict/caddy-conflict/bench/gjson

go 1.26.8

require (
	github.com/caddy-conflict/caddy-conflict v0.0.0
	github.com/tidwall/gjson v1.20.4
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/klauspost/compress v1.20.1 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.3.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)

replace github.com/caddy-conflict/caddy-conflict => ../..
