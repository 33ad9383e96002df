package verify

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"testing"
)

var testRun = RunID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}

func TestStampRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    Stamp
		size int
	}{
		{"zero", Stamp{}, StampSize},
		{"typical", Stamp{Run: testRun, Publisher: 7, Stream: 3, Seq: 12345, Intended: 1_500_000_000, Sent: 1_500_000_123}, 256},
		{"negative times", Stamp{Run: testRun, Publisher: 1, Stream: 1, Seq: 1, Intended: -5, Sent: math.MinInt64}, StampSize},
		{"max", Stamp{Run: RunID{0xff, 0xff}, Publisher: math.MaxUint32, Stream: MarkerStream, Seq: math.MaxUint64, Intended: math.MaxInt64, Sent: math.MaxInt64}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, tt.size)
			if err := tt.s.Encode(buf); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			for i, c := range buf {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("byte %d = %#x is not printable ASCII", i, c)
				}
			}
			if !bytes.HasPrefix(buf, []byte(Magic)) {
				t.Fatalf("payload %q does not start with %q", buf[:8], Magic)
			}
			for i, c := range buf[StampSize:] {
				if c != Filler {
					t.Fatalf("padding byte %d = %q, want %q", i, c, Filler)
				}
			}
			var got Stamp
			if err := Decode(buf, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.s {
				t.Fatalf("Decode = %+v, want %+v", got, tt.s)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good := make([]byte, StampSize+8)
	s := Stamp{Run: testRun, Publisher: 1, Stream: 2, Seq: 3, Intended: 4, Sent: 5}
	if err := s.Encode(good); err != nil {
		t.Fatal(err)
	}
	mut := func(i int, c byte) []byte {
		b := bytes.Clone(good)
		b[i] = c
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:StampSize-1], ErrShort},
		{"bad magic", mut(0, 'X'), ErrMagic},
		{"bad version", mut(2, '2'), ErrMagic},
		{"run flipped", mut(offRun+3, 'f'^good[offRun+3]^'0'), ErrChecksum},
		{"seq changed", mut(offSeq+15, '9'), ErrChecksum},
		{"intended changed", mut(offIntended+1, '1'), ErrChecksum},
		{"checksum changed", mut(offCRC, good[offCRC]^1), ErrChecksum},
		{"checksum not hex", mut(offCRC+2, 'G'), ErrChecksum},
		{"upper-case hex", mut(offRun, 'A'), ErrChecksum},
		{"separator", mut(offSep2, '-'), ErrChecksum},
		{"terminator", mut(offEnd, '.'), ErrChecksum},
		{"padding corrupted", mut(StampSize+3, 'z'), ErrChecksum},
		{"truncated", good[:len(good)-1], ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Stamp
			err := Decode(tt.in, &got)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
			if err == nil && got != s {
				t.Fatalf("Decode = %+v, want %+v", got, s)
			}
		})
	}
	if err := s.Encode(make([]byte, StampSize-1)); !errors.Is(err, ErrShort) {
		t.Fatalf("Encode into short buffer: %v, want ErrShort", err)
	}
}

func TestStampNoAlloc(t *testing.T) {
	buf := make([]byte, 512)
	s := Stamp{Run: testRun, Publisher: 1, Stream: 2, Seq: 3, Intended: 4, Sent: 5}
	var got Stamp
	allocs := testing.AllocsPerRun(100, func() {
		s.Seq++
		_ = s.Encode(buf)
		_ = Decode(buf, &got)
		_ = Decode(buf[:10], &got)
		buf[offSeq] ^= 1
		_ = Decode(buf, &got)
		buf[offSeq] ^= 1
	})
	if allocs != 0 {
		t.Fatalf("Encode+Decode allocate %v times per run, want 0", allocs)
	}
}

func TestRunID(t *testing.T) {
	a, b := NewRunID(), NewRunID()
	if a == b || a.IsZero() {
		t.Fatalf("NewRunID returned %v and %v", a, b)
	}
	s := a.String()
	if len(s) != 32 {
		t.Fatalf("String() = %q, want 32 hex digits", s)
	}
	got, err := ParseRunID(s)
	if err != nil || got != a {
		t.Fatalf("ParseRunID(%q) = %v, %v; want %v", s, got, err, a)
	}
	if testRun.String() != "0123456789abcdeffedcba9876543210" {
		t.Fatalf("String() = %q", testRun.String())
	}
	for _, bad := range []string{"", "0123", "0123456789abcdeffedcba987654321g", "0123456789abcdeffedcba98765432100"} {
		if _, err := ParseRunID(bad); !errors.Is(err, ErrRunID) {
			t.Errorf("ParseRunID(%q) error = %v, want ErrRunID", bad, err)
		}
	}
	txt, _ := a.MarshalText()
	var c RunID
	if err := c.UnmarshalText(txt); err != nil || c != a {
		t.Fatalf("text round trip: %v, %v", c, err)
	}
}

func FuzzDecode(f *testing.F) {
	good := make([]byte, StampSize+4)
	s := Stamp{Run: testRun, Publisher: 1, Stream: 2, Seq: 3, Intended: -4, Sent: 5}
	_ = s.Encode(good)
	f.Add(good, uint32(1), uint32(2), uint64(3), int64(-4), int64(5))
	f.Add([]byte("ES1."), uint32(0), uint32(0), uint64(0), int64(0), int64(0))
	f.Add([]byte{}, uint32(math.MaxUint32), MarkerStream, uint64(math.MaxUint64), int64(math.MinInt64), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, data []byte, pub, stream uint32, seq uint64, intended, sent int64) {
		var got Stamp
		if err := Decode(data, &got); err == nil {
			// A valid stamp is canonical: re-encoding with the same body reproduces it.
			buf := make([]byte, len(data))
			if err := got.EncodeWith(buf, data[StampSize:]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, data) {
				t.Fatalf("re-encoded %q, decoded from %q", buf, data)
			}
		}
		in := Stamp{Run: testRun, Publisher: pub, Stream: stream, Seq: seq, Intended: intended, Sent: sent}
		buf := make([]byte, StampSize+len(data)%64)
		if err := in.Encode(buf); err != nil {
			t.Fatal(err)
		}
		if err := Decode(buf, &got); err != nil || got != in {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, in)
		}
		// With a body after the stamp.
		body := data[:min(len(data), 32)]
		buf = make([]byte, StampSize+len(body)+len(data)%16)
		if err := in.EncodeWith(buf, body); err != nil {
			t.Fatal(err)
		}
		if err := Decode(buf, &got); err != nil || got != in || !bytes.Equal(buf[StampSize:StampSize+len(body)], body) {
			t.Fatalf("round trip with body: %+v, %v; want %+v", got, err, in)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, size := range []int{StampSize, 1024} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			buf := make([]byte, size)
			s := Stamp{Run: testRun, Publisher: 1, Stream: 2, Intended: 4, Sent: 5}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				s.Seq++
				_ = s.Encode(buf)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	buf := make([]byte, 1024)
	s := Stamp{Run: testRun, Publisher: 1, Stream: 2, Seq: 3, Intended: 4, Sent: 5}
	_ = s.Encode(buf)
	var got Stamp
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(buf, &got); err != nil {
			b.Fatal(err)
		}
	}
}
