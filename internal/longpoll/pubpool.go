package longpoll

import (
	"context"
	"sync"
	"time"
)

// Publishes run on the Client's publisher goroutines, not on the caller's:
// fasthttp's connection path (dial, write, parse) is deep, and running it on
// every user's goroutine would grow each user's stack for good. A few long-lived
// workers (see maxPubWorkers) take requests from pubCh; when none is idle a
// one-off goroutine serves the request, so publish concurrency is not capped
// below the HostClient's MaxConns. The caller waits for the answer either way.

// maxPubWorkers is how many long-lived publisher goroutines a Client keeps.
func maxPubWorkers(maxConns int) int { return min(max(maxConns/16, 64), 256) }

// pubReq is one publish handed to a publisher goroutine.
type pubReq struct {
	ctx      context.Context // the publishing Conn's lifetime: its end cuts the request
	deadline time.Time
	channel  string
	payload  []byte
	status   int
	err      error
	done     chan struct{} // receives once the publish is over
}

var pubReqPool = sync.Pool{New: func() any { return &pubReq{done: make(chan struct{}, 1)} }}

// pubPool is a Client's set of long-lived publisher goroutines.
type pubPool struct {
	ch     chan *pubReq // unbuffered: a send succeeds only to an idle worker
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex // guards n and closed against Close
	n      int
	max    int
	closed bool
}

func newPubPool(maxConns int) *pubPool {
	return &pubPool{ch: make(chan *pubReq), stop: make(chan struct{}), max: maxPubWorkers(maxConns)}
}

// runPublish does c.publish on a publisher goroutine and returns its result.
func (c *Client) runPublish(ctx context.Context, deadline time.Time, channel string, payload []byte) (int, error) {
	r := pubReqPool.Get().(*pubReq)
	r.ctx, r.deadline, r.channel, r.payload = ctx, deadline, channel, payload
	c.pool.submit(c, r)
	<-r.done
	status, err := r.status, r.err
	*r = pubReq{done: r.done}
	pubReqPool.Put(r)
	return status, err
}

func (p *pubPool) submit(c *Client, r *pubReq) {
	select {
	case p.ch <- r:
		return
	default:
	}
	p.mu.Lock()
	if !p.closed && p.n < p.max {
		p.n++
		p.wg.Add(1)
		p.mu.Unlock()
		go p.worker(c, r)
		return
	}
	p.mu.Unlock()
	go serve(c, r)
}

func serve(c *Client, r *pubReq) {
	r.status, r.err = c.publish(r.ctx, r.deadline, r.channel, r.payload)
	r.done <- struct{}{}
}

func (p *pubPool) worker(c *Client, r *pubReq) {
	defer p.wg.Done()
	for {
		serve(c, r)
		select {
		case r = <-p.ch:
		case <-p.stop:
			return
		}
	}
}

// close stops the workers (each finishes the publish it holds) and waits for them.
func (p *pubPool) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
