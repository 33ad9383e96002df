package localbus

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// WSPath is the one path the broker's WebSocket listener upgrades; any other
// is answered 404.
const WSPath = "/mqtt"

// wsListener is MQTT over WebSocket for mochi, like listeners.Websocket (the
// same gorilla/websocket upgrader with subprotocol "mqtt", binary messages)
// but, like tcpListener, listening at Init (so an address with port 0 reports
// the port it got) and owning its connections: Close closes every one.
type wsListener struct {
	address string
	ln      net.Listener
	srv     *http.Server
	log     *slog.Logger
	up      websocket.Upgrader

	set       connSet
	establish listeners.EstablishFn // set by Serve, before the server starts
}

func newWSListener(addr string) *wsListener {
	return &wsListener{
		address: addr,
		up: websocket.Upgrader{
			Subprotocols:    []string{"mqtt"},
			CheckOrigin:     func(*http.Request) bool { return true },
			ReadBufferSize:  mqttReadBufferSize,
			WriteBufferSize: mqttReadBufferSize,
		},
	}
}

func (l *wsListener) ID() string       { return "localbus-ws" }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	l.ln = ln
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: connectTimeout, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return nil
}

// Serve serves upgrades until Close. mochi runs it in its own goroutine.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if !l.set.enter() {
		return
	}
	defer l.set.leave()
	_ = l.srv.Serve(l.ln)
}

// ServeHTTP upgrades GET /mqtt and hands the connection to mochi.
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != WSPath {
		http.Error(w, "MQTT over WebSocket is at "+WSPath, http.StatusNotFound)
		return
	}
	c, err := l.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	nc := c.UnderlyingConn()
	if !l.set.add(nc) {
		return
	}
	defer l.set.remove(nc)
	_ = nc.SetReadDeadline(time.Now().Add(connectTimeout))
	if err := l.establish(l.ID(), &wsConn{Conn: nc, c: c}); err != nil {
		l.log.Debug("mqtt websocket connection ended", "error", err, "remote", nc.RemoteAddr())
	}
}

// Close disconnects the listener's clients (mochi's graceful path), stops
// serving, closes every remaining connection and waits for the goroutines.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if !l.set.shut() {
		return
	}
	closeClients(l.ID())
	if l.srv != nil {
		_ = l.srv.Close()
	} else if l.ln != nil {
		_ = l.ln.Close()
	}
	l.set.closeAll()
}

// errNotBinary is a text message from a client: MQTT travels in binary ones.
var errNotBinary = errors.New("localbus: websocket message not binary")

// wsConn is an MQTT stream over a websocket as a net.Conn (as mochi's): a
// Read returns the bytes of successive binary messages, each Write is one
// binary message. Deadlines and addresses are the socket's.
type wsConn struct {
	net.Conn
	c   *websocket.Conn
	r   io.Reader // the current message, nil between messages
	wmu sync.Mutex
}

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			op, r, err := w.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if errors.Is(err, io.EOF) {
			w.r = nil
			err = nil
			if n == 0 {
				continue
			}
		}
		return n, err
	}
}

func (w *wsConn) Write(p []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsConn) Close() error { return w.Conn.Close() }
