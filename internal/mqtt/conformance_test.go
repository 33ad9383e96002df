package mqtt

import (
	"os"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
	"github.com/eventswarm/eventswarm/internal/localbus"
)

// wsConformanceDialer is conformanceDialer over WebSocket (path /mqtt).
func wsConformanceDialer(t *testing.T, addr string) bus.Dialer {
	return bus.DialerOf(newClient(t, Config{
		URL: "mqtt+ws://" + addr + "/mqtt", QoS: 1, QoSSet: true, PublishTimeout: 10 * time.Minute, Backoff: fastBackoff,
	}).Dial)
}

// conformanceDialer is what bustest.Transport asks for: QoS 1, quick
// reconnects, and a publish timeout far beyond the suite's hang guard.
func conformanceDialer(t *testing.T, addr string) bus.Dialer {
	return bus.DialerOf(newClient(t, Config{
		URL: "mqtt://" + addr, QoS: 1, QoSSet: true, PublishTimeout: 10 * time.Minute, Backoff: fastBackoff,
	}).Dial)
}

// conformanceDialer5 is conformanceDialer on MQTT 5 (scheme is mqtt5 or mqtt5+ws).
func conformanceDialer5(scheme string) func(t *testing.T, addr string) bus.Dialer {
	return func(t *testing.T, addr string) bus.Dialer {
		path := ""
		if scheme == "mqtt5+ws" {
			path = "/mqtt"
		}
		return bus.DialerOf(newClient(t, Config{
			URL: scheme + "://" + addr + path, QoS: 1, QoSSet: true, PublishTimeout: 10 * time.Minute, Backoff: fastBackoff,
		}).Dial)
	}
}

// TestConformance5 runs the suite on MQTT 5 against the embedded broker,
// over TCP and WebSocket.
func TestConformance5(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{MQTTWSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	t.Run("tcp", func(t *testing.T) {
		bustest.Run(t, bustest.Transport{Addr: lb.MQTTAddr(), Dialer: conformanceDialer5("mqtt5")})
	})
	t.Run("ws", func(t *testing.T) {
		bustest.Run(t, bustest.Transport{Addr: lb.MQTTWSAddr(), Dialer: conformanceDialer5("mqtt5+ws")})
	})
}

// TestMosquittoConformance5 runs the suite on MQTT 5 against Mosquitto.
func TestMosquittoConformance5(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO=host:port (see .ci/run) to run against Mosquitto")
	}
	bustest.Run(t, bustest.Transport{Addr: addr, Dialer: conformanceDialer5("mqtt5")})
	if ws := os.Getenv("EVENTSWARM_MOSQUITTO_WS"); ws != "" {
		t.Run("ws", func(t *testing.T) {
			bustest.Run(t, bustest.Transport{Addr: ws, Dialer: conformanceDialer5("mqtt5+ws")})
		})
	}
}

// TestConformance runs the bus.Conn suite against the embedded bus's MQTT broker.
func TestConformance(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	bustest.Run(t, bustest.Transport{Addr: lb.MQTTAddr(), Dialer: conformanceDialer})
}

// TestMosquittoConformance runs the suite against a real Mosquitto (EVENTSWARM_MOSQUITTO).
func TestMosquittoConformance(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO=host:port (see .ci/run) to run against Mosquitto")
	}
	bustest.Run(t, bustest.Transport{Addr: addr, Dialer: conformanceDialer})
}

// TestConformanceLinger runs the suite with Config.Linger set: delayed writes
// and reads change no outcome.
func TestConformanceLinger(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	bustest.Run(t, bustest.Transport{Addr: lb.MQTTAddr(), Dialer: func(t *testing.T, addr string) bus.Dialer {
		return bus.DialerOf(newClient(t, Config{
			URL: "mqtt://" + addr, QoS: 1, QoSSet: true, PublishTimeout: 10 * time.Minute, Backoff: fastBackoff, Linger: time.Millisecond,
		}).Dial)
	}})
}

// TestConformanceWS runs the suite over WebSocket against the embedded broker.
func TestConformanceWS(t *testing.T) {
	lb, err := localbus.Start(localbus.Config{MQTTWSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	bustest.Run(t, bustest.Transport{Addr: lb.MQTTWSAddr(), Dialer: wsConformanceDialer})
}

// TestMosquittoConformanceWS runs the suite over Mosquitto's websockets
// listener (EVENTSWARM_MOSQUITTO_WS).
func TestMosquittoConformanceWS(t *testing.T) {
	addr := os.Getenv("EVENTSWARM_MOSQUITTO_WS")
	if addr == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO_WS=host:port (see .ci/services) to run against Mosquitto's websockets listener")
	}
	bustest.Run(t, bustest.Transport{Addr: addr, Dialer: wsConformanceDialer})
}

// TestMosquittoConformanceWSS runs the suite over Mosquitto's TLS websockets
// listener (EVENTSWARM_MOSQUITTO_WSS), trusting the CA .ci/services made
// (EVENTSWARM_MOSQUITTO_CA).
func TestMosquittoConformanceWSS(t *testing.T) {
	addr, ca := os.Getenv("EVENTSWARM_MOSQUITTO_WSS"), os.Getenv("EVENTSWARM_MOSQUITTO_CA")
	if addr == "" || ca == "" {
		t.Skip("set EVENTSWARM_MOSQUITTO_WSS=host:port and EVENTSWARM_MOSQUITTO_CA=ca.pem (see .ci/services) to run against Mosquitto's TLS websockets listener")
	}
	bustest.Run(t, bustest.Transport{Addr: addr, Dialer: func(t *testing.T, addr string) bus.Dialer {
		return bus.DialerOf(newClient(t, Config{
			URL: "mqtt+wss://" + addr + "/mqtt", CAFile: ca, QoS: 1, QoSSet: true, PublishTimeout: 10 * time.Minute, Backoff: fastBackoff,
		}).Dial)
	}})
}
