package target

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/longpoll"
)

// headerServer is an HTTP server on loopback answering the Nchan protocol
// just enough (check, publish, long-poll, EventSource, WebSocket) and
// recording, per kind of request, the value of one header.
type headerServer struct {
	mu   sync.Mutex
	seen map[string]string
}

func (s *headerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := r.Method
	switch {
	case r.Method == http.MethodOptions:
		kind = "check"
	case r.Method == http.MethodPost:
		kind = "publish"
	case r.Header.Get("Upgrade") == "websocket":
		kind = "websocket"
	case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		kind = "eventsource"
	case r.Method == http.MethodGet:
		kind = "longpoll"
	}
	s.mu.Lock()
	s.seen[kind+" "+r.URL.Path[:5]] = r.Header.Get("Authorization")
	s.mu.Unlock()
	switch kind {
	case "check":
		w.WriteHeader(http.StatusNoContent)
	case "publish":
		w.WriteHeader(http.StatusAccepted)
	case "websocket":
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err == nil {
			time.Sleep(100 * time.Millisecond)
			conn.Close()
		}
	case "eventsource":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(": hi\n\n"))
	default:
		w.WriteHeader(http.StatusRequestTimeout)
	}
}

func (s *headerServer) get(k string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.seen[k]
	return v, ok
}

type nopHandler struct{}

func (nopHandler) HandleMessage(bus.Message) {}
func (nopHandler) HandleEvent(bus.Event)     {}

// TestHeadersReachTheServer: --header is sent on the check, every publish
// and every subscribe request, whatever the subscriber protocol.
func TestHeadersReachTheServer(t *testing.T) {
	const secret = "Bearer s3cret-token-value"
	for _, via := range []string{LongPoll, WebSocket, EventSource} {
		t.Run(via, func(t *testing.T) {
			hs := &headerServer{seen: map[string]string{}}
			srv := httptest.NewServer(hs)
			t.Cleanup(srv.Close)
			tgt, err := Open(Config{URL: srv.URL, SubscribeVia: via, Headers: []longpoll.Header{{Name: "Authorization", Value: secret}}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tgt.Close)
			if strings.Contains(tgt.Describe(), secret) {
				t.Errorf("Describe() shows the header value: %s", tgt.Describe())
			}
			ctx := context.Background()
			if err := tgt.Check(ctx); err != nil {
				t.Fatalf("Check: %v", err)
			}
			conn, err := tgt.Dialer().Dial(ctx, "hdr", nopHandler{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			if err := conn.Publish(ctx, "ch", []byte("x")); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if err := conn.Subscribe(ctx, []string{"ch"}); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for _, k := range []string{"check /pub/", "check /sub/", "publish /pub/", via + " /sub/"} {
				for {
					if v, ok := hs.get(k); ok {
						if v != secret {
							t.Errorf("%s: Authorization %q, want the configured value", k, v)
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("no %s request reached the server", k)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}

// TestHeaderErrorsHideValues: a bad header is refused naming it, never
// showing its value.
func TestHeaderErrorsHideValues(t *testing.T) {
	const secret = "s3cret\x01value"
	for _, h := range []longpoll.Header{{Name: "Authorization", Value: secret}, {Name: "Host", Value: "s3cret"}, {Name: "Bad Name", Value: "s3cret"}} {
		_, err := Open(Config{URL: "http://127.0.0.1:1", Headers: []longpoll.Header{h}})
		if err == nil {
			t.Fatalf("header %q accepted", h.Name)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error shows the value: %v", err)
		}
	}
	if err := (Config{URL: "mqtt://127.0.0.1:1", SubscribeVia: WebSocket}).Validate(); err == nil {
		t.Error("--subscribe-via websocket accepted on an MQTT target")
	}
	if err := (Config{SubscribeVia: "carrier-pigeon"}).Validate(); err == nil {
		t.Error("an unknown --subscribe-via accepted")
	}
}
