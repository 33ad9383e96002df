// Package httphead reads one HTTP/1.x response head from a bufio.Reader,
// bounded in size, for the streaming subscribers (EventSource; the WebSocket
// handshake is gobwas/ws's). Bytes from the network end here (fuzzed).
package httphead

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Limits of a response head.
const (
	MaxHead    = 16 << 10 // all lines together
	MaxHeaders = 100
)

// ErrMalformed marks a response head that is not HTTP/1.x.
var ErrMalformed = errors.New("malformed HTTP response head")

// Head is the parts of a response head the subscribers act on.
type Head struct {
	Status        int
	ContentType   string
	Chunked       bool
	ContentLength int64 // -1 if absent
	Close         bool  // Connection: close
}

// Read reads a response head from br (status line and headers up to the
// empty line). It never reads past the head.
func Read(br *bufio.Reader) (Head, error) {
	h := Head{ContentLength: -1}
	total := 0
	var line []byte
	readLine := func() ([]byte, error) {
		line = line[:0]
		for {
			frag, err := br.ReadSlice('\n')
			total += len(frag)
			if total > MaxHead {
				return nil, fmt.Errorf("%w: head longer than %d bytes", ErrMalformed, MaxHead)
			}
			line = append(line, frag...)
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return nil, err
			}
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		return line, nil
	}
	sl, err := readLine()
	if err != nil {
		return h, err
	}
	// HTTP/1.1 200 OK
	if len(sl) < 12 || !bytes.HasPrefix(sl, []byte("HTTP/1.")) || sl[8] != ' ' {
		return h, fmt.Errorf("%w: status line %q", ErrMalformed, clip(sl))
	}
	st, err := strconv.Atoi(string(sl[9:12]))
	if err != nil || st < 100 || st > 999 || (len(sl) > 12 && sl[12] != ' ') {
		return h, fmt.Errorf("%w: status line %q", ErrMalformed, clip(sl))
	}
	h.Status = st
	for n := 0; ; n++ {
		l, err := readLine()
		if err != nil {
			return h, err
		}
		if len(l) == 0 {
			return h, nil
		}
		if n >= MaxHeaders {
			return h, fmt.Errorf("%w: more than %d headers", ErrMalformed, MaxHeaders)
		}
		k, v, ok := bytes.Cut(l, []byte{':'})
		if !ok || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			return h, fmt.Errorf("%w: header line %q", ErrMalformed, clip(l))
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Type")):
			h.ContentType = string(v)
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			h.Chunked = bytes.EqualFold(v, []byte("chunked"))
			if !h.Chunked && !bytes.EqualFold(v, []byte("identity")) {
				return h, fmt.Errorf("%w: transfer encoding %q", ErrMalformed, clip(v))
			}
		case bytes.EqualFold(k, []byte("Content-Length")):
			cl, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || cl < 0 {
				return h, fmt.Errorf("%w: content length %q", ErrMalformed, clip(v))
			}
			h.ContentLength = cl
		case bytes.EqualFold(k, []byte("Connection")):
			h.Close = bytes.EqualFold(v, []byte("close"))
		}
	}
}

// clip keeps an error's quote of network bytes short.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
