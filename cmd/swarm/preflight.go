package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/target"
)

// fdBase is the open files swarm needs besides the users' sockets (binary,
// listeners, stdio, the runtime's poller, slack).
const fdBase = 128

// socketsNeeded estimates the client sockets of n local users: one per user
// (MQTT: its connection; long-poll: its poll socket) plus, on long-poll, the
// shared publish connections (at most one per user, at most
// longpoll.DefaultMaxConns). Every one is a connection to the target, so each
// takes an ephemeral port of its (source, destination) pair.
func socketsNeeded(n int, proto string) uint64 {
	sockets := uint64(n)
	if proto == target.HTTP {
		sockets += uint64(min(n, longpoll.DefaultMaxConns))
	}
	return sockets
}

// filesNeeded estimates the open files of n local users: their sockets, and
// with the embedded bus in the same process the other end of every socket too.
func filesNeeded(n int, proto string, embedded bool) uint64 {
	sockets := socketsNeeded(n, proto)
	if embedded {
		sockets *= 2
	}
	return sockets + fdBase
}

// localUsers is how many of cfg.Users this shard runs.
func localUsers(cfg behaviours.Config) int {
	users := cfg.Users
	for _, st := range cfg.Stages {
		users = max(users, st.Target)
	}
	shards := max(cfg.Shards, 1)
	if users <= cfg.Shard {
		return 0
	}
	return (users - cfg.Shard + shards - 1) / shards
}

// portRangeFile is Linux's ephemeral port range ("32768\t60999").
const portRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// portRange reads the ephemeral port range: how many client sockets one
// (source address, destination) pair can have at once. ok is false where it
// cannot be read (then ports are not checked).
func portRange(path string) (lo, hi int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo < 1 || hi < lo || hi > 65535 {
		return 0, 0, false
	}
	return lo, hi, true
}

// capacity is what this machine gives one swarm process.
type capacity struct {
	files      uint64 // open-file limit in force (after raising the soft one)
	filesWhich string // "soft" or "hard"
	// ports per (source, destination) pair (0: unknown, not checked) and
	// the range they come from.
	ports        int
	portLo       int
	portHi       int
	sources      int    // source addresses (1 without --source-addrs)
	dest         string // the target's host:port, for the message
	destLoopback bool   // the target is on loopback: 127.0.0.x sources work
	ipv4         bool
}

// fit is the most of n users that cap allows.
func (c capacity) fit(n int, proto string, embedded bool) int {
	fit := 0
	for lo, hi := 0, n; lo <= hi; {
		mid := (lo + hi) / 2
		ok := filesNeeded(mid, proto, embedded) <= c.files
		if c.ports > 0 {
			ok = ok && socketsNeeded(mid, proto) <= uint64(c.ports)*uint64(c.sources)
		}
		if ok {
			fit, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	return fit
}

// check is nil when n users fit, else one usage-error line: what the users
// need, what limits them, how many fit and what to add.
func (c capacity) check(n int, proto string, embedded bool) error {
	files := filesNeeded(n, proto, embedded)
	sockets := socketsNeeded(n, proto)
	filesShort := files > c.files
	portsShort := c.ports > 0 && sockets > uint64(c.ports)*uint64(c.sources)
	if !filesShort && !portsShort {
		return nil
	}
	var limits, adds []string
	if filesShort {
		limits = append(limits, fmt.Sprintf("about %d open files but the limit is %d (%s)", files, c.files, c.filesWhich))
		adds = append(adds, fmt.Sprintf("raise `ulimit -n` to %d or run shards", files))
	}
	if portsShort {
		limits = append(limits, fmt.Sprintf("%d sockets to %s but %d source address%s × %d ports (ip_local_port_range %d-%d) give %d",
			sockets, c.dest, c.sources, plural(c.sources, "", "es"), c.ports, c.portLo, c.portHi, c.ports*c.sources))
		need := int((sockets + uint64(c.ports) - 1) / uint64(c.ports))
		switch {
		case c.destLoopback && c.ipv4:
			adds = append(adds, fmt.Sprintf("give %d source addresses: --source-addrs 127.0.0.2-127.0.0.%d", need, need+1))
		default:
			adds = append(adds, fmt.Sprintf("give %d source addresses of this machine with --source-addrs (%d more)", need, need-c.sources))
		}
	}
	return cli.Usage(fmt.Errorf("swarm: --users %d needs %s; at most %d users fit — %s",
		n, strings.Join(limits, " and "), c.fit(n, proto, embedded), strings.Join(adds, ", and ")))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// preflight checks the open-file limit and the ephemeral ports against what
// the users need, raising the soft file limit up to the hard one when that is
// enough. Too few is a usage error with one line saying how many users fit
// and what to add.
func preflight(cfg behaviours.Config, t target.Config) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // cannot tell: let the run find out
	}
	proto, embedded := t.Protocol(), t.URL == ""
	n := localUsers(cfg)
	need := filesNeeded(n, proto, embedded)
	c := capacity{files: lim.Cur, filesWhich: "soft", sources: max(1, len(t.SourceAddrs))}
	if lim.Cur == lim.Max {
		c.filesWhich = "hard"
	}
	if need > lim.Cur && need <= lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			c.files, c.filesWhich = lim.Max, "hard"
		}
	} else if need > lim.Max {
		c.files, c.filesWhich = lim.Max, "hard" // what raising could reach, at most
	}
	if lo, hi, ok := portRange(portRangeFile); ok {
		c.ports, c.portLo, c.portHi = hi-lo+1, lo, hi
	}
	c.dest, c.destLoopback, c.ipv4 = destination(t)
	return c.check(n, proto, embedded)
}

// destination is the target's host:port, whether it is on loopback, and
// whether it is IPv4 (the embedded bus: 127.0.0.1).
func destination(t target.Config) (dest string, loopback, ipv4 bool) {
	if t.URL == "" {
		return "the embedded bus (127.0.0.1)", true, true
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return t.URL, false, false
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	loopback = host == "localhost" || (ip != nil && ip.IsLoopback())
	ipv4 = host == "localhost" || (ip != nil && ip.To4() != nil)
	return u.Host, loopback, ipv4
}
