//go:build !linux

package backends

import (
	"os"
	"syscall"
)

// childAttr: only Linux has a parent-death signal; elsewhere t.Cleanup alone stops the backends.
func childAttr() *syscall.SysProcAttr { return nil }

// groupAttr: process groups are only used on Linux; elsewhere the leader alone is signalled.
func groupAttr(attr *syscall.SysProcAttr) *syscall.SysProcAttr { return attr }

func signalGroup(p *os.Process, sig syscall.Signal) error { return p.Signal(sig) }
