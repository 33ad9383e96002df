package cli

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// MaxSourceAddrs bounds --source-addrs (a /16 of IPv4): enough for any one
// machine, and a typo such as 10.0.0.1-10.9.0.1 is an error, not millions of
// addresses.
const MaxSourceAddrs = 1 << 16

// ParseSourceAddrs parses --source-addrs: a comma-separated list of IP
// addresses and inclusive ranges FIRST-LAST of one family, e.g.
// "127.0.0.2-127.0.0.9" or "10.0.0.5,10.0.0.6". Every address appears once,
// in the order given. "" is none.
func ParseSourceAddrs(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var (
		out  []string
		seen = map[netip.Addr]bool{}
		fam  string
	)
	add := func(a netip.Addr) error {
		if seen[a] {
			return fmt.Errorf("--source-addrs: %s is given twice", a)
		}
		if len(out) >= MaxSourceAddrs {
			return fmt.Errorf("--source-addrs: more than %d addresses", MaxSourceAddrs)
		}
		seen[a] = true
		out = append(out, a.String())
		return nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := parseSourceAddr(lo)
		if err != nil {
			return nil, err
		}
		last := first
		if isRange {
			if last, err = parseSourceAddr(hi); err != nil {
				return nil, err
			}
			if first.Is4() != last.Is4() {
				return nil, fmt.Errorf("--source-addrs: range %q mixes IPv4 and IPv6", item)
			}
			if last.Less(first) {
				return nil, fmt.Errorf("--source-addrs: range %q ends before it starts (want FIRST-LAST, e.g. 127.0.0.2-127.0.0.9)", item)
			}
		}
		f := "IPv6"
		if first.Is4() {
			f = "IPv4"
		}
		if fam != "" && f != fam {
			return nil, fmt.Errorf("--source-addrs: %q is %s but earlier addresses are %s: give one family (the target's)", item, f, fam)
		}
		fam = f
		for a := first; ; a = a.Next() {
			if err := add(a); err != nil {
				return nil, err
			}
			if a == last {
				break
			}
		}
	}
	return out, nil
}

// sourceFamily: a source address can only reach a target of its own family
// (the embedded bus listens on 127.0.0.1). A target named by host name is
// not resolved here.
func sourceFamily(src, targetURL string) error {
	host := "127.0.0.1"
	if targetURL != "" {
		u, err := url.Parse(targetURL)
		if err != nil {
			return nil // Validate reports it
		}
		host = u.Hostname()
	}
	dst, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	s, _ := netip.ParseAddr(src)
	if s.Is4() != dst.Unmap().Is4() {
		return fmt.Errorf("--source-addrs %s cannot reach the target %s: give addresses of the target's family", src, host)
	}
	return nil
}

func parseSourceAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("--source-addrs: %q is not an IP address (want e.g. 127.0.0.2-127.0.0.9 or 10.0.0.5,10.0.0.6)", s)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("--source-addrs: %s cannot be a source address", a)
	}
	return a, nil
}

// CheckSourceAddrs binds a socket to each address (port 0) and closes it:
// an address this machine does not have fails here with one line, before
// any user starts, instead of in every connect.
func CheckSourceAddrs(addrs []string) error {
	for _, a := range addrs {
		l, err := net.Listen("tcp", net.JoinHostPort(a, "0"))
		if err != nil {
			return Usage(fmt.Errorf("--source-addrs: cannot bind %s: %v (is the address on one of this machine's interfaces?)", a, unwrapOp(err)))
		}
		l.Close()
	}
	return nil
}

func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		if se, ok := oe.Err.(interface{ Unwrap() error }); ok && se.Unwrap() != nil {
			return se.Unwrap()
		}
		return oe.Err
	}
	return err
}
