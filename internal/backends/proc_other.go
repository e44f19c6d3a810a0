//go:build !linux

package backends

import "syscall"

// childAttr: only Linux has a parent-death signal; elsewhere t.Cleanup alone stops the backends.
func childAttr() *syscall.SysProcAttr { return nil }
