package target

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/bustest"
)

// TestHTTPSCAFile: --ca-file reaches the long-poll transport's TLS config, so
// an https:// target with a private CA checks out without --insecure.
func TestHTTPSCAFile(t *testing.T) {
	pki := bustest.NewPKI(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusMethodNotAllowed) // an Nchan location that does not do OPTIONS
	}))
	srv.TLS = pki.ServerTLS()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	for _, tt := range []struct {
		name   string
		caFile string
		ok     bool
	}{{"with --ca-file", pki.CAFile, true}, {"without", "", false}} {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := Open(Config{URL: srv.URL, CAFile: tt.caFile})
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			err = tg.Check(context.Background())
			var cv *tls.CertificateVerificationError
			switch {
			case tt.ok && err != nil:
				t.Fatalf("Check() = %v, want nil", err)
			case !tt.ok && (!errors.Is(err, bus.ErrRefused) || !errors.As(err, &cv)):
				t.Fatalf("Check() = %v, want ErrRefused wrapping a certificate verification error", err)
			}
		})
	}
}
