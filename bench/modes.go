package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
)

var hashTag = regexp.MustCompile(`^"[0-9a-f]{16}"$`)

// checkModes checks, before the rounds, that each mode answers what it should besides the statuses wrk
// counts: the made-up ETags of `version json` and `version hash` on both document sizes, with the whole
// body behind them and a 304 for a client that has that version; the upstream's own ETag through B;
// and a Redis table that the redis configuration filled while it learned the PUT documents.
func (b *bench) checkModes() {
	fail := func(format string, args ...any) {
		b.failures = append(b.failures, "modes: "+fmt.Sprintf(format, args...))
	}
	for _, c := range b.configs {
		for _, base := range []int{kib1IDs, kib64IDs} {
			id := base + 7
			want := ""
			switch c.name {
			case "B":
				want = fmt.Sprintf(`"%d-1"`, id) // the upstream's
			case "json":
				want = fmt.Sprintf(`"%d-1"`, id) // the text of /version, which the upstream made its ETag's
			case "hash":
				want = "hash"
			default:
				continue
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/docs/%d", c.port, id)
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := client.Do(req)
			if err != nil {
				fail("GET %s through %s: %v", url, c.name, err)
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			tag := resp.Header.Get("ETag")
			switch {
			case err != nil || resp.StatusCode != http.StatusOK:
				fail("GET /docs/%d through %s: %s, %v", id, c.name, resp.Status, err)
				continue
			case want == "hash" && !hashTag.MatchString(tag), want != "hash" && tag != want:
				fail("GET /docs/%d through %s: ETag %q, want %s", id, c.name, tag, want)
			case resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) || len(body) < map[int]int{kib1IDs: 900, kib64IDs: 60_000}[base]:
				fail("GET /docs/%d through %s: %d bytes, Content-Length %q", id, c.name, len(body), resp.Header.Get("Content-Length"))
			}
			if c.name == "B" {
				continue // the upstream ignores preconditions, and B passes them on
			}
			req.Header.Set("If-None-Match", tag)
			if resp, err = client.Do(req); err != nil {
				fail("conditional GET /docs/%d through %s: %v", id, c.name, err)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotModified {
				fail("GET /docs/%d through %s with If-None-Match %s: %s, want 304", id, c.name, tag, resp.Status)
			}
		}
	}
	if b.redis != nil {
		n, err := b.redis.command("DBSIZE")
		if k, _ := strconv.Atoi(n); err != nil || k == 0 {
			fail("redis: DBSIZE %q, %v after the redis configuration learned its PUT documents", n, err)
		}
	}
}
