package longpoll

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/eventswarm/eventswarm/internal/bus"
)

func FuzzHandleResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nLast-Modified: Sun, 22 Nov 2026 19:07:08 GMT\r\nEtag: -,[0]\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 408 Request Timeout\r\nEtag: [0],0\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 304 Not Modified\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nEtag: 1\r\nLast-Modified: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nX-Big: " + string(bytes.Repeat([]byte("p"), 5000)) + "\r\nEtag: 1\r\nLast-Modified: x\r\n\r\n"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		br := bufio.NewReaderSize(src, pollReadBuffer)
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		var cur cursor
		rec := &recorder{}
		status, _, err := handleResponse(&br, src, resp, &cur, rec)
		msgs := rec.messages()
		switch {
		case err != nil:
			if len(msgs) != 0 {
				t.Fatalf("error %v, yet %d messages delivered", err, len(msgs))
			}
			var se *bus.StatusError
			if !errors.As(err, &se) && !errors.Is(err, bus.ErrProtocol) && !isTransport(err) {
				t.Fatalf("unclassified error %v", err)
			}
		case status == 200:
			if len(msgs) != 1 || len(cur.etag) == 0 || len(cur.lastModified) == 0 || !printable(cur.etag) || !printable(cur.lastModified) {
				t.Fatalf("200: %d messages, cursor %q", len(msgs), cur)
			}
		case status == 304 || status == 408:
			if len(msgs) != 0 || len(cur.etag) != 0 {
				t.Fatalf("%d: %d messages, cursor %q", status, len(msgs), cur)
			}
		default:
			t.Fatalf("status %d without an error", status)
		}
	})
}
