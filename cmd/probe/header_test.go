package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHeaderValuesNeverShown: header values given by --header, --header-file
// and $EVENTSWARM_HEADERS reach no output: not the tables, the live lines,
// the JSON, the HTML, an error line or -h.
func TestHeaderValuesNeverShown(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "headers")
	if err := os.WriteFile(file, []byte("# auth\nX-Api-Key: s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EVENTSWARM_HEADERS", "X-Env-Token: s3cret-from-env")
	for _, via := range []string{"longpoll", "websocket", "eventsource"} {
		t.Run(via, func(t *testing.T) {
			jsonPath, htmlPath := filepath.Join(dir, via+".json"), filepath.Join(dir, via+".html")
			args := append([]string{"--subscribe-via", via, "--header", "Authorization: Bearer s3cret-flag",
				"--header-file", file, "--json", jsonPath, "--html", htmlPath}, fast...)
			code, stdout, stderr := runProbe(t, args...)
			if code != 0 {
				t.Fatalf("exit %d, want 0\n%s\n%s", code, stdout, stderr)
			}
			for name, s := range map[string]string{"stdout": stdout, "stderr": stderr, "json": read(t, jsonPath), "html": read(t, htmlPath)} {
				if strings.Contains(s, "s3cret") {
					t.Errorf("%s shows a header value", name)
				}
			}
		})
	}
	for _, bad := range [][]string{
		{"--header", "Bad Name: s3cret-1"},
		{"--header", "s3cret-2"},
		{"--header", "Authorization: s3cret\x013"},
		{"--header", "Host: s3cret-4"},
		{"--header-file", filepath.Join(dir, "missing")},
		{"--header", "Authorization: s3cret-5", "--target", "mqtt://127.0.0.1:1"},
		{"--header", "Authorization: s3cret-6", "--subscribe-via", "smoke-signals"},
	} {
		code, stdout, stderr := runProbe(t, append(bad, fast...)...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (usage)\n%s", bad, code, stderr)
		}
		if strings.Contains(stdout+stderr, "s3cret") {
			t.Errorf("%q: the output shows the value:\n%s%s", bad, stdout, stderr)
		}
	}
	_, stdout, stderr := runProbe(t, "--header", "Authorization: s3cret-help", "-h")
	if strings.Contains(stdout+stderr, "s3cret") || !strings.Contains(stderr, "--header") && !strings.Contains(stderr, "-header") {
		t.Errorf("-h after --header: shows the value or not the flag:\n%s", stderr)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
