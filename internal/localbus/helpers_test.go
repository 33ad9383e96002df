package localbus

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eventswarm/eventswarm/internal/bustest"
)

// startBus starts a bus on loopback and closes it when the test ends.
func startBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	b, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// eventually polls cond until it holds or 20s pass (a hang guard, not a timing assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	bustest.Eventually(t, what, cond)
}

var httpClient = &http.Client{
	Transport: &http.Transport{MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 0, DisableCompression: true},
	Timeout:   30 * time.Second,
}

type pollResult struct {
	status        int
	body          string
	etag, lastMod string
	ctype         string
	err           error
}

// ids is what a subscriber echoes: the last Etag and Last-Modified.
type ids struct{ etag, lastMod string }

func poll(ctx context.Context, base, chans, subscriber string, id ids) pollResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sub/"+chans, nil)
	if err != nil {
		return pollResult{err: err}
	}
	if subscriber != "" {
		req.Header.Set(SubscriberHeader, subscriber)
	}
	if id.etag != "" {
		req.Header.Set("If-None-Match", id.etag)
	}
	if id.lastMod != "" {
		req.Header.Set("If-Modified-Since", id.lastMod)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return pollResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return pollResult{
		status: resp.StatusCode, body: string(body), err: err,
		etag: resp.Header.Get("Etag"), lastMod: resp.Header.Get("Last-Modified"), ctype: resp.Header.Get("Content-Type"),
	}
}

func (r pollResult) next(prev ids) ids {
	if r.status == http.StatusOK {
		return ids{r.etag, r.lastMod}
	}
	return prev // after a 408 the client resends its previous headers
}

func publish(t testing.TB, base, ch, body string) int {
	t.Helper()
	resp, err := httpClient.Post(base+"/pub/"+ch, "text/x-test", strings.NewReader(body))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// activeSubscribers reads the channel info (GET /pub/<ch>).
func activeSubscribers(base, ch string) int {
	resp, err := httpClient.Get(base + "/pub/" + ch)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var n int
	for _, line := range strings.Split(string(body), "\n") {
		if _, err := fmt.Sscanf(line, "active subscribers: %d", &n); err == nil {
			return n
		}
	}
	return 0
}

// mqttConnect connects a paho client (MQTT 3.1.1, clean session, no auto reconnect).
func mqttConnect(t testing.TB, addr, id string, onLost func(error)) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(false).SetKeepAlive(30 * time.Second).SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second)
	if onLost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { onLost(err) })
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", id)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func wait(t testing.TB, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(15 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return def
}
