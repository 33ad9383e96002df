package mqtt

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	_, err := c.request(ctx, ep, true, func(id uint16) ([]byte, error) {
		for _, t := range topics {
			if len(t) > 65535 {
				return nil, fmt.Errorf("mqtt: unsubscribe: topic filter of %d bytes, at most 65535", len(t))
			}
		}
		b := appendUnsubscribe(nil, id, topics, ep.v5)
		if len(b) > maxRemaining {
			return nil, fmt.Errorf("mqtt: unsubscribe: UNSUBSCRIBE of %d bytes is too large", len(b))
		}
		return b, nil
	})
	return err
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
