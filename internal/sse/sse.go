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
	"bytes"
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
	s, err := open(br, nc)
	if s == nil || s.br != br {
		br.Reset(nil)
		readers.Put(br)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// open reads the response head from br (reading nc) and returns the stream
// on its body. A plain body (Nchan's) is read through a streamsub.ParkedReader,
// which holds no buffer while the stream is idle; br is then no longer used.
func open(br *bufio.Reader, nc io.Reader) (*stream, error) {
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
	s := &stream{}
	switch {
	case h.Chunked:
		s.br = br
		s.body = bufio.NewReaderSize(httputil.NewChunkedReader(br), streamsub.ReadBuffer)
	case h.ContentLength >= 0:
		s.br = br
		s.body = bufio.NewReaderSize(io.LimitReader(br, h.ContentLength), streamsub.ReadBuffer)
	default:
		pre, _ := br.Peek(br.Buffered())
		s.pr = streamsub.NewParkedReader(io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc))
	}
	s.p = NewParser(s.body)
	s.p.StopIdle = s.pr != nil
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
	pr   *streamsub.ParkedReader // a plain body
	br   *bufio.Reader           // the head's reader, for a chunked or length-bounded body
	body *bufio.Reader           // the reader over such a body
	p    *Parser
}

// Wait blocks until a byte of the stream is buffered. The last event's data
// buffer goes back to a pool first: an idle stream holds none.
func (s *stream) Wait() error {
	if !s.p.hasDat {
		streamsub.PutBuf(s.p.data)
		s.p.data = nil
	}
	if s.pr == nil {
		_, err := s.body.Peek(1)
		return err
	}
	if err := s.pr.Wait(); err != nil {
		return err
	}
	s.p.r = s.pr.Br
	return nil
}

// Next returns the next event's data and the last event id.
func (s *stream) Next() ([]byte, string, error) {
	if s.pr != nil && s.pr.Br == nil {
		if err := s.Wait(); err != nil {
			return nil, "", err
		}
	}
	if s.p.data == nil {
		s.p.data = streamsub.GetBuf()
	}
	ev, err := s.p.Next()
	if err != nil {
		if errors.Is(err, ErrIdle) {
			return nil, "", streamsub.ErrNoMessage
		}
		return nil, "", err
	}
	return ev.Data, ev.ID, nil
}

func (s *stream) Release() {
	if s.pr != nil {
		s.pr.Release()
	}
	if s.br != nil && s.br.Size() == streamsub.ReadBuffer {
		s.br.Reset(nil)
		readers.Put(s.br)
	}
	streamsub.PutBuf(s.p.data)
	s.p.data = nil
	s.br, s.body, s.pr = nil, nil, nil
}
