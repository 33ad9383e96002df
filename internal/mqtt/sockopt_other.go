//go:build !linux

package mqtt

import "syscall"

// bindNoPort does nothing outside Linux: the source address is bound with a
// port picked at bind time.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
