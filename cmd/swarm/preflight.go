package main

import (
	"fmt"
	"syscall"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/target"
)

// fdBase is the open files swarm needs besides the users' sockets (binary,
// listeners, stdio, the runtime's poller, slack).
const fdBase = 128

// filesNeeded estimates the open files of n local users: one socket per user
// (MQTT: its connection; long-poll: its poll socket) plus, on long-poll, the
// shared publish connections (at most one per user, at most
// longpoll.DefaultMaxConns); the embedded bus in the same process holds the
// other end of every socket, which doubles it.
func filesNeeded(n int, proto string, embedded bool) uint64 {
	sockets := uint64(n)
	if proto == target.HTTP {
		sockets += uint64(min(n, longpoll.DefaultMaxConns))
	}
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

// preflight checks the open-file limit against what the users need, raising
// the soft limit up to the hard one when that is enough. Too few files is a
// usage error with one line saying how many users fit.
func preflight(cfg behaviours.Config, proto string, embedded bool) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // cannot tell: let the run find out
	}
	n := localUsers(cfg)
	need := filesNeeded(n, proto, embedded)
	if need <= lim.Cur {
		return nil
	}
	if need <= lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return nil
		}
	}
	limit, which := lim.Max, "hard"
	if lim.Max == lim.Cur || need <= lim.Max {
		// Raising failed or was not possible: the soft limit is what we have.
		limit, which = lim.Cur, "soft"
		if lim.Cur == lim.Max {
			which = "hard"
		}
	}
	fit := 0
	for lo, hi := 0, n; lo <= hi; {
		mid := (lo + hi) / 2
		if filesNeeded(mid, proto, embedded) <= limit {
			fit, lo = mid, mid+1
		} else {
			hi = mid - 1
		}
	}
	return cli.Usage(fmt.Errorf("swarm: --users %d needs about %d open files but the limit is %d (%s); at most %d users fit — raise `ulimit -n` or run shards",
		n, need, limit, which, fit))
}
