package localbus

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func FuzzParseCursor(f *testing.F) {
	f.Add([]byte("0"), []byte(""), uint64(0))
	f.Add([]byte(`"12"`), []byte("Mon, 02 Jan 2006 15:04:05 GMT"), uint64(20))
	f.Add([]byte(""), []byte("Mon, 02 Jan 2006 15:04:05 GMT"), uint64(1))
	f.Add([]byte("18446744073709551615"), []byte("x"), uint64(1<<63))
	f.Add([]byte("W/\"1\""), []byte(""), uint64(5))
	f.Fuzz(func(t *testing.T, inm, ims []byte, last uint64) {
		c, err := parseCursor(inm, ims, last)
		if err != nil {
			return
		}
		switch c.kind {
		case fromSeq:
			if len(inm) == 0 || c.seq > last {
				t.Fatalf("parseCursor(%q, %q, %d) = %+v", inm, ims, last, c)
			}
			// What the server emits parses back.
			back, err := parseEtag(formatEtag(nil, c.seq))
			if err != nil || back != c.seq {
				t.Fatalf("etag %d does not round-trip: %d, %v", c.seq, back, err)
			}
		case fromTime:
			if len(inm) != 0 || len(ims) == 0 {
				t.Fatalf("parseCursor(%q, %q) = %+v", inm, ims, c)
			}
		case fromNewest:
			if len(inm) != 0 || len(ims) != 0 {
				t.Fatalf("parseCursor(%q, %q) = newest", inm, ims)
			}
		}
	})
}

func FuzzParseChannels(f *testing.F) {
	f.Add([]byte("a"))
	f.Add([]byte("a,b,c"))
	f.Add([]byte("a,,b"))
	f.Add([]byte(",a"))
	f.Add([]byte("a.b-c_D9"))
	f.Add([]byte("é"))
	f.Fuzz(func(t *testing.T, s []byte) {
		chans, err := parseChannels(s)
		if err != nil {
			return
		}
		if len(chans) == 0 || len(chans) > maxChannels {
			t.Fatalf("parseChannels(%q) = %d channels", s, len(chans))
		}
		seen := map[string]bool{}
		for _, c := range chans {
			if len(c) == 0 || len(c) > maxChannelID || seen[c] {
				t.Fatalf("parseChannels(%q): bad or repeated %q", s, c)
			}
			seen[c] = true
			for i := 0; i < len(c); i++ {
				if !validChannelByte(c[i]) {
					t.Fatalf("parseChannels(%q): %q has %q", s, c, c[i])
				}
			}
		}
	})
}

// FuzzSubHeaders sends arbitrary id headers to a live server: never a panic,
// never a 5xx, and only 200/400/408.
func FuzzSubHeaders(f *testing.F) {
	b, err := Start(Config{MQTTAddr: Disabled, Hold: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	client := &fasthttp.HostClient{Addr: b.HTTPURL()[len("http://"):], MaxIdemponentCallAttempts: 1}
	for i := range 3 {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI(b.HTTPURL() + "/pub/ch")
		req.Header.SetMethod("POST")
		req.SetBodyString("m" + strconv.Itoa(i))
		if err := client.Do(req, nil); err != nil {
			f.Fatal(err)
		}
		fasthttp.ReleaseRequest(req)
	}
	f.Add("1", "", "ch")
	f.Add("", "Mon, 02 Jan 2006 15:04:05 GMT", "ch,other")
	f.Add("abc", "", "ch")
	f.Add("3", "garbage", "a,,b")
	f.Fuzz(func(t *testing.T, inm, ims, chans string) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(b.HTTPURL() + "/sub/x")
		req.URI().SetPathBytes(append([]byte("/sub/"), chans...))
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		if ims != "" {
			req.Header.Set("If-Modified-Since", ims)
		}
		if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
			return // the client refused to send it (invalid header bytes)
		}
		switch resp.StatusCode() {
		case 200, 400, 404, 408:
		default:
			t.Fatalf("inm %q ims %q chans %q: status %d", inm, ims, chans, resp.StatusCode())
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	f := testFaults(1)
	p := bytes.Repeat([]byte("x"), 256)
	b.ReportAllocs()
	for b.Loop() {
		f.Decide("subscriber-1", p)
	}
}

// BenchmarkPublishPoll: one publish and one poll (id echo) round trip over loopback.
func BenchmarkPublishPoll(b *testing.B) {
	for _, faults := range []bool{false, true} {
		b.Run(fmt.Sprintf("faults=%v", faults), func(b *testing.B) {
			cfg := Config{MQTTAddr: Disabled, Hold: time.Second}
			if faults {
				cfg.Faults = Faults{Seed: 1, Corrupt: 0.01}
			}
			bus := startBus(b, cfg)
			client := &fasthttp.HostClient{Addr: bus.HTTPURL()[len("http://"):], MaxIdemponentCallAttempts: 1}
			pub, sub := fasthttp.AcquireRequest(), fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			pub.SetRequestURI(bus.HTTPURL() + "/pub/bench")
			pub.Header.SetMethod("POST")
			pub.SetBody(bytes.Repeat([]byte("x"), 256))
			sub.SetRequestURI(bus.HTTPURL() + "/sub/bench")
			sub.Header.Set(SubscriberHeader, "bench")
			sub.Header.Set("If-None-Match", "0")
			b.ReportAllocs()
			for b.Loop() {
				if err := client.Do(pub, resp); err != nil {
					b.Fatal(err)
				}
				if err := client.Do(sub, resp); err != nil || resp.StatusCode() != 200 {
					b.Fatalf("poll: %v %d", err, resp.StatusCode())
				}
				sub.Header.SetBytesV("If-None-Match", resp.Header.Peek("Etag"))
			}
		})
	}
}
