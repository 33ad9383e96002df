package mqtt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/backoff"
	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

func TestCheck(t *testing.T) {
	b := startBroker(t, brokerOpts{user: "u", pass: "p"})
	garbage := startFake(t, serveGarbage)
	http400 := startFake(t, serveHTTP400)
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(httpSrv.Close)
	tests := []struct {
		name string
		cfg  Config
		want error  // nil: Check passes
		hint string // in the message
	}{
		{name: "ok", cfg: Config{URL: "mqtt://" + b.addr, Username: "u", Password: "p"}},
		{name: "refused port", cfg: Config{URL: "mqtt://" + bustest.DeadAddr(t)}, want: bus.ErrUnreachable},
		{name: "garbage", cfg: Config{URL: "mqtt://" + garbage.addr()}, want: bus.ErrProtocol, hint: "garb"},
		{name: "HTTP 400 at once", cfg: Config{URL: "mqtt://" + http400.addr()}, want: bus.ErrProtocol, hint: "HTTP"},
		// Go's HTTP server waits for a request line that never comes: silence.
		{name: "silent HTTP server", cfg: Config{URL: "tcp://" + strings.TrimPrefix(httpSrv.URL, "http://"), ConnectTimeout: 300 * time.Millisecond},
			want: bus.ErrProtocol, hint: "no CONNACK"},
		{name: "bad password", cfg: Config{URL: "mqtt://" + b.addr, Username: "u", Password: "nope"}, want: bus.ErrRefused},
		{name: "no credentials", cfg: Config{URL: "mqtt://" + b.addr}, want: bus.ErrRefused},
		{name: "TLS to a plain port", cfg: Config{URL: "mqtts://" + b.addr, ConnectTimeout: 2 * time.Second}, want: bus.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newClient(t, tt.cfg).Check(context.Background())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check: got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("Check: %q does not say %q", err, tt.hint)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	pki := bustest.NewPKI(t)
	b := startBroker(t, brokerOpts{tls: pki.ServerTLS()})
	url := "mqtts://" + b.addr
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"verification on by default", Config{URL: url}, bus.ErrRefused},
		{"ssl alias, verification on", Config{URL: "ssl://" + b.addr}, bus.ErrRefused},
		{"CA file", Config{URL: url, CAFile: pki.CAFile}, nil},
		{"insecure", Config{URL: url, Insecure: true}, nil},
		{"plain MQTT to the TLS port", Config{URL: "mqtt://" + b.addr, ConnectTimeout: 2 * time.Second}, bus.ErrProtocol},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, tt.cfg)
			err := c.Check(context.Background())
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Check: got %v, want %v", err, tt.want)
			}
			var rec recorder
			conn, err := c.Dial(context.Background(), "tls-"+string(rune('a'+i)), &rec)
			if tt.want != nil {
				// Dial leaves a bare EOF in the handshake unclassified (a broker at
				// its connection limit closes at once); Check, the preflight, does not.
				if err == nil || !errors.Is(err, tt.want) && !errors.Is(err, io.EOF) {
					t.Fatalf("Dial: got %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer conn.Close()
			if err := conn.Subscribe(context.Background(), []string{"tls/t"}); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, conn, &rec, "tls/t", "over TLS")
		})
	}
}

func TestCheckContext(t *testing.T) {
	f := startFake(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // never answers
	c := newClient(t, Config{URL: "mqtt://" + f.addr(), ConnectTimeout: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Check(ctx) }()
	pollUntil(t, "the connection", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.conns) == 1
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Check: got %v, want context.Canceled", err)
	}
}

func TestReadConnack(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		present bool
		rc      byte
		want    error
	}{
		{"accepted", []byte{0x20, 2, 0, 0}, false, 0, nil},
		{"session present", []byte{0x20, 2, 1, 0}, true, 0, nil},
		{"bad password", []byte{0x20, 2, 0, 4}, false, 4, nil},
		{"bad flags", []byte{0x20, 2, 2, 0}, false, 0, bus.ErrProtocol},
		{"wrong length", []byte{0x20, 3, 0, 0, 0}, false, 0, bus.ErrProtocol},
		{"truncated", []byte{0x20, 2}, false, 0, bus.ErrProtocol},
		{"empty", nil, false, 0, bus.ErrProtocol},
		{"HTTP", []byte("HTTP/1.1 400 Bad Request\r\n"), false, 0, bus.ErrProtocol},
		{"TLS alert", []byte{0x15, 3, 1, 0, 2, 2, 40}, false, 0, bus.ErrProtocol},
		{"short junk", []byte("x"), false, 0, bus.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			present, rc, err := readConnack(bytes.NewReader(tt.in))
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil || present != tt.present || rc != tt.rc {
				t.Fatalf("got (%v, %d, %v), want (%v, %d, nil)", present, rc, err, tt.present, tt.rc)
			}
		})
	}
}

func FuzzReadConnack(f *testing.F) {
	f.Add([]byte{0x20, 2, 0, 0})
	f.Add([]byte{0x20, 2, 1, 5})
	f.Add([]byte("HTTP/1.1 200 OK"))
	f.Add([]byte{0x15, 3, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		present, rc, err := readConnack(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, bus.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if len(in) < 4 || in[0] != 0x20 || in[1] != 2 || in[3] != rc || present != (in[2] == 1) {
			t.Fatalf("accepted %x as CONNACK (present %v, rc %d)", in, present, rc)
		}
		if cerr := classifyReturnCode(rc); !errors.Is(cerr, bus.ErrRefused) && !errors.Is(cerr, bus.ErrProtocol) && !errors.Is(cerr, bus.ErrUnreachable) {
			t.Fatalf("return code %d: unclassified %v", rc, cerr)
		}
	})
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected problem; none: valid
	}{
		{"plain", Config{URL: "mqtt://localhost"}, nil},
		{"tls with port", Config{URL: "mqtts://broker.example:8884", QoS: 2}, nil},
		{"aliases", Config{URL: "TCP://127.0.0.1:1"}, nil},
		{"ipv6", Config{URL: "mqtt://[::1]:1883"}, nil},
		{"empty", Config{}, []string{"--target is empty"}},
		{"http scheme", Config{URL: "http://host:80"}, []string{`scheme "http" is not supported`}},
		{"no host", Config{URL: "mqtt://:1883"}, []string{"has no host"}},
		{"no scheme", Config{URL: "localhost:1883"}, []string{"not supported"}},
		{"bad port", Config{URL: "mqtt://h:99999"}, []string{"not in 1..65535"}},
		{"path", Config{URL: "mqtt://h/x"}, []string{"no path"}},
		{"password hidden", Config{URL: "ftp://u:secret@h"}, []string{"xxxxx"}},
		{"all at once", Config{URL: "mqtt://h", QoS: 3, CAFile: filepath.Join(dir, "missing.pem"), KeepAlive: time.Millisecond,
			PublishTimeout: -1, Backoff: backoff.Config{Initial: -1}, SourceAddrs: []string{"nope"}},
			[]string{"--qos", "--ca-file", "keep-alive", "publish timeout", "backoff", `"nope"`}},
		{"CA without certificates", Config{URL: "mqtts://h", CAFile: notPEM}, []string{"no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Validate leaks the password: %q", err)
			}
			if !strings.HasPrefix(err.Error(), "mqtt: ") {
				t.Errorf("Validate: %q lacks the package prefix", err)
			}
			if _, nerr := New(tt.cfg); nerr == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := newClient(t, Config{URL: "mqtt://h"})
	got := c.cfg
	if got.QoS != 1 || got.ConnectTimeout != DefaultConnectTimeout || got.KeepAlive != DefaultKeepAlive ||
		got.PublishTimeout != DefaultPublishTimeout || !*got.CleanSession || got.Backoff != backoff.Default || c.ep.addr != "h:1883" {
		t.Fatalf("defaults: got %+v addr %s", got, c.ep.addr)
	}
	if c := newClient(t, Config{URL: "mqtt://h", QoSSet: true}); c.QoS() != 0 {
		t.Fatalf("explicit QoS 0: got %d", c.QoS())
	}
	if c := newClient(t, Config{URL: "ssl://h"}); c.ep.addr != "h:8883" || c.tls == nil || c.tls.InsecureSkipVerify {
		t.Fatalf("ssl://h: addr %s, tls %+v", c.ep.addr, c.tls)
	}
}
