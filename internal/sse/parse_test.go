package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func parseAll(t testing.TB, in string, size int) ([]Event, *Parser, error) {
	t.Helper()
	p := NewParser(bufio.NewReaderSize(strings.NewReader(in), size))
	var evs []Event
	for range 10000 {
		ev, err := p.Next()
		if err != nil {
			return evs, p, err
		}
		ev.Data = bytes.Clone(ev.Data)
		evs = append(evs, ev)
	}
	t.Fatal("more than 10000 events")
	return nil, nil, nil
}

func TestParser(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Event
		lastID   string
		retry    time.Duration
	}{
		{"one event", "id: 1\ndata: hello\n\n", []Event{{ID: "1", Data: []byte("hello")}}, "1", 0},
		{"multi-line data", "data: a\ndata: b\ndata:\n\n", []Event{{Data: []byte("a\nb\n")}}, "", 0},
		{"CRLF and CR line ends", "id: x\r\ndata: a\r\rdata: b\r\n\r\n", []Event{{ID: "x", Data: []byte("a")}, {ID: "x", Data: []byte("b")}}, "x", 0},
		{"comments and unknown fields", ": hi\n\nfoo: bar\n:ping\ndata: d\n\n", []Event{{Data: []byte("d")}}, "", 0},
		{"event type", "event: tick\ndata: 1\n\ndata: 2\n\n", []Event{{Type: "tick", Data: []byte("1")}, {Data: []byte("2")}}, "", 0},
		{"no space after colon, two spaces kept", "data:x\ndata:  y\n\n", []Event{{Data: []byte("x\n y")}}, "", 0},
		{"field without colon", "data\n\n", []Event{{Data: []byte("")}}, "", 0},
		{"id without data commits at the empty line", "id: 7\n\ndata: z\n\n", []Event{{ID: "7", Data: []byte("z")}}, "7", 0},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []Event{{ID: "1", Data: []byte("a")}, {ID: "1", Data: []byte("b")}}, "1", 0},
		{"id of an undispatched event is not committed", "id: 1\ndata: a\n\nid: 2\ndata: b\n", []Event{{ID: "1", Data: []byte("a")}}, "1", 0},
		{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n", []Event{{ID: "1", Data: []byte("a")}, {ID: "", Data: []byte("b")}}, "", 0},
		{"retry", "retry: 2500\nretry: 1x\ndata: a\n\n", []Event{{Data: []byte("a")}}, "", 2500 * time.Millisecond},
		{"byte order mark", "\xef\xbb\xbfdata: a\n\n", []Event{{Data: []byte("a")}}, "", 0},
		{"Nchan multiplexed ids and its 408 comment", ": hi\n\nid: 1796219391:[0],-\ndata: hello\ndata: world\n\n:408: 408 Request Timeout\n\n",
			[]Event{{ID: "1796219391:[0],-", Data: []byte("hello\nworld")}}, "1796219391:[0],-", 0},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 1024} { // lines longer and shorter than the buffer
			evs, p, err := parseAll(t, tt.in, size)
			if !errors.Is(err, io.EOF) {
				t.Errorf("%s (buffer %d): error %v, want io.EOF", tt.name, size, err)
			}
			if len(evs) != len(tt.want) {
				t.Errorf("%s (buffer %d): events %+v, want %+v", tt.name, size, evs, tt.want)
				continue
			}
			for i := range evs {
				if evs[i].ID != tt.want[i].ID || evs[i].Type != tt.want[i].Type || !bytes.Equal(evs[i].Data, tt.want[i].Data) {
					t.Errorf("%s (buffer %d): event %d = %+v (%q), want %+v (%q)", tt.name, size, i, evs[i], evs[i].Data, tt.want[i], tt.want[i].Data)
				}
			}
			if p.LastID() != tt.lastID || p.Retry() != tt.retry {
				t.Errorf("%s: last id %q retry %v, want %q %v", tt.name, p.LastID(), p.Retry(), tt.lastID, tt.retry)
			}
		}
	}
}

func TestParserBounds(t *testing.T) {
	p := NewParser(bufio.NewReaderSize(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 16))
	p.MaxLine = 50
	if _, err := p.Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("a line over MaxLine: %v, want ErrTooLong", err)
	}
	p = NewParser(bufio.NewReaderSize(strings.NewReader(strings.Repeat("data: 0123456789\n", 20)+"\n"), 16))
	p.MaxData = 100
	if _, err := p.Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("data over MaxData: %v, want ErrTooLong", err)
	}
	p = NewParser(bufio.NewReaderSize(strings.NewReader("data: cut"), 16))
	if _, err := p.Next(); err == nil || errors.Is(err, ErrTooLong) {
		t.Errorf("a stream ending inside a line: %v, want an EOF error", err)
	}
}

// encode writes payloads the way the embedded bus does.
func encode(id string, payload []byte) string {
	var b strings.Builder
	b.WriteString("id: " + id + "\n")
	for line := range bytes.SplitSeq(payload, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteString("\n")
	}
	b.WriteString("\n")
	return b.String()
}

// FuzzParser: arbitrary bytes never panic or exceed the bounds; an event
// encoded as the embedded bus encodes it comes back whole, after whatever
// came before it.
func FuzzParser(f *testing.F) {
	f.Add([]byte(": hi\n\nid: 1\ndata: a\ndata: b\n\n"), []byte("payload"))
	f.Add([]byte("\xef\xbb\xbfretry: 10\r\nid: 2\r\ndata: x\r\r"), []byte("two\nlines"))
	f.Add([]byte("data"), []byte(""))
	f.Fuzz(func(t *testing.T, junk, payload []byte) {
		if len(junk) > 4096 || len(payload) > 4096 {
			t.Skip()
		}
		p := NewParser(bufio.NewReaderSize(bytes.NewReader(junk), 16))
		p.MaxLine, p.MaxData = 512, 1024
		for range len(junk) + 1 {
			ev, err := p.Next()
			if err != nil {
				break
			}
			if len(ev.Data) > p.MaxData {
				t.Fatalf("event data %d bytes, over MaxData %d", len(ev.Data), p.MaxData)
			}
			if strings.ContainsRune(ev.ID, 0) {
				t.Fatalf("id %q contains NUL", ev.ID)
			}
		}
		if bytes.ContainsAny(payload, "\r") {
			return
		}
		// A clean stream end, then the event: it comes back as sent.
		in := encode("42", payload)
		evs, _, err := parseAll(t, in, 16)
		if !errors.Is(err, io.EOF) || len(evs) != 1 || evs[0].ID != "42" || !bytes.Equal(evs[0].Data, payload) {
			t.Fatalf("round trip of %q: %+v, %v", payload, evs, err)
		}
	})
}

// FuzzOpen: a whole response (head, then a stream) from the network never
// panics; a 200 text/event-stream opens a stream whose events are bounded.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n: hi\n\nid: 1\ndata: a\n\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n8\r\ndata: a\n\n\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 32<<10 {
			t.Skip()
		}
		r := bytes.NewReader(in)
		s, err := open(bufio.NewReaderSize(r, 64), r)
		if err != nil {
			return
		}
		s.p.MaxLine, s.p.MaxData = 1024, 1024
		for range len(in) + 1 {
			p, _, err := s.Next()
			if err != nil {
				return
			}
			if len(p) > 1024 {
				t.Fatalf("event of %d bytes over the bound", len(p))
			}
		}
	})
}
