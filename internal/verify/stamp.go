package verify

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// RunID identifies one run: 128 random bits.
type RunID [16]byte

// NewRunID returns a random RunID (crypto/rand).
func NewRunID() RunID {
	var r RunID
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go >= 1.24).
	return r
}

// String is the 32-char lower-case hex form.
func (r RunID) String() string { return hex.EncodeToString(r[:]) }

// IsZero reports whether r is the zero RunID.
func (r RunID) IsZero() bool { return r == RunID{} }

// MarshalText implements encoding.TextMarshaler (the String form).
func (r RunID) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (see ParseRunID).
func (r *RunID) UnmarshalText(b []byte) error {
	v, err := ParseRunID(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ErrRunID: a run ID is not 32 hex digits.
var ErrRunID = errors.New("verify: run ID must be 32 hex digits")

// ParseRunID parses the 32-char hex form (either case).
func ParseRunID(s string) (RunID, error) {
	var r RunID
	if len(s) != 2*len(r) {
		return RunID{}, fmt.Errorf("%w: %q", ErrRunID, s)
	}
	if _, err := hex.Decode(r[:], []byte(s)); err != nil {
		return RunID{}, fmt.Errorf("%w: %q", ErrRunID, s)
	}
	return r, nil
}

// MarkerStream is the stream number of readiness-barrier markers; they are never expected.
const MarkerStream = ^uint32(0)

// Stamp layout: printable ASCII, fixed width, lower-case hex fields.
//
//	offset  len  field
//	     0    4  "ES1."       magic, version, separator
//	     4   32  run ID
//	    36    1  '.'
//	    37    8  publisher
//	    45    8  stream
//	    53    1  '.'
//	    54   16  seq
//	    70   16  intended send time (int64 ns as uint64, two's complement)
//	    86   16  actual send time   (int64 ns as uint64, two's complement)
//	   102    1  '.'
//	   103    8  CRC-32C (Castagnoli) of bytes [0,103) and [112,len): the
//	             whole payload but the checksum itself, so a corrupted or
//	             truncated body is caught, not only a corrupted header
//	   111    1  ';'
//	   112       body (EncodeWith), then Filler up to len(payload)
const (
	offRun       = 4
	offSep1      = 36
	offPublisher = 37
	offStream    = 45
	offSep2      = 53
	offSeq       = 54
	offIntended  = 70
	offSent      = 86
	offSep3      = 102
	offCRC       = 103
	offEnd       = 111
)

// StampSize is the encoded size of a stamp in bytes; payloads are at least this long.
const StampSize = 112

// Magic is the first bytes of every stamp: magic "ES", version "1", separator.
const Magic = "ES1."

// Filler is the byte that pads a payload after the stamp.
const Filler = '~'

var (
	// ErrShort: the payload is shorter than a stamp.
	ErrShort = errors.New("verify: payload shorter than a stamp")
	// ErrMagic: bad magic or version.
	ErrMagic = errors.New("verify: bad magic or version")
	// ErrChecksum: checksum mismatch (or a malformed field under a valid magic).
	ErrChecksum = errors.New("verify: bad checksum")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const hexDigits = "0123456789abcdef"

// unhex maps a lower-case hex digit to its value and anything else to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < 16; i++ {
		t[hexDigits[i]] = byte(i)
	}
	return t
}()

// Stamp is the header at the start of every payload. Times are integer
// nanoseconds on the run's monotonic timeline (see Clock).
type Stamp struct {
	Run       RunID
	Publisher uint32
	Stream    uint32
	Seq       uint64 // from 1 per (publisher, stream), never reused
	Intended  int64  // scheduled send time
	Sent      int64  // actual send time
}

func putHex(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = hexDigits[v&15]
		v >>= 4
	}
}

// getHex parses len(src) <= 16 lower-case hex digits; ok is false on any other byte.
func getHex(src []byte) (v uint64, ok bool) {
	var bad byte
	for _, c := range src {
		d := unhex[c]
		bad |= d
		v = v<<4 | uint64(d&15)
	}
	return v, bad&0xf0 == 0
}

// Encode writes s at the start of dst and pads the rest of dst with text-safe
// filler. len(dst) must be >= StampSize (else ErrShort). No allocation.
func (s *Stamp) Encode(dst []byte) error { return s.EncodeWith(dst, nil) }

// EncodeWith writes s at the start of dst, then body, then filler up to
// len(dst); the checksum covers all of it. body should be printable ASCII to
// keep the payload text-safe. len(dst) must be >= StampSize+len(body) (else
// ErrShort). No allocation.
func (s *Stamp) EncodeWith(dst, body []byte) error {
	if len(dst) < StampSize+len(body) {
		return ErrShort
	}
	copy(dst, Magic)
	for i, b := range s.Run {
		dst[offRun+2*i] = hexDigits[b>>4]
		dst[offRun+2*i+1] = hexDigits[b&15]
	}
	dst[offSep1] = '.'
	putHex(dst[offPublisher:offStream], uint64(s.Publisher))
	putHex(dst[offStream:offSep2], uint64(s.Stream))
	dst[offSep2] = '.'
	putHex(dst[offSeq:offIntended], s.Seq)
	putHex(dst[offIntended:offSent], uint64(s.Intended))
	putHex(dst[offSent:offSep3], uint64(s.Sent))
	dst[offSep3] = '.'
	dst[offEnd] = ';'
	n := copy(dst[StampSize:], body)
	if pad := dst[StampSize+n:]; len(pad) > 0 {
		pad[0] = Filler
		for i := 1; i < len(pad); i *= 2 {
			copy(pad[i:], pad[:i])
		}
	}
	putHex(dst[offCRC:offEnd], uint64(checksum(dst)))
	return nil
}

// checksum is the CRC-32C of p without its checksum field.
func checksum(p []byte) uint32 {
	return crc32.Update(crc32.Checksum(p[:offCRC], castagnoli), castagnoli, p[StampSize:])
}

// Decode parses the stamp at the start of src into s. No allocation. Errors:
// ErrShort, ErrMagic, ErrChecksum (bare; test with errors.Is). The checksum
// covers the whole payload. On error s is left unchanged.
func Decode(src []byte, s *Stamp) error {
	if len(src) < StampSize {
		return ErrShort
	}
	if string(src[:len(Magic)]) != Magic {
		return ErrMagic
	}
	if src[offSep1] != '.' || src[offSep2] != '.' || src[offSep3] != '.' || src[offEnd] != ';' {
		return ErrChecksum
	}
	sum, ok := getHex(src[offCRC:offEnd])
	if !ok || uint32(sum) != checksum(src) {
		return ErrChecksum
	}
	var run RunID
	var bad byte
	for i := range run {
		hi, lo := unhex[src[offRun+2*i]], unhex[src[offRun+2*i+1]]
		bad |= hi | lo
		run[i] = hi<<4 | lo&15
	}
	pub, ok1 := getHex(src[offPublisher:offStream])
	str, ok2 := getHex(src[offStream:offSep2])
	seq, ok3 := getHex(src[offSeq:offIntended])
	intended, ok4 := getHex(src[offIntended:offSent])
	sent, ok5 := getHex(src[offSent:offSep3])
	if bad&0xf0 != 0 || !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return ErrChecksum
	}
	*s = Stamp{Run: run, Publisher: uint32(pub), Stream: uint32(str), Seq: seq, Intended: int64(intended), Sent: int64(sent)}
	return nil
}

// IsMarker reports whether payload is a valid stamp of a readiness marker
// (Stream == MarkerStream). The embedded bus's fault injection skips them
// (localbus.Faults.Skip), so faults only ever hit measured messages.
func IsMarker(payload []byte) bool {
	var st Stamp
	return Decode(payload, &st) == nil && st.Stream == MarkerStream
}

// Clock is the run's monotonic timeline: nanoseconds since Origin.
type Clock struct{ Origin time.Time }

// NewClock starts a timeline at time.Now() (monotonic reading included).
func NewClock() Clock { return Clock{Origin: time.Now()} }

// Now is time.Since(Origin) in ns.
func (c Clock) Now() int64 { return int64(time.Since(c.Origin)) }
