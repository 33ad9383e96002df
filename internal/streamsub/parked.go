package streamsub

import (
	"bufio"
	"io"
	"sync"
)

// ParkedReader is a stream's buffered reader that holds its buffer only
// while bytes are buffered: an idle stream waits on a one-byte read of the
// socket and holds no read buffer, so 10,000 quiet streams do not keep
// 10,000 buffers. Br is valid from Wait until the next Wait.
type ParkedReader struct {
	src io.Reader
	Br  *bufio.Reader
	one [1]byte
	has bool // one holds a byte Br has not read yet
}

var readerPool sync.Pool

// NewParkedReader reads src.
func NewParkedReader(src io.Reader) *ParkedReader { return &ParkedReader{src: src} }

// Read is Br's source: the parked byte, then src.
func (p *ParkedReader) Read(b []byte) (int, error) {
	if p.has && len(b) > 0 {
		p.has = false
		b[0] = p.one[0]
		return 1, nil
	}
	return p.src.Read(b)
}

// Wait blocks until a byte is buffered in Br. With nothing buffered it gives
// Br back to a pool first and parks on a one-byte read.
func (p *ParkedReader) Wait() error {
	if p.Br != nil {
		if p.Br.Buffered() > 0 {
			return nil
		}
		p.release()
	}
	for !p.has {
		n, err := p.src.Read(p.one[:])
		if n == 1 {
			p.has = true
			break
		}
		if err != nil {
			return err
		}
	}
	br, _ := readerPool.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(p, ReadBuffer)
	} else {
		br.Reset(p)
	}
	p.Br = br
	_, _ = br.Peek(1) // takes in the parked byte (Read gives it alone): Buffered() is 1
	return nil
}

func (p *ParkedReader) release() {
	p.Br.Reset(nil)
	readerPool.Put(p.Br)
	p.Br = nil
}

// Release gives back the buffer (the stream is over).
func (p *ParkedReader) Release() {
	if p.Br != nil && p.Br.Size() == ReadBuffer {
		p.release()
	}
	p.Br = nil
}

// Buffers for messages being assembled, held only while one is.
var bufPool sync.Pool

// GetBuf returns an empty buffer from a pool (nil if none).
func GetBuf() []byte {
	if b, ok := bufPool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

// PutBuf gives b back to the pool (large ones are dropped).
func PutBuf(b []byte) {
	if cap(b) == 0 || cap(b) > 16<<10 {
		return
	}
	bufPool.Put(&b)
}
