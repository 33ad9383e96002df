package sse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Event is one dispatched event of a text/event-stream.
type Event struct {
	// ID is the stream's last event id at dispatch (the id to resume after).
	ID string
	// Type is the event field ("" means "message").
	Type string
	// Data is the data lines joined by '\n' (valid until the next Next).
	Data []byte
}

// ErrIdle is Next's "nothing buffered" under StopIdle.
var ErrIdle = errors.New("sse: nothing buffered")

// ErrTooLong marks a line or an event's data beyond the parser's bounds.
var ErrTooLong = errors.New("sse: line or event too long")

// Parser reads a text/event-stream (the WHATWG HTML "server-sent events"
// format): lines end in CRLF, LF or CR; "field: value" lines (one leading
// space of the value dropped); data lines are joined with '\n'; an empty line
// dispatches the event (none if it has no data); lines starting with ':' are
// comments; id sets the last event id (ignored if it contains NUL), committed
// when the event is dispatched; retry (digits only) sets the reconnect delay;
// other fields are ignored; a leading byte order mark is skipped. Lines and
// events are bounded (MaxLine, MaxData).
type Parser struct {
	r       *bufio.Reader
	MaxLine int // longest line, default 64 KiB
	MaxData int // largest event data, default 8 MiB
	// StopIdle makes Next return ErrIdle at a line boundary with nothing
	// buffered, instead of blocking; the next call goes on where it was.
	StopIdle bool

	line   []byte // a line longer than the reader's buffer
	data   []byte
	typ    []byte
	idBuf  string
	lastID string
	retry  time.Duration
	skipLF bool // the last line ended in CR: a following LF belongs to it
	begun  bool // the byte order mark check is done
	hasDat bool
}

// NewParser reads from r.
func NewParser(r *bufio.Reader) *Parser { return &Parser{r: r} }

// Reset makes p read a new stream from r, keeping its buffers and last id.
func (p *Parser) Reset(r *bufio.Reader) {
	p.r = r
	p.data, p.typ, p.line = p.data[:0], p.typ[:0], p.line[:0]
	p.skipLF, p.begun, p.hasDat = false, false, false
	p.idBuf = p.lastID
}

// LastID is the last event id committed (by a dispatched event or an empty line).
func (p *Parser) LastID() string { return p.lastID }

// Retry is the last retry field's delay (0 if none).
func (p *Parser) Retry() time.Duration { return p.retry }

func (p *Parser) maxLine() int {
	if p.MaxLine > 0 {
		return p.MaxLine
	}
	return 64 << 10
}

func (p *Parser) maxData() int {
	if p.MaxData > 0 {
		return p.MaxData
	}
	return 8 << 20
}

// readLine returns the next line without its end; valid until the next read.
func (p *Parser) readLine() ([]byte, error) {
	p.line = p.line[:0]
	for {
		if p.skipLF {
			b, err := p.r.ReadByte()
			if err != nil {
				return nil, err
			}
			p.skipLF = false
			if b != '\n' {
				_ = p.r.UnreadByte()
			}
		}
		n := p.r.Buffered()
		if n == 0 {
			if _, err := p.r.Peek(1); err != nil {
				if len(p.line) > 0 {
					return nil, fmt.Errorf("sse: stream ended inside a line: %w", err)
				}
				return nil, err
			}
			n = p.r.Buffered()
		}
		buf, _ := p.r.Peek(n)
		if !p.begun {
			p.begun = true
			if buf[0] == 0xef {
				if bom, err := p.r.Peek(3); err == nil && string(bom) == "\xef\xbb\xbf" {
					_, _ = p.r.Discard(3)
				}
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			if len(p.line)+n > p.maxLine() {
				return nil, ErrTooLong
			}
			p.line = append(p.line, buf...)
			_, _ = p.r.Discard(n)
			continue
		}
		if len(p.line)+i > p.maxLine() {
			return nil, ErrTooLong
		}
		p.skipLF = buf[i] == '\r'
		var l []byte
		if len(p.line) == 0 {
			l = buf[:i:i] // valid until the next read of r
		} else {
			p.line = append(p.line, buf[:i]...)
			l = p.line
		}
		_, _ = p.r.Discard(i + 1)
		return l, nil
	}
}

// Next reads until the next event with data and returns it. Its error is the
// reader's (io.EOF at a clean end), or ErrTooLong.
func (p *Parser) Next() (Event, error) {
	for {
		if p.StopIdle && p.r.Buffered() == 0 {
			return Event{}, ErrIdle
		}
		l, err := p.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(l) == 0 {
			p.lastID = p.idBuf
			if !p.hasDat {
				p.typ = p.typ[:0]
				continue
			}
			ev := Event{ID: p.lastID, Type: string(p.typ), Data: p.data[:len(p.data)-1]}
			p.data, p.typ, p.hasDat = p.data[:0], p.typ[:0], false
			return ev, nil
		}
		if l[0] == ':' {
			continue
		}
		field, value, ok := bytes.Cut(l, []byte{':'})
		if ok && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(field) {
		case "data":
			if len(p.data)+len(value)+1 > p.maxData()+1 {
				return Event{}, ErrTooLong
			}
			p.data = append(append(p.data, value...), '\n')
			p.hasDat = true
		case "event":
			p.typ = append(p.typ[:0], value...)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.idBuf = string(value)
			}
		case "retry":
			if len(value) > 0 && len(value) <= 9 && allDigits(value) {
				ms, _ := strconv.Atoi(string(value))
				p.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
