package backends

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a backend running as a child of the test binary.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed when the process has exited
	err  error         // how it exited, once done is closed
	// group: the process leads its own process group, and stop and kill signal the whole group (a
	// server that forks workers, like Apache, or a wrapper whose child does the work).
	group bool
}

// start launches a backend that t.Cleanup stops.
func start(t testing.TB, name, dir, bin string, args ...string) *process {
	t.Helper()
	p := launch(t, name, dir, bin, args...)
	t.Cleanup(p.stop)
	return p
}

// launch starts a program with its output kept for error messages. The process also dies with the
// test binary when that dies without running its cleanups (a panic, a -timeout).
func launch(t testing.TB, name, dir, bin string, args ...string) *process {
	t.Helper()
	return launchCmd(t, name, false, dir, bin, args...)
}

// startGroup is start for a program that forks: it runs in its own process group, and stop and
// kill signal the whole group.
func startGroup(t testing.TB, name, dir, bin string, args ...string) *process {
	t.Helper()
	p := launchCmd(t, name, true, dir, bin, args...)
	t.Cleanup(p.stop)
	return p
}

func launchCmd(t testing.TB, name string, group bool, dir, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if group {
		cmd.SysProcAttr = groupAttr(cmd.SysProcAttr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("backends: start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, out: out, done: make(chan struct{}), group: group}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// waitReady polls ready until it succeeds, the process exits, or startTimeout passes.
func (p *process) waitReady(ready func() error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", p.name, startTimeout, err)
		}
	}
}

// stop asks for a fast shutdown (SIGTERM) and kills what is still there after 5s.
func (p *process) stop() {
	if err := p.signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.kill()
		return
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
}

// kill ends the process at once and waits until it has exited.
func (p *process) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the process, or to its whole group.
func (p *process) signal(sig syscall.Signal) error {
	if p.group {
		select {
		case <-p.done: // the group may live on, but its leader's id may be reused: leave it
			return os.ErrProcessDone
		default:
		}
		return signalGroup(p.cmd.Process, sig)
	}
	return p.cmd.Process.Signal(sig)
}

func (p *process) output() string { return p.out.String() }

// tail keeps the last 64 KiB a process wrote, for the message of a failed start.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 64 << 10

func (w *tail) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	if over := len(w.buf) - tailSize; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(b), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
