package cli

import (
	"slices"
	"strings"
	"testing"
)

func TestParseSourceAddrs(t *testing.T) {
	good := map[string][]string{
		"":                                 nil,
		"127.0.0.2":                        {"127.0.0.2"},
		"127.0.0.2-127.0.0.4":              {"127.0.0.2", "127.0.0.3", "127.0.0.4"},
		"10.0.0.5,10.0.0.6":                {"10.0.0.5", "10.0.0.6"},
		" 127.0.0.9 , 127.0.0.2-127.0.0.3": {"127.0.0.9", "127.0.0.2", "127.0.0.3"},
		"127.0.0.255-127.0.1.1":            {"127.0.0.255", "127.0.1.0", "127.0.1.1"},
		"::1":                              {"::1"},
		"fd00::1-fd00::2":                  {"fd00::1", "fd00::2"},
		"::ffff:127.0.0.2":                 {"127.0.0.2"},
	}
	for in, want := range good {
		got, err := ParseSourceAddrs(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseSourceAddrs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"127.0.0.2-127.0.0.1":           "ends before it starts",
		"127.0.0.2,127.0.0.2":           "given twice",
		"127.0.0.2-127.0.0.3,127.0.0.3": "given twice",
		"127.0.0.x":                     "not an IP address",
		"127.0.0.2-":                    "not an IP address",
		"127.0.0.2-::1":                 "mixes IPv4 and IPv6",
		"127.0.0.2,::1":                 "give one family",
		"0.0.0.0":                       "cannot be a source",
		"224.0.0.1":                     "cannot be a source",
		"10.0.0.0-10.9.0.0":             "more than 65536",
		"fe80::1%eth0":                  "not an IP address",
		",":                             "not an IP address",
	}
	for in, want := range bad {
		_, err := ParseSourceAddrs(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSourceAddrs(%q) = %v, want one line with %q", in, err, want)
		}
	}
}

func FuzzParseSourceAddrs(f *testing.F) {
	for _, s := range []string{"127.0.0.2-127.0.0.9", "10.0.0.5,10.0.0.6", "::1-::3", "1.2.3.4-", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addrs, err := ParseSourceAddrs(s)
		if err != nil {
			return
		}
		if len(addrs) > MaxSourceAddrs {
			t.Fatalf("%d addresses", len(addrs))
		}
		seen := map[string]bool{}
		for _, a := range addrs {
			if seen[a] {
				t.Fatalf("%q twice", a)
			}
			seen[a] = true
		}
	})
}

// TestCheckSourceAddrs: loopback addresses bind (port 0 only: nothing is
// sent). The refusal of an address this machine lacks is not exercised: the
// tests use no address outside loopback, not even to bind.
func TestCheckSourceAddrs(t *testing.T) {
	if err := CheckSourceAddrs([]string{"127.0.0.2", "127.0.0.3"}); err != nil {
		t.Fatalf("loopback: %v", err)
	}
}

func TestSourceFamily(t *testing.T) {
	for _, c := range []struct {
		src, url string
		ok       bool
	}{
		{"127.0.0.2", "", true},
		{"::1", "", false},
		{"127.0.0.2", "http://127.0.0.1:8080/", true},
		{"127.0.0.2", "mqtt://[::1]:1883", false},
		{"::1", "mqtt://[::1]:1883", true},
		{"127.0.0.2", "mqtt://broker:1883", true}, // a name is not resolved here
	} {
		if err := sourceFamily(c.src, c.url); (err == nil) != c.ok {
			t.Errorf("sourceFamily(%s, %q) = %v", c.src, c.url, err)
		}
	}
}
