package main

import "testing"

func TestChooseProcs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		spec     int
		env      string
		load     float64
		qos0     bool
		embedded bool
		want     int
	}{
		{"auto, modest load", -1, "", 20000, false, false, 1},
		{"auto, above one thread's share", -1, "", 20001, false, false, 0},
		{"auto, MQTT QoS 0 carries more", -1, "", 260000, true, false, 1},
		{"auto, MQTT QoS 0 above one thread's share", -1, "", 260001, true, false, 0},
		{"auto, GOMAXPROCS set by the user", -1, "4", 100, true, false, 0},
		{"auto, embedded bus in this process", -1, "", 100, true, true, 0},
		{"explicit count wins", 3, "1", 100, false, true, 3},
		{"explicit 0 = Go's default", 0, "", 100, true, false, 0},
	} {
		got, why := chooseProcs(tc.spec, tc.env, tc.load, tc.qos0, tc.embedded)
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
