package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/verify"
)

func TestExitCode(t *testing.T) {
	for v, want := range map[verify.Verdict]int{verify.Pass: ExitPass, verify.Fail: ExitFail, verify.Inconclusive: ExitInconclusive, "": ExitInconclusive} {
		if got := ExitCode(v); got != want {
			t.Errorf("ExitCode(%q) = %d, want %d", v, got, want)
		}
	}
}

func parse(t *testing.T, args ...string) (*Common, verify.Config, []error) {
	t.Helper()
	var c Common
	var ledger verify.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Register(fs, &ledger)
	if err := ParseArgs(fs, "x", "about", args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		return &c, ledger, []error{err}
	}
	_, errs := c.Finish("x", ledger)
	return &c, ledger, errs
}

func TestFinish(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" = no error
	}{
		{nil, ""},
		{[]string{"--fault-drop", "0.1", "--fault-delays", "1s,2s"}, ""},
		{[]string{"--fault-drop", "0.1", "--target", "mqtt://h:1883"}, "only apply to the embedded bus"},
		{[]string{"--fault-delay", "0.1", "--fault-delays", "soon"}, "--fault-delays"},
		{[]string{"--live", "0"}, "--live"},
		{[]string{"--lost-after", "0"}, "--lost-after"},
		{[]string{"--lost-after", "1s"}, "--latency 2s must not exceed --lost-after 1s"},
		{[]string{"--within", "2"}, "--within"},
		{[]string{"--run-id", "zz"}, "--run-id"},
		{[]string{"--bogus"}, "run x -h"},
		{[]string{"stray"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c, _, errs := parse(t, tt.args...)
			err := errors.Join(errs...)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("errors %v, want %q", err, tt.want)
			}
			if err == nil && c.Faults.Enabled() && len(c.Target.Bus.Faults.Delays) != 2 {
				t.Fatalf("fault delays %v not passed to the embedded bus", c.Target.Bus.Faults.Delays)
			}
		})
	}
}

func TestPrintErrOneLineWithHint(t *testing.T) {
	var b bytes.Buffer
	PrintErr(&b, "x", fmt.Errorf("x: cannot use mqtt://h: %w", bus.ErrUnreachable))
	if out := b.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "is the bus running") {
		t.Fatalf("PrintErr wrote %q, want one line with a hint", out)
	}
}

// TestHintUntrustedCert: a TLS certificate this process does not trust is
// refused by the bus's side of the handshake, but the hint is about --ca-file,
// not credentials.
func TestHintUntrustedCert(t *testing.T) {
	for _, cert := range []error{
		x509.UnknownAuthorityError{},
		x509.HostnameError{Host: "127.0.0.1", Certificate: &x509.Certificate{}},
		&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}},
	} {
		err := fmt.Errorf("mqtt: TLS with h: certificate not trusted: %w: %w", bus.ErrRefused, cert)
		if h := Hint(err); !strings.Contains(h, "--ca-file") || strings.Contains(h, "--username") {
			t.Errorf("Hint(%T) = %q; want the --ca-file hint", cert, h)
		}
	}
	if h := Hint(fmt.Errorf("x: %w", bus.ErrRefused)); !strings.Contains(h, "--username") {
		t.Errorf("Hint(refused) = %q; want the credentials hint", h)
	}
}
