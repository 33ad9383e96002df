package bustest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// MQTTFaultProxy is a TCP proxy on 127.0.0.1 in front of an MQTT broker that
// rearranges the PUBLISH packets the broker sends to its clients, and counts
// exactly what it did: every SwapEvery-th eligible PUBLISH of a connection is
// held back and written after the next eligible one (one adjacent swap), and
// every DupEvery-th eligible QoS 1/2 PUBLISH not part of a swap is followed by
// a copy with the DUP flag set (one redelivery). Eligible means Filter
// returns true for its payload (all packets when Filter is nil). A held
// packet with no successor within a second is written alone and not counted.
type MQTTFaultProxy struct {
	SwapEvery, DupEvery int
	Filter              func(payload []byte) bool

	ln     net.Listener
	target string
	swaps  atomic.Int64
	dups   atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewMQTTFaultProxy listens on 127.0.0.1 and forwards to target; set the
// fields before the first client connects. It is closed at the end of the test.
func NewMQTTFaultProxy(t testing.TB, target string, swapEvery, dupEvery int, filter func([]byte) bool) *MQTTFaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &MQTTFaultProxy{SwapEvery: swapEvery, DupEvery: dupEvery, Filter: filter, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *MQTTFaultProxy) Addr() string { return p.ln.Addr().String() }

// Swaps is the number of adjacent swaps made.
func (p *MQTTFaultProxy) Swaps() int64 { return p.swaps.Load() }

// Dups is the number of DUP-flagged copies written.
func (p *MQTTFaultProxy) Dups() int64 { return p.dups.Load() }

func (p *MQTTFaultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *MQTTFaultProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *MQTTFaultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *MQTTFaultProxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(s) {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(s, c)
		_ = s.Close()
	}()
	p.rearrange(c, s)
	_ = c.Close()
	<-done
}

// rearrange copies the broker's packets to the client, applying the faults.
func (p *MQTTFaultProxy) rearrange(dst io.Writer, src net.Conn) {
	pkts := make(chan []byte, 64)
	go func() {
		defer close(pkts)
		br := bufio.NewReader(src)
		for {
			pkt, err := readMQTTPacket(br)
			if err != nil {
				return
			}
			pkts <- pkt
		}
	}()
	defer func() {
		for range pkts { // let the reader end
		}
	}()
	k := 0
	var held []byte
	for {
		var pkt []byte
		var ok bool
		if held == nil {
			pkt, ok = <-pkts
		} else {
			select {
			case pkt, ok = <-pkts:
			case <-time.After(time.Second):
				if _, err := dst.Write(held); err != nil {
					return
				}
				held = nil
				continue
			}
		}
		if !ok {
			if held != nil {
				_, _ = dst.Write(held)
			}
			return
		}
		payload, qos, isPub := publishPayload(pkt)
		if !isPub || (p.Filter != nil && !p.Filter(payload)) {
			if _, err := dst.Write(pkt); err != nil {
				return
			}
			continue
		}
		k++
		switch {
		case held != nil:
			if _, err := dst.Write(append(pkt, held...)); err != nil {
				return
			}
			held = nil
			p.swaps.Add(1)
			continue
		case p.SwapEvery > 0 && k%p.SwapEvery == 0:
			held = pkt
			continue
		}
		out := pkt
		if p.DupEvery > 0 && k%p.DupEvery == 0 && qos > 0 {
			dup := append([]byte(nil), pkt...)
			dup[0] |= 0x08
			out = append(append([]byte(nil), pkt...), dup...)
			p.dups.Add(1)
		}
		if _, err := dst.Write(out); err != nil {
			return
		}
	}
}

// readMQTTPacket reads one whole packet (at most 1 MiB).
func readMQTTPacket(br *bufio.Reader) ([]byte, error) {
	h, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	pkt := []byte{h}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		pkt = append(pkt, b)
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; i == 3 {
			return nil, errors.New("bad remaining length")
		}
	}
	if n > 1<<20 {
		return nil, errors.New("packet too large for the proxy")
	}
	hl := len(pkt)
	pkt = append(pkt, make([]byte, n)...)
	_, err = io.ReadFull(br, pkt[hl:])
	return pkt, err
}

// publishPayload returns a PUBLISH packet's payload and QoS.
func publishPayload(pkt []byte) (payload []byte, qos byte, ok bool) {
	if pkt[0]>>4 != 3 {
		return nil, 0, false
	}
	qos = (pkt[0] >> 1) & 3
	i := 1
	for pkt[i]&0x80 != 0 {
		i++
	}
	body := pkt[i+1:]
	if len(body) < 2 {
		return nil, 0, false
	}
	tl := int(body[0])<<8 | int(body[1])
	off := 2 + tl
	if qos > 0 {
		off += 2
	}
	if off > len(body) {
		return nil, 0, false
	}
	return body[off:], qos, true
}
