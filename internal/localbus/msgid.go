package localbus

import (
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"
)

// Message ids. Every long-poll message gets the next value of one bus-wide
// sequence (1, 2, …). A 200 carries it as `Etag: <seq>` (decimal) and the
// message's publish time as Last-Modified. A poll that sends If-None-Match
// resumes after that sequence number on whichever of its channels; one that
// sends only If-Modified-Since resumes after the last message published in or
// before that second; one that sends neither waits for messages published after
// it arrived (Nchan's "newest").

const (
	maxChannels  = 255 // per multiplexed subscription, as Nchan
	maxChannelID = 255 // bytes per channel id
)

var (
	errBadID       = errors.New("malformed message id")
	errUnknownID   = errors.New("unknown message id")
	errBadDate     = errors.New("malformed If-Modified-Since")
	errNoChannel   = errors.New("no channel")
	errTooMany     = errors.New("too many channels")
	errBadChannel  = errors.New("bad channel id")
	errLongChannel = errors.New("channel id too long")
)

// cursorKind says where a poll starts.
type cursorKind uint8

const (
	fromNewest cursorKind = iota // no id: only messages published after the request arrived
	fromSeq                      // If-None-Match: messages with a greater sequence number
	fromTime                     // If-Modified-Since only: messages published after that second
)

type cursor struct {
	kind cursorKind
	seq  uint64
	t    int64 // unix seconds, for fromTime
}

// parseCursor parses a poll's If-None-Match and If-Modified-Since headers.
// lastSeq is the greatest sequence number issued so far: a larger one was never
// issued and is refused (errUnknownID) rather than waited for.
func parseCursor(inm, ims []byte, lastSeq uint64) (cursor, error) {
	if len(inm) > 0 {
		seq, err := parseEtag(inm)
		if err != nil {
			return cursor{}, err
		}
		if seq > lastSeq {
			return cursor{}, errUnknownID
		}
		if len(ims) > 0 {
			if _, err := fasthttp.ParseHTTPDate(ims); err != nil {
				return cursor{}, errBadDate
			}
		}
		return cursor{kind: fromSeq, seq: seq}, nil
	}
	if len(ims) > 0 {
		t, err := fasthttp.ParseHTTPDate(ims)
		if err != nil {
			return cursor{}, errBadDate
		}
		return cursor{kind: fromTime, t: t.Unix()}, nil
	}
	return cursor{kind: fromNewest}, nil
}

// parseEtag parses a decimal sequence number, optionally quoted.
func parseEtag(b []byte) (uint64, error) {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	if len(b) == 0 || len(b) > 20 {
		return 0, errBadID
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errBadID
		}
	}
	seq, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, errBadID
	}
	return seq, nil
}

func formatEtag(dst []byte, seq uint64) []byte { return strconv.AppendUint(dst, seq, 10) }

// parseChannels splits "a,b,c" into channel ids, each [A-Za-z0-9._-]{1,255},
// at most 255 of them; duplicates are removed.
func parseChannels(s []byte) ([]string, error) {
	if len(s) == 0 {
		return nil, errNoChannel
	}
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != ',' {
			if !validChannelByte(s[i]) {
				return nil, errBadChannel
			}
			continue
		}
		if i == start {
			return nil, errBadChannel
		}
		if i-start > maxChannelID {
			return nil, errLongChannel
		}
		name := string(s[start:i])
		dup := false
		for _, o := range out {
			if o == name {
				dup = true
				break
			}
		}
		if !dup {
			if len(out) == maxChannels {
				return nil, errTooMany
			}
			out = append(out, name)
		}
		start = i + 1
	}
	return out, nil
}

func validChannelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}
