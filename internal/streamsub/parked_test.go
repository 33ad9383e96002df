package streamsub

import (
	"io"
	"strings"
	"testing"
)

// oneByte reads one byte per call, so every Wait parks on a fresh read.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// TestParkedReaderKeepsEveryByte: whatever the mix of Wait and reads, the
// bytes come out in order, none lost or repeated, and Buffered is > 0 after
// every Wait.
func TestParkedReaderKeepsEveryByte(t *testing.T) {
	const in = "abcdefghijklmnopqrstuvwxyz0123456789"
	for _, src := range []io.Reader{strings.NewReader(in), oneByte{strings.NewReader(in)}} {
		p := NewParkedReader(src)
		var out []byte
		for i := 0; ; i++ {
			if err := p.Wait(); err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
			if p.Br.Buffered() == 0 {
				t.Fatalf("nothing buffered after Wait")
			}
			n := 1 + i%3
			for range n {
				b, err := p.Br.ReadByte()
				if err != nil {
					break
				}
				out = append(out, b)
				if p.Br.Buffered() == 0 {
					break
				}
			}
		}
		if string(out) != in {
			t.Fatalf("read %q, want %q", out, in)
		}
		p.Release()
	}
}
