package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
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
	up := packets.NewControlPacket(packets.Unsubscribe).(*packets.UnsubscribePacket)
	ep.mu.Lock()
	ep.subID++
	id := subscribeIDBase + ep.subID%0xff
	ep.mu.Unlock()
	up.MessageID = id
	up.Topics = topics
	var b bytes.Buffer
	if err := up.Write(&b); err != nil {
		return fmt.Errorf("mqtt: unsubscribe: %w", err)
	}
	if b.Len() > maxRemaining {
		return fmt.Errorf("mqtt: unsubscribe: UNSUBSCRIBE of %d bytes is too large", b.Len())
	}
	ep.mu.Lock()
	if ep.dead || ep.werr != nil {
		ep.mu.Unlock()
		return ErrNotConnected
	}
	ep.wbuf = append(ep.wbuf, b.Bytes()...)
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
