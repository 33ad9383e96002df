package mqtt

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind the
// source address now, pick the port at connect time, so many source addresses
// each get the whole ephemeral port range.
const ipBindAddressNoPort = 24

// bindNoPort is a net.Dialer Control function setting IP_BIND_ADDRESS_NO_PORT.
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}
