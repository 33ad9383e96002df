//go:build linux

package longpoll

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT from linux/in.h (not in syscall).
const ipBindAddressNoPort = 24

// bindNoPort lets a socket bound to a source IP take its port at connect time,
// so binding many sockets to one IP does not search the ephemeral range per bind.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}
