package main

import (
	"slices"
	"testing"
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
