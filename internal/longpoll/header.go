package longpoll

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Header is one extra request header sent on every request of a Client
// (publish, poll, check) and by the subscribers of other protocols built on it
// (WebSocket, EventSource): a staging bus's auth token, say. Its value is a
// secret: no error, log or report ever shows it (only the name).
type Header struct{ Name, Value string }

// reservedHeaders are the headers the transports set themselves; a Header may
// not replace them.
var reservedHeaders = []string{
	"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
	"keep-alive", "proxy-connection", "if-none-match", "if-modified-since", "last-event-id",
	"sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions",
	"content-type", "accept", strings.ToLower(subscriberHdr),
}

// CheckHeader reports what is wrong with h, naming it but never showing its value.
func CheckHeader(h Header) error {
	if h.Name == "" {
		return errors.New("header name is empty (want \"Name: value\")")
	}
	for i := 0; i < len(h.Name); i++ {
		if !isTokenChar(h.Name[i]) {
			// A malformed name is not shown: it may be a value typed in its place.
			return fmt.Errorf("a header name contains %q (want letters, digits and !#$%%&'*+-.^_`|~ before the ':'; the name is not shown)", h.Name[i])
		}
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(h.Name, r) {
			return fmt.Errorf("header %s is set by the transport and cannot be given", h.Name)
		}
	}
	if !checkHeaderValue(h.Value) {
		return fmt.Errorf("header %s: its value contains a control character", h.Name)
	}
	return nil
}

func isTokenChar(b byte) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// headerLines is hs as request header lines, each ending in CRLF.
func headerLines(hs []Header) string {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	return b.String()
}

// SubscribeTarget is what a subscriber of another protocol (WebSocket,
// EventSource) needs of a Client to reach the same subscriber location.
type SubscribeTarget struct {
	// Host is the Host header value.
	Host string
	// TLS is set for https targets.
	TLS bool
	// SubPrefix is the escaped subscriber path, ending in '/': the request
	// URI is SubPrefix + "ch1,ch2".
	SubPrefix string
	// HeaderLines are the configured extra headers, each "Name: value\r\n".
	HeaderLines string
	// Config is the Client's configuration with its defaults filled in.
	Config Config
}

// SubscribeTarget describes c's subscriber location.
func (c *Client) SubscribeTarget() SubscribeTarget {
	return SubscribeTarget{Host: c.t.host, TLS: c.t.tls, SubPrefix: c.subPrefix, HeaderLines: c.hdrLines, Config: c.cfg}
}

// DialSocket connects a new socket to the target (TCP, then TLS for https,
// spread over the source addresses) as a poll does. Its errors say what
// failed; nothing was sent.
func (c *Client) DialSocket(ctx context.Context) (net.Conn, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	return c.dial(ctx)
}

// CheckChannel reports whether ch can be put in a pub/sub URL as one channel.
func CheckChannel(ch string) error { return checkChannel(ch) }

// CheckID reports whether a subscriber id can be sent as a header value.
func CheckID(id string) bool { return checkHeaderValue(id) }

// SubscriberHeader is the request header naming the subscriber (for the
// embedded bus's fault decisions).
const SubscriberHeader = subscriberHdr

// UserAgent is the User-Agent of every request.
const UserAgent = userAgent
