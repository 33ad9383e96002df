// Package sse is an EventSource (server-sent events) subscriber for
// Nchan-protocol targets: GET <url>/sub/<ch1>,<ch2> with Accept:
// text/event-stream on a raw socket, read by a small text/event-stream parser
// (Parser) with a 1 KiB buffer, and Last-Event-ID on reconnect so Nchan
// resumes right after the last message it gave. Publishing is the long-poll
// client's POST. The subscriber loop, reconnects and events are
// internal/streamsub's.
package sse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strings"
	"sync"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/httphead"
	"github.com/eventswarm/eventswarm/internal/longpoll"
	"github.com/eventswarm/eventswarm/internal/streamsub"
)

// New makes a Client subscribing by EventSource to cfg's target.
func New(cfg longpoll.Config) (*streamsub.Client, error) {
	lp, err := longpoll.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("eventsource: %w", err)
	}
	return streamsub.New(lp, Protocol{}), nil
}

// Protocol is EventSource as a streamsub.Protocol.
type Protocol struct{}

// Name is "eventsource".
func (Protocol) Name() string { return "eventsource" }

var readers sync.Pool

// Open writes the subscribe request and reads the response head: 200 with
// Content-Type text/event-stream opens the stream; another status is a
// *bus.StatusError; anything else is bus.ErrProtocol.
func (Protocol) Open(nc net.Conn, req streamsub.Request) (streamsub.Stream, error) {
	var b strings.Builder
	b.Grow(160 + len(req.URI) + len(req.HeaderLines) + len(req.LastID))
	b.WriteString("GET ")
	b.WriteString(req.URI)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(req.Host)
	b.WriteString("\r\nUser-Agent: " + longpoll.UserAgent + "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n")
	b.WriteString(req.HeaderLines)
	if req.LastID != "" {
		b.WriteString("Last-Event-ID: ")
		b.WriteString(req.LastID)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(nc, b.String()); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	br, _ := readers.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(nc, streamsub.ReadBuffer)
	} else {
		br.Reset(nc)
	}
	s, err := open(br)
	if err != nil {
		br.Reset(nil)
		readers.Put(br)
		return nil, err
	}
	return s, nil
}

// open reads the response head from br and returns the stream on its body.
func open(br *bufio.Reader) (*stream, error) {
	h, err := httphead.Read(br)
	if err != nil {
		if errors.Is(err, httphead.ErrMalformed) {
			return nil, fmt.Errorf("%w: %w", bus.ErrProtocol, err)
		}
		return nil, err
	}
	if h.Status != 200 {
		return nil, &bus.StatusError{Status: h.Status}
	}
	if ct, _, _ := strings.Cut(h.ContentType, ";"); !strings.EqualFold(strings.TrimSpace(ct), "text/event-stream") {
		return nil, fmt.Errorf("%w: 200 with Content-Type %q, not text/event-stream", bus.ErrProtocol, clip(h.ContentType))
	}
	s := &stream{br: br}
	body := br
	switch {
	case h.Chunked:
		s.inner = bufio.NewReaderSize(httputil.NewChunkedReader(br), streamsub.ReadBuffer)
		body = s.inner
	case h.ContentLength >= 0:
		s.inner = bufio.NewReaderSize(io.LimitReader(br, h.ContentLength), streamsub.ReadBuffer)
		body = s.inner
	}
	s.body = body
	s.p = NewParser(body)
	s.p.MaxData = streamsub.MaxMessageSize
	return s, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// stream is an open EventSource response.
type stream struct {
	br    *bufio.Reader
	inner *bufio.Reader // over a chunked or length-bounded body
	body  *bufio.Reader // br or inner: what the parser reads
	p     *Parser
}

// Wait blocks until a byte of the stream is buffered.
func (s *stream) Wait() error {
	_, err := s.body.Peek(1)
	return err
}

// Next returns the next event's data and the last event id.
func (s *stream) Next() ([]byte, string, error) {
	ev, err := s.p.Next()
	if err != nil {
		return nil, "", err
	}
	return ev.Data, ev.ID, nil
}

func (s *stream) Release() {
	if s.br.Size() == streamsub.ReadBuffer {
		s.br.Reset(nil)
		readers.Put(s.br)
	}
	s.br, s.inner, s.body = nil, nil, nil
}
