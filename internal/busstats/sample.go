package busstats

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// Sources.
const (
	SourceMosquitto = "mosquitto $SYS"
	SourceNchan     = "nchan_stub_status"
	SourceEmbedded  = "embedded bus"
)

// sysHandler feeds $SYS deliveries into the recorder.
type sysHandler struct{ r *recorder }

func (h sysHandler) HandleMessage(m bus.Message) {
	if !strings.HasPrefix(m.Topic, "$SYS/") || len(m.Topic) > 256 {
		return
	}
	if v, ok := ParseSYS(m.Payload); ok {
		h.r.set(m.Topic, v)
	}
}

func (h sysHandler) HandleEvent(bus.Event) {}

// SampleMQTT subscribes to $SYS/# through d (the target's dialer: the same
// credentials and TLS as the run) and samples the latest value of every
// numeric $SYS topic every interval until ctx ends. A broker that refuses
// the subscription (an ACL) or has no $SYS gives a Series with Error.
//
// live, if not nil, holds the latest sample meanwhile.
func SampleMQTT(ctx context.Context, d bus.Dialer, clientID string, every time.Duration, live *Live) Series {
	r := newRecorder(SourceMosquitto, every, live)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.Dial(ctx, clientID, sysHandler{r})
	if err == nil {
		err = conn.Subscribe(dctx, []string{"$SYS/#"})
	}
	cancel()
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		r.fail(fmt.Sprintf("cannot subscribe to $SYS/#: %v", err))
		return r.series(SourceMosquitto)
	}
	defer conn.Close()
	loop(ctx, r, every)
	s := r.series(SourceMosquitto)
	if len(s.Samples) == 0 && s.Error == "" {
		s.Error = "the broker published no numeric $SYS topic (sys_interval 0?)"
	}
	return s
}

// SampleHTTP reads url (Nchan's nchan_stub_status) every interval until ctx
// ends. A page that is not there (404: the location is not configured)
// ends the sampling with Error.
// live, if not nil, holds the latest sample meanwhile.
func SampleHTTP(ctx context.Context, client *http.Client, url string, every time.Duration, live *Live) Series {
	r := newRecorder(SourceNchan, every, live)
	get := func() bool {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if err != nil {
			r.fail(err.Error())
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Sprintf("GET %s: %v", url, err))
			}
			return ctx.Err() == nil
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(io.LimitReader(resp.Body, MaxPage))
		if resp.StatusCode != http.StatusOK {
			r.fail(fmt.Sprintf("GET %s: %s (configure a location with nchan_stub_status, or --bus-stats-path)", url, resp.Status))
			return false
		}
		for k, v := range ParseStubStatus(page) {
			r.set(k, v)
		}
		return true
	}
	if get() {
		r.sample(time.Now())
		t := time.NewTicker(every)
		defer t.Stop()
	poll:
		for {
			select {
			case <-ctx.Done():
				break poll
			case <-t.C:
			}
			if !get() {
				break
			}
			r.sample(time.Now())
		}
	}
	return r.series(SourceNchan)
}

// SampleFunc reads an in-process bus's numbers (the embedded bus's Stats)
// every interval until ctx ends, and once at the start and the end. dropped
// is the key of the bus's own count of dropped messages ("" if none).
// live, if not nil, holds the latest sample meanwhile.
func SampleFunc(ctx context.Context, source, dropped string, stats func() map[string]float64, every time.Duration, live *Live) Series {
	r := newRecorder(source, every, live)
	r.dropped = dropped
	read := func() {
		for k, v := range stats() {
			r.set(k, v)
		}
	}
	read()
	r.sample(time.Now())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			read()
			r.sample(time.Now())
			return r.series(source)
		case <-t.C:
			read()
			r.sample(time.Now())
		}
	}
}

// loop samples every interval until ctx ends, and once more at the end.
func loop(ctx context.Context, r *recorder, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.sample(time.Now())
			return
		case <-t.C:
			r.sample(time.Now())
		}
	}
}
