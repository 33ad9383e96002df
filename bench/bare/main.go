// Command bare is the benchmark's physical-limit baseline: the least an MQTT
// 3.1.1 generator can do for a delivered message on this machine. It opens
// one subscriber and -publishers publishing connections to a broker on
// loopback, publishes -count messages of -size bytes in total as fast as the
// broker takes them (large writes; at QoS 1 a window of -window
// unacknowledged publishes per connection), and reads the deliveries with a
// large buffer. No verification, no pacing, no stamps: compare eventswarm's
// CPU per delivered message with this one's.
//
// It prints one line: delivered=N seconds=S. Exit status 1 when not every
// message arrived within -timeout.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("broker", "127.0.0.1:1883", "broker host:port (loopback)")
	pubs := flag.Int("publishers", 10, "publishing connections")
	count := flag.Int("count", 1_000_000, "messages in total")
	size := flag.Int("size", 128, "payload bytes")
	qos := flag.Int("qos", 0, "0 or 1")
	window := flag.Int("window", 256, "QoS 1: unacknowledged publishes per connection")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this")
	flag.Parse()
	if *qos != 0 && *qos != 1 {
		fmt.Fprintln(os.Stderr, "bare: -qos must be 0 or 1")
		os.Exit(2)
	}
	if err := run(*addr, *pubs, *count, *size, byte(*qos), *window, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}

func run(addr string, pubs, count, size int, qos byte, window int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	sub, err := connect(addr, "bare-sub", deadline)
	if err != nil {
		return err
	}
	defer sub.Close()
	// SUBSCRIBE bench/bare/# at qos, packet ID 1.
	topic := "bench/bare/#"
	sp := []byte{0x82, byte(2 + 2 + len(topic) + 1), 0, 1, 0, byte(len(topic))}
	sp = append(append(sp, topic...), qos)
	if _, err := sub.Write(sp); err != nil {
		return err
	}
	br := bufio.NewReaderSize(sub, 256<<10)
	if h, _, err := readPacket(br, nil); err != nil || h>>4 != 9 {
		return fmt.Errorf("no SUBACK: %v", err)
	}
	var delivered atomic.Int64
	done := make(chan error, 1)
	go func() {
		var body []byte
		acks := bufio.NewWriterSize(sub, 64<<10)
		for delivered.Load() < int64(count) {
			h, b, err := readPacket(br, body)
			if err != nil {
				done <- err
				return
			}
			body = b
			if h>>4 != 3 {
				continue
			}
			delivered.Add(1)
			if (h>>1)&3 == 1 {
				tl := int(binary.BigEndian.Uint16(b))
				_, _ = acks.Write([]byte{0x40, 2, b[2+tl], b[3+tl]})
				if br.Buffered() == 0 {
					_ = acks.Flush()
				}
			}
		}
		_ = acks.Flush()
		done <- nil
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for i := range pubs {
		n := count / pubs
		if i < count%pubs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publish(addr, i, n, size, qos, window, deadline); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	_ = sub.SetReadDeadline(deadline)
	err = <-done
	fmt.Printf("delivered=%d seconds=%.3f\n", delivered.Load(), time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("subscriber: %w (%d of %d delivered)", err, delivered.Load(), count)
	}
	return nil
}

// publish sends n messages on a connection of its own.
func publish(addr string, i, n, size int, qos byte, window int, deadline time.Time) error {
	c, err := connect(addr, fmt.Sprintf("bare-pub-%d", i), deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	topic := fmt.Sprintf("bench/bare/%d", i)
	payload := make([]byte, size)
	var inflight chan struct{}
	ackErr := make(chan error, 1)
	if qos == 1 {
		inflight = make(chan struct{}, window)
		go func() {
			br := bufio.NewReaderSize(c, 64<<10)
			var body []byte
			for got := 0; got < n; {
				h, b, err := readPacket(br, body)
				if err != nil {
					ackErr <- err
					return
				}
				body = b
				if h>>4 == 4 {
					got++
					<-inflight
				}
			}
			ackErr <- nil
		}()
	}
	w := bufio.NewWriterSize(c, 64<<10)
	rem := 2 + len(topic) + size
	if qos == 1 {
		rem += 2
	}
	var pkt []byte
	for k := range n {
		if qos == 1 {
			select {
			case inflight <- struct{}{}:
			default:
				if err := w.Flush(); err != nil { // let the window drain
					return err
				}
				inflight <- struct{}{}
			}
		}
		pkt = append(pkt[:0], 0x30|qos<<1)
		for v := rem; ; {
			b := byte(v & 0x7f)
			v >>= 7
			if v == 0 {
				pkt = append(pkt, b)
				break
			}
			pkt = append(pkt, b|0x80)
		}
		pkt = append(pkt, byte(len(topic)>>8), byte(len(topic)))
		pkt = append(pkt, topic...)
		if qos == 1 {
			id := uint16(k%65535 + 1)
			pkt = append(pkt, byte(id>>8), byte(id))
		}
		pkt = append(pkt, payload...)
		if _, err := w.Write(pkt); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if qos == 1 {
		return <-ackErr
	}
	return nil
}

// connect opens a clean-session MQTT 3.1.1 connection.
func connect(addr, id string, deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("CONNACK % x: %v", ack, err)
	}
	return c, nil
}

// readPacket reads one packet (at most 1 MiB), reusing buf.
func readPacket(br *bufio.Reader, buf []byte) (byte, []byte, error) {
	h, err := br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("packet of %d bytes", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err = io.ReadFull(br, buf)
	return h, buf, err
}
