package mqtt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Unsubscribe ends the subscription to topics in one UNSUBSCRIBE packet and
// waits for the UNSUBACK (at most PublishTimeout): once it returns nil the
// broker sends nothing more for them on this connection (deliveries it sent
// before its UNSUBACK arrived before it, in wire order). The topics are
// forgotten at once, so a reconnect never subscribes to them again, even when
// the UNSUBACK does not come (the error then says so; with a persistent
// session the broker may still hold the subscription, so drop the Conn). A
// topic not subscribed is no error. It satisfies bus.Unsubscriber.
func (c *Conn) Unsubscribe(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return errors.New("mqtt: unsubscribe: no topics")
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	c.topics = slices.DeleteFunc(c.topics, func(t string) bool { return slices.Contains(topics, t) })
	ep := c.cur.Load()
	if ep == nil {
		return ErrNotConnected
	}
	ep.mu.Lock()
	ep.subID++
	id := subscribeIDBase + ep.subID%0xff
	ep.mu.Unlock()
	for _, t := range topics {
		if len(t) > 65535 {
			return fmt.Errorf("mqtt: unsubscribe: topic filter of %d bytes, at most 65535", len(t))
		}
	}
	b := appendUnsubscribe(nil, id, topics, ep.v5)
	if len(b) > maxRemaining {
		return fmt.Errorf("mqtt: unsubscribe: UNSUBSCRIBE of %d bytes is too large", len(b))
	}
	ep.mu.Lock()
	if ep.dead || ep.werr != nil {
		ep.mu.Unlock()
		return ErrNotConnected
	}
	ep.wbuf = append(ep.wbuf, b...)
	ep.flushLocked()
	ep.mu.Unlock()

	t := time.NewTimer(c.client.cfg.PublishTimeout)
	defer t.Stop()
	for {
		select {
		case sa := <-ep.subacks:
			if sa.id == id && sa.unsub {
				return nil
			}
		case <-ep.deadCh:
			return fmt.Errorf("mqtt: unsubscribe: %w (connection lost)", ErrNotConnected)
		case <-ctx.Done():
			return fmt.Errorf("mqtt: unsubscribe: %w", ctx.Err())
		case <-t.C:
			return fmt.Errorf("mqtt: unsubscribe: no UNSUBACK within %v: %w", c.client.cfg.PublishTimeout, os.ErrDeadlineExceeded)
		}
	}
}

// appendUnsubscribe appends an UNSUBSCRIBE packet (MQTT 5: with an empty
// property list) for topics with packet id.
func appendUnsubscribe(dst []byte, id uint16, topics []string, v5 bool) []byte {
	n := 2
	if v5 {
		n++
	}
	for _, t := range topics {
		n += 2 + len(t)
	}
	dst = append(dst, 0xa2)
	dst = appendVarint(dst, n)
	dst = append(dst, byte(id>>8), byte(id))
	if v5 {
		dst = append(dst, 0)
	}
	for _, t := range topics {
		dst = append(dst, byte(len(t)>>8), byte(len(t)))
		dst = append(dst, t...)
	}
	return dst
}
