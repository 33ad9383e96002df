package longpoll

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

// newFakeNchanPKI is newFakeNchan over https with a certificate signed by pki's CA.
func newFakeNchanPKI(t testing.TB, hold time.Duration, pki bustest.PKI) *fakeNchan {
	t.Helper()
	f := startFakeNchan(hold)
	f.srv.Close()
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = pki.ServerTLS()
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	f.srv.StartTLS()
	t.Cleanup(f.close)
	return f
}

// TestCAFile: a private CA given as CAFile is trusted for https targets
// (without Insecure); without it the same server fails verification.
func TestCAFile(t *testing.T) {
	pki := bustest.NewPKI(t)
	f := newFakeNchanPKI(t, time.Minute, pki)

	t.Run("with CA file", func(t *testing.T) {
		c := newClient(t, Config{URL: f.URL(), CAFile: pki.CAFile})
		if err := c.Check(context.Background()); err != nil {
			t.Fatalf("Check() with the CA file = %v", err)
		}
		conn, rec := dial(t, c, "ca-sub")
		subscribed(t, f, conn, "ca")
		if err := conn.Publish(context.Background(), "ca", []byte("trusted")); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		bustest.Eventually(t, "delivery over TLS", func() bool { return len(rec.messages()) == 1 })
	})

	t.Run("without CA file", func(t *testing.T) {
		c := newClient(t, Config{URL: f.URL()})
		err := c.Check(context.Background())
		var cv *tls.CertificateVerificationError
		if !errors.Is(err, bus.ErrRefused) || !errors.As(err, &cv) {
			t.Fatalf("Check() without the CA file = %v, want ErrRefused wrapping a certificate verification error", err)
		}
		conn, rec := dial(t, c, "noca")
		if err := conn.Publish(context.Background(), "ca", []byte("x")); !errors.As(err, &cv) {
			t.Fatalf("Publish without the CA file = %v, want a certificate verification error", err)
		}
		if err := conn.Subscribe(context.Background(), []string{"ca"}); err != nil {
			t.Fatal(err)
		}
		bustest.Eventually(t, "the poll to fail", func() bool { return rec.count(bus.Disconnected) > 0 })
		if d := rec.eventsOf(bus.Disconnected)[0]; !errors.As(d.Err, &cv) {
			t.Fatalf("Disconnected.Err = %v, want a certificate verification error", d.Err)
		}
	})

	t.Run("bad CA file", func(t *testing.T) {
		if _, err := New(Config{URL: f.URL(), CAFile: pki.CAFile + ".missing"}); err == nil {
			t.Fatal("New with a missing CA file: no error")
		}
	})
}
