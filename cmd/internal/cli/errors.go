package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/eventswarm/eventswarm/internal/bus"
	"github.com/eventswarm/eventswarm/internal/mqtt"
	"github.com/eventswarm/eventswarm/internal/verify"
)

// Error is an error that carries its exit code and, optionally, a hint that
// says what to do (as k6's errext does). Code is the one place that maps
// errors to exit codes; every command (probe, swarm, swarm merge, localbus)
// uses it.
type Error struct {
	Code int
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Usage marks err as a usage or configuration error (exit 2): bad flags, an
// unusable output path, a configuration the bus refuses.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: ExitUsage, Err: err}
}

// CouldNotRun marks err as "the run could not happen or could not be
// reported" (exit 4).
func CouldNotRun(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: ExitCouldNotRun, Err: err}
}

// WithHint attaches a hint to err, keeping its code.
func WithHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: Code(err), Err: err, Hint: hint}
}

// Code is the exit code of err: the code it carries, else its class — a
// configuration the transport rejects (bus.ErrConfig) or a granted QoS below
// the requested one is a usage error (2); anything else that stopped the run
// is "could not run" (4). nil is 0.
func Code(err error) int {
	if err == nil {
		return ExitPass
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, bus.ErrConfig), errors.Is(err, mqtt.ErrQoSDowngraded):
		return ExitUsage
	}
	return ExitCouldNotRun
}

// Hint is what to do about err: the hint it carries, else one for its class.
func Hint(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Hint != "" {
		return e.Hint
	}
	switch {
	case errors.Is(err, mqtt.ErrQoSDowngraded):
		return "lower --qos to what the broker grants, or allow the QoS in its configuration"
	case errors.Is(err, mqtt.ErrWebSocketUpgrade):
		return "an mqtt+ws(s) --target must be a broker's MQTT over WebSocket endpoint: host, port and path (often /mqtt)"
	case errors.Is(err, bus.ErrUnreachable):
		return "is the bus running and the --target host:port right?"
	case errors.Is(err, bus.ErrProtocol):
		return "the port answered, but not with the protocol of the --target scheme: mqtt:// vs http://"
	case untrustedCert(err):
		return "give --ca-file with the CA that signed the bus's certificate, or --insecure to skip verification"
	case errors.Is(err, bus.ErrRefused):
		return "check --username, --password/--password-file and the bus's ACLs"
	}
	return ""
}

// untrustedCert reports whether err is a TLS peer's certificate this process
// does not trust (unknown CA, wrong host name, invalid or expired).
func untrustedCert(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// Exit is a command's exit code from its verdict and the error that ended or
// followed the run (nil if none): an error's code wins over the verdict,
// except that a failing verdict stays 1 when only reporting failed after it
// (the bus failed the SLOs; the report problem is printed too).
func Exit(v verify.Verdict, err error) int {
	if err == nil {
		return ExitCode(v)
	}
	code := Code(err)
	if v == verify.Fail && code == ExitCouldNotRun {
		return ExitFail
	}
	return code
}

// internalPrefixes are the package names internal errors may start with; a
// user sees the command's name instead.
var internalPrefixes = []string{"target: ", "verify: ", "behaviours: ", "probe: ", "report: ", "longpoll: ",
	"mqtt: ", "localbus: ", "bus: ", "stats: ", "idpool: ", "backoff: "}

// PrintErr prints err for prog: each joined error on its own line, starting
// with "prog: " (never an internal package name), the hint on the last line.
func PrintErr(w io.Writer, prog string, err error) {
	if err == nil {
		return
	}
	hint := Hint(err)
	lines := strings.Split(strings.TrimRight(err.Error(), "\n"), "\n")
	for i, line := range lines {
		line = strings.TrimPrefix(line, prog+": ")
		for trimmed := true; trimmed; {
			trimmed = false
			for _, p := range internalPrefixes {
				if strings.HasPrefix(line, p) {
					line, trimmed = line[len(p):], true
				}
			}
		}
		line = prog + ": " + line
		if i == len(lines)-1 && hint != "" {
			line += " (" + hint + ")"
		}
		fmt.Fprintln(w, line)
	}
}

// CheckOutput checks, before anything runs, that a report can be written to
// path: its directory exists and is writable and path is not a directory.
// "" (no such output) is fine, and so is "-" when stdout is allowed. The
// error is a usage error naming flag.
func CheckOutput(flag, path string, stdoutOK bool) error {
	if path == "" || (path == "-" && stdoutOK) {
		return nil
	}
	if path == "-" {
		return Usage(fmt.Errorf("--%s -: this output cannot go to stdout; give a file name", flag))
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return Usage(fmt.Errorf("--%s %s is a directory; give a file name, e.g. %s", flag, path, filepath.Join(path, "result."+ext(flag))))
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return Usage(fmt.Errorf("--%s %s: directory %s does not exist; create it or choose another path", flag, path, dir))
	}
	f, err := os.CreateTemp(dir, ".eventswarm-check-*")
	if err != nil {
		return Usage(fmt.Errorf("--%s %s: cannot write in %s; choose a writable directory", flag, path, dir))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

func ext(flag string) string {
	switch flag {
	case "html":
		return "html"
	case "junit":
		return "xml"
	}
	return "json"
}
