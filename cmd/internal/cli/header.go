package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/eventswarm/eventswarm/internal/longpoll"
)

// HeadersEnv holds extra request headers, one "Name: value" a line, for CI
// secrets that must not be on the command line.
const HeadersEnv = "EVENTSWARM_HEADERS"

// headerFlags collects --header values. Set never fails: the flag package
// would quote the value (a secret) in its error, so problems are reported by
// Finish, naming the header only.
type headerFlags struct {
	hs   []longpoll.Header
	errs []string
}

// String never shows a value (-h prints it as the default).
func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(s string) error {
	hd, err := parseHeader(s)
	if err != nil {
		h.errs = append(h.errs, "--header: "+err.Error())
		return nil
	}
	h.hs = append(h.hs, hd)
	return nil
}

// parseHeader splits "Name: value"; its error names the header, never the value.
func parseHeader(s string) (longpoll.Header, error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return longpoll.Header{}, fmt.Errorf("a header without ':' (want \"Name: value\"; what was given is not shown, it may be a secret)")
	}
	h := longpoll.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)}
	if err := longpoll.CheckHeader(h); err != nil {
		return longpoll.Header{}, err
	}
	return h, nil
}

// readHeaders parses lines of "Name: value" (blank lines and lines starting
// with '#' skipped); src names the source in errors.
func readHeaders(src, text string) ([]longpoll.Header, []error) {
	var hs []longpoll.Header
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		h, err := parseHeader(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s line %d: %v", src, n, err))
			continue
		}
		hs = append(hs, h)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %v", src, err))
	}
	return hs, errs
}

// finishHeaders gathers --header, --header-file and $EVENTSWARM_HEADERS into
// the target's config.
func (c *Common) finishHeaders(prog string) []error {
	var errs []error
	for _, e := range c.headers.errs {
		errs = append(errs, fmt.Errorf("%s: %s", prog, e))
	}
	hs := append([]longpoll.Header(nil), c.headers.hs...)
	if c.headerFile != "" {
		b, err := os.ReadFile(c.headerFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: --header-file: cannot read %s: %v", prog, c.headerFile, unwrapPath(err)))
		} else {
			more, es := readHeaders("--header-file "+c.headerFile, string(b))
			hs = append(hs, more...)
			for _, e := range es {
				errs = append(errs, fmt.Errorf("%s: %w", prog, e))
			}
		}
	}
	if v := os.Getenv(HeadersEnv); v != "" {
		more, es := readHeaders("$"+HeadersEnv, v)
		hs = append(hs, more...)
		for _, e := range es {
			errs = append(errs, fmt.Errorf("%s: %w", prog, e))
		}
	}
	c.Target.Headers = hs
	return errs
}
