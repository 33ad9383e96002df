package mqtt

import (
	"sync"
	"time"
)

// keeper is the one timer a Client runs for all its connections: on each
// tick it expires publishes past PublishTimeout, sends PINGREQ on connections
// that have been silent for the keep-alive interval, and drops those whose
// PINGRESP did not come. Its goroutine runs only while some connection is
// registered, so a Client with no connection holds no goroutine.
type keeper struct {
	tick time.Duration

	mu      sync.Mutex
	epochs  map[*epoch]struct{}
	running bool
	stop    chan struct{} // closed to end the running goroutine early (tests)
	scratch []*epoch
}

func newKeeper(tick time.Duration) *keeper {
	return &keeper{tick: tick, epochs: map[*epoch]struct{}{}}
}

// add registers e; the goroutine starts if it was not running.
func (k *keeper) add(e *epoch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.epochs[e] = struct{}{}
	if !k.running {
		k.running = true
		go k.run()
	}
}

// remove unregisters e; the goroutine ends at its next tick if none is left.
func (k *keeper) remove(e *epoch) {
	k.mu.Lock()
	delete(k.epochs, e)
	k.mu.Unlock()
}

func (k *keeper) run() {
	t := time.NewTicker(k.tick)
	defer t.Stop()
	for now := range t.C {
		k.mu.Lock()
		if len(k.epochs) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		list := k.scratch[:0]
		for e := range k.epochs {
			list = append(list, e)
		}
		k.scratch = list
		k.mu.Unlock()
		nano := now.UnixNano()
		for i, e := range list {
			e.onTick(nano)
			list[i] = nil
		}
	}
}
