package backends

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireChromium skips the test (or fails it under CONFLICT_REQUIRE_BACKENDS=1) when Chromium is
// missing.
func RequireChromium(t testing.TB) {
	t.Helper()
	if lookPath("chromium") == "" {
		missing(t, "chromium not installed: run .ci/run or apt-get install chromium")
	}
}

// chromiumFlags are DumpDOM's flags before the URL: headless, as root (no sandbox), no GPU, no
// /dev/shm, no traffic of its own (no update checks, sync, QUIC or first-run pages), and --dump-dom
// with a virtual-time budget: Chromium prints the DOM once the page's timers and fetches have settled
// (or 15 s of virtual time have passed), so a page writes its results into an element.
var chromiumFlags = []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
	"--disable-quic", "--dump-dom", "--virtual-time-budget=15000"}

// DumpDOM loads url in headless Chromium (/usr/bin/chromium, Debian's chromium package) with a fresh
// profile and returns the page's DOM, serialized, after its scripts and fetches settled. It takes about
// 2 s on a 2-core machine. A missing Chromium gives an error wrapping ErrNotInstalled; when ctx ends,
// Chromium and its helper processes are killed. Chromium's stderr (D-Bus complaints and the like,
// always some) is only part of the error when Chromium fails.
func DumpDOM(ctx context.Context, url string) (string, error) {
	bin := lookPath("chromium")
	if bin == "" {
		return "", fmt.Errorf("chromium: %w (apt-get install chromium)", ErrNotInstalled)
	}
	profile, err := os.MkdirTemp("", "chromium-profile-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+profile, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = profile
	// The browser (the wrapper script execs it) leads a process group with its zygote, renderer and
	// crashpad helpers: a cancel, and the end, sweep them all.
	cmd.SysProcAttr = groupAttr(childAttr())
	cmd.Cancel = func() error { return signalGroup(cmd.Process, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &tail{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	err = cmd.Run()
	if cmd.Process != nil {
		_ = signalGroup(cmd.Process, syscall.SIGKILL) // helpers still running after the browser
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("chromium %s: %w", url, ctx.Err())
	}
	if err != nil {
		return "", fmt.Errorf("chromium %s: %v\n%s", url, err, stderr)
	}
	dom := stdout.String()
	if !strings.Contains(dom, "<html") {
		return "", fmt.Errorf("chromium %s printed no DOM:\n%s\nstderr:\n%s", url, dom, stderr)
	}
	return dom, nil
}
