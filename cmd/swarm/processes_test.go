package main

import (
	"slices"
	"syscall"
	"testing"

	"github.com/eventswarm/eventswarm/internal/behaviours"
	"github.com/eventswarm/eventswarm/internal/target"
)

func TestSourceShare(t *testing.T) {
	addrs := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	got := [][]string{sourceShare(addrs, 0, 2), sourceShare(addrs, 1, 2)}
	want := [][]string{{"127.0.0.2", "127.0.0.4", "127.0.0.6"}, {"127.0.0.3", "127.0.0.5"}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("child %d of 2: %v, want %v", i, got[i], want[i])
		}
	}
	if s := sourceShare(addrs[:2], 2, 3); !slices.Equal(s, addrs[:2]) {
		t.Errorf("fewer addresses than children: %v, want all of %v", s, addrs[:2])
	}
	if s := sourceShare(nil, 0, 3); len(s) != 0 {
		t.Errorf("no addresses: %v", s)
	}
}

// TestProcessesAuto: --processes auto picks the fewest children each of
// which fits its share of the users, its shared publish connections
// included, in 90% of the file limit.
func TestProcessesAuto(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max == 0 || lim.Max > 1<<30 {
		t.Skip("no usable file limit here")
	}
	per := uint64(float64(lim.Max) * 0.9)
	for _, proto := range []string{target.HTTP, target.MQTT} {
		for _, users := range []int{10, 100000, 200000} {
			cfg := behaviours.Config{Users: users}
			n, err := parseProcesses("auto", cfg, proto)
			if err != nil {
				t.Fatal(err)
			}
			if got := filesNeeded((users+n-1)/n, proto, false); got > per {
				t.Errorf("%s, %d users: %d processes need %d files each, over %d", proto, users, n, got, per)
			}
			if n > 1 && filesNeeded((users+n-2)/(n-1), proto, false) <= per {
				t.Errorf("%s, %d users: %d processes, but %d would fit", proto, users, n, n-1)
			}
		}
	}
}
