package localbus

import (
	"bufio"
	"bytes"
	"crypto/sha1" //nolint:gosec // RFC 6455's accept key is defined with SHA-1
	"encoding/base64"
	"net"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/valyala/fasthttp"
)

// Streaming subscribers on the long-poll location, as Nchan serves them from
// one location: a GET /sub/<ch1>,<ch2>,… with "Upgrade: websocket" is a
// WebSocket subscriber, one with "Accept: text/event-stream" an EventSource
// subscriber. Both get every message after their cursor as it is published,
// through the same store.next as a poll, so faults are decided and counted the
// same way (per subscriber, named by X-Eventswarm-Subscriber, and channel). The
// cursor is the Last-Event-ID request header (an id this bus issued: another
// is answered 400), else the newest message. Each message carries its id: on
// EventSource as "id: <seq>", on WebSocket, when the client asked for Nchan's
// "ws+meta.nchan" subprotocol, as an "id: <seq>" line (and "content-type:")
// before an empty line and the data; a delayed or duplicate copy carries the
// stream's current id, so a reconnect resumes where the stream was. A stream
// ends after Hold, as Nchan's subscriber timeout ends it (EventSource: a
// ":408" comment; WebSocket: a close frame), on an outage and on Close.

const wsMetaProtocol = "ws+meta.nchan"

type streamKind uint8

const (
	streamWS streamKind = iota + 1
	streamSSE
)

// streamKindOf says whether a subscribe request asks for a stream.
func streamKindOf(ctx *fasthttp.RequestCtx) streamKind {
	h := &ctx.Request.Header
	if bytes.EqualFold(h.Peek("Upgrade"), []byte("websocket")) {
		return streamWS
	}
	if bytes.Contains(h.Peek("Accept"), []byte("text/event-stream")) {
		return streamSSE
	}
	return 0
}

func (b *Bus) handleStream(ctx *fasthttp.RequestCtx, list []byte, kind streamKind) {
	if !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET")
		ctx.Error("localbus: method not allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	chans, err := parseChannels(list)
	if err != nil {
		ctx.Error("localbus: "+err.Error(), fasthttp.StatusBadRequest)
		return
	}
	var accept string
	meta := false
	if kind == streamWS {
		key := ctx.Request.Header.Peek("Sec-WebSocket-Key")
		if len(key) == 0 || string(ctx.Request.Header.Peek("Sec-WebSocket-Version")) != "13" {
			ctx.Error("localbus: bad WebSocket handshake", fasthttp.StatusBadRequest)
			return
		}
		sum := sha1.Sum(append(bytes.Clone(key), "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...)) //nolint:gosec // RFC 6455
		accept = base64.StdEncoding.EncodeToString(sum[:])
		for _, p := range bytes.Split(ctx.Request.Header.Peek("Sec-WebSocket-Protocol"), []byte(",")) {
			meta = meta || string(bytes.TrimSpace(p)) == wsMetaProtocol
		}
	}
	s := b.store
	s.mu.Lock()
	cur, err := parseCursor(ctx.Request.Header.Peek("Last-Event-ID"), nil, s.seq)
	if err != nil {
		s.mu.Unlock()
		ctx.Error("localbus: "+err.Error(), fasthttp.StatusBadRequest)
		return
	}
	seq := s.resolve(cur, chans)
	s.mu.Unlock()
	id := string(ctx.Request.Header.Peek(SubscriberHeader))
	if id == "" {
		id = ctx.RemoteAddr().String()
	}
	select {
	case <-b.done:
		ctx.SetConnectionClose()
		ctx.Error("localbus: closed", fasthttp.StatusServiceUnavailable)
		return
	default:
	}
	b.wg.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer b.wg.Done()
		st := &streamSub{b: b, c: c, kind: kind, meta: meta, chans: chans, seq: seq, id: id}
		st.serve(accept)
	})
}

// streamSub is one open streaming subscriber.
type streamSub struct {
	b     *Bus
	c     net.Conn
	kind  streamKind
	meta  bool
	chans []string
	seq   uint64
	id    string
	bw    *bufio.Writer
}

func (st *streamSub) serve(accept string) {
	// fasthttp's hijacked conn does not close on Close (the server closes it
	// after this returns); the raw one is closed to end the reader below.
	raw := st.c
	if u, ok := st.c.(interface{ UnsafeConn() net.Conn }); ok {
		raw = u.UnsafeConn()
	}
	defer raw.Close()
	st.bw = bufio.NewWriterSize(st.c, 4096)
	if st.kind == streamWS {
		st.bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n")
		if st.meta {
			st.bw.WriteString("Sec-WebSocket-Protocol: " + wsMetaProtocol + "\r\n")
		}
		st.bw.WriteString("\r\n")
	} else {
		st.bw.WriteString("HTTP/1.1 200 OK\r\nServer: localbus\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n: hi\n\n")
	}
	if st.bw.Flush() != nil {
		return
	}
	// The client's bytes are read and dropped (a WebSocket client's pings and
	// close); the read ending says the client is gone.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var buf [512]byte
		for {
			if _, err := st.c.Read(buf[:]); err != nil {
				return
			}
		}
	}()
	defer func() { _ = raw.Close(); <-gone }()
	st.loop(gone)
}

// loop delivers until the hold ends, the client goes, an outage or Close.
func (st *streamSub) loop(gone <-chan struct{}) {
	b, s := st.b, st.b.store
	deadline := time.Now().Add(b.cfg.Hold)
	w := &waiter{ch: make(chan struct{}, 1)}
	timer := time.NewTimer(b.cfg.Hold)
	defer timer.Stop()
	s.mu.Lock()
	var sub *subscriber
	if s.faults != nil {
		sub = s.subs[st.id]
		if sub == nil {
			sub = &subscriber{id: st.id, hash: hashString(st.id), decided: map[string]uint64{}}
			s.subs[st.id] = sub
		}
	}
	var registered []*channel
	for _, name := range st.chans {
		c := s.channel(name)
		c.waiters[w] = struct{}{}
		c.lastRequested = time.Now()
		registered = append(registered, c)
	}
	unregister := func() {
		for _, c := range registered {
			delete(c.waiters, w)
		}
		if sub != nil && sub.held == w {
			sub.held = nil
		}
		s.mu.Unlock()
	}
	for {
		// s.mu is held here.
		now := time.Now()
		if sub != nil {
			sub.lastSeen = now
			sub.held = w
		}
		if b.outage.Load() != 0 {
			unregister()
			return
		}
		if d, ok := s.next(st.chans, st.seq, sub, now); ok {
			s.mu.Unlock()
			st.seq = d.etag
			if st.write(d) != nil {
				s.mu.Lock()
				unregister()
				return
			}
			s.mu.Lock()
			continue
		}
		if !now.Before(deadline) {
			unregister()
			st.end()
			return
		}
		wake := deadline
		if sub != nil {
			if due, ok := sub.nextDue(); ok && due.Before(wake) {
				wake = due
			}
		}
		s.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wake.Sub(now), 0))
		select {
		case <-w.ch:
		case <-timer.C:
		case <-gone:
			s.mu.Lock()
			unregister()
			return
		case <-b.done:
			s.mu.Lock()
			unregister()
			return
		}
		s.mu.Lock()
	}
}

// write sends one delivery with its id.
func (st *streamSub) write(d delivery) error {
	bw := st.bw
	var idb [20]byte
	id := strconv.AppendUint(idb[:0], d.etag, 10)
	if st.kind == streamSSE {
		bw.WriteString("id: ")
		bw.Write(id)
		bw.WriteByte('\n')
		for line := range bytes.SplitSeq(d.payload, []byte("\n")) {
			bw.WriteString("data: ")
			bw.Write(line)
			bw.WriteByte('\n')
		}
		bw.WriteByte('\n')
		return bw.Flush()
	}
	n := int64(len(d.payload))
	ctype := d.ctype
	if ctype == "" {
		ctype = "text/plain"
	}
	if st.meta {
		n += int64(len("id: \ncontent-type: \n\n") + len(id) + len(ctype))
	}
	op := ws.OpBinary
	if st.meta {
		op = ws.OpText
	}
	if err := ws.WriteHeader(bw, ws.Header{Fin: true, OpCode: op, Length: n}); err != nil {
		return err
	}
	if st.meta {
		bw.WriteString("id: ")
		bw.Write(id)
		bw.WriteString("\ncontent-type: ")
		bw.WriteString(ctype)
		bw.WriteString("\n\n")
	}
	bw.Write(d.payload)
	return bw.Flush()
}

// end tells the client its hold is over.
func (st *streamSub) end() {
	if st.kind == streamSSE {
		st.bw.WriteString(":408: 408 Request Timeout\n\n")
	} else {
		body := ws.NewCloseFrameBody(ws.StatusNormalClosure, "timeout")
		_ = ws.WriteHeader(st.bw, ws.Header{Fin: true, OpCode: ws.OpClose, Length: int64(len(body))})
		st.bw.Write(body)
	}
	_ = st.bw.Flush()
}
