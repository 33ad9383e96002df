package main

import "testing"

func TestChooseProcs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     int
		env      string
		load     float64
		embedded bool
		want     int
	}{
		{"auto, modest load", -1, "", 20000, false, 1},
		{"auto, above one thread's share", -1, "", 20001, false, 0},
		{"auto, GOMAXPROCS set by the user", -1, "4", 100, false, 0},
		{"auto, embedded bus in this process", -1, "", 100, true, 0},
		{"explicit count wins", 3, "1", 100, true, 3},
		{"explicit 0 = Go's default", 0, "", 100, false, 0},
	} {
		got, why := chooseProcs(tc.spec, tc.env, tc.load, tc.embedded)
		if got != tc.want {
			t.Errorf("%s: chooseProcs = %d, want %d", tc.name, got, tc.want)
		}
		if (got == 1 && tc.spec < 0) != (why != "") {
			t.Errorf("%s: reason %q: want one exactly when auto picked one thread", tc.name, why)
		}
	}
}

func TestParseProcs(t *testing.T) {
	for in, want := range map[string]int{"auto": -1, "0": 0, "2": 2} {
		if got, err := parseProcs(in); err != nil || got != want {
			t.Errorf("parseProcs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "two", "1.5"} {
		if _, err := parseProcs(in); err == nil {
			t.Errorf("parseProcs(%q): no error", in)
		}
	}
}
