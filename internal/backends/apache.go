package backends

import (
	_ "embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The private configuration of StartApacheDAV.
//
//go:embed apache.conf.tmpl
var apacheTemplate string

// apacheUser is the account Apache's workers run as when the test runs as root (Apache refuses to
// serve as root).
const apacheUser = "www-data"

// StartApacheDAV starts Apache httpd 2.4 (Debian apache2) with mod_dav and mod_dav_fs on its document
// root (DavLockDB set, so LOCK/UNLOCK work; no mod_deflate) and returns its base URL
// ("http://127.0.0.1:PORT") and root, the directory it serves. t.Cleanup stops it (SIGTERM).
//
// As root its workers run as www-data, which owns root: a test writing files there itself should
// leave them readable (and chown them to www-data if Apache must overwrite or lock them).
func StartApacheDAV(t testing.TB) (baseURL, root string) {
	t.Helper()
	bin := lookPath("apache2")
	if bin == "" {
		missing(t, "apache2 not installed: run .ci/run or apt-get install apache2")
		return "", ""
	}
	// Not t.TempDir: its folders are private to the test's user, and the workers run as www-data.
	dir, err := os.MkdirTemp("", "apache-dav-")
	if err != nil {
		t.Fatalf("backends: apache: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // registered first, so it runs after Apache stopped
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("backends: apache: %v", err)
	}
	for _, sub := range []string{"dav", "lock", "logs", "run"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("backends: apache: %v", err)
		}
	}
	userDirective := "# not root: the workers run as the test's user"
	if os.Geteuid() == 0 {
		u, err := user.Lookup(apacheUser)
		if err != nil {
			t.Fatalf("backends: apache: as root the workers need the %s account: %v", apacheUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		// The workers write the served files and the lock database.
		for _, sub := range []string{"dav", "lock"} {
			if err := os.Chown(filepath.Join(dir, sub), uid, gid); err != nil {
				t.Fatalf("backends: apache: %v", err)
			}
		}
		userDirective = "User " + apacheUser + "\nGroup " + apacheUser
	}
	errorLog := filepath.Join(dir, "logs", "error.log")
	for attempt := 1; ; attempt++ {
		addr, err := startApache(t, bin, dir, userDirective)
		if err == nil {
			return "http://" + addr, filepath.Join(dir, "dav")
		}
		log, _ := os.ReadFile(errorLog)
		if attempt == 3 || !addrInUse(err.Error()+string(log)) {
			t.Fatalf("backends: apache2 did not start: %v\n%s", err, log)
		}
		os.Remove(errorLog)
	}
}

// startApache writes the configuration for a new free port and starts Apache with it; the error
// includes Apache's output.
func startApache(t testing.TB, bin, dir, userDirective string) (addr string, err error) {
	t.Helper()
	port := freePort(t)
	conf, err := render(apacheTemplate, map[string]string{
		"$DIR":  dir,
		"$PORT": strconv.Itoa(port),
		"$USER": userDirective,
	})
	if err != nil {
		t.Fatalf("backends: apache: %v", err)
	}
	confPath := filepath.Join(dir, "httpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("backends: apache: %v", err)
	}
	// -DFOREGROUND: the master stays the child of the test (no detach), forking its workers. It runs in
	// a process group of its own so that stop and kill reach the workers too; where possible also in a
	// PID namespace of its own (unshare, as root), so that when the test binary dies without cleaning
	// up, the kernel kills the master (parent-death signal) and with it every worker.
	args := []string{bin, "-f", confPath, "-DFOREGROUND"}
	if wrapper := pidNamespaceWrapper(); wrapper != nil {
		args = append(wrapper, args...)
	}
	p := startGroup(t, "apache2", dir, args[0], args[1:]...)
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := p.waitReady(func() error { return dialOnly(addr) }); err != nil {
		p.stop()
		return "", fmt.Errorf("%v\n%s", err, p.output())
	}
	return addr, nil
}

var (
	unshareOnce sync.Once
	unshareArgs []string
)

// pidNamespaceWrapper is the command that runs a program as PID 1 of a new PID namespace and kills
// it when the wrapper dies, or nil when that does not work here (not root, no unshare, a sandbox
// that forbids namespaces).
func pidNamespaceWrapper() []string {
	unshareOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		bin := lookPath("unshare")
		if bin == "" {
			return
		}
		args := []string{bin, "--pid", "--fork", "--kill-child"}
		if exec.Command(args[0], append(args[1:], "true")...).Run() == nil {
			unshareArgs = args
		}
	})
	return unshareArgs
}
