package report

import (
	"context"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// TestPagesInChromium renders each sample page (probe pass and fail, swarm,
// merge) in headless Chromium, as a reader's browser would, and checks the
// screenshot: a PNG of the window's size that is not blank and shows the
// verdict badge in its colour. It skips when chromium is not on PATH (.ci/run
// installs it).
func TestPagesInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not on PATH")
	}
	const w, h = 1280, 1600
	badge := map[verify.Verdict]color.RGBA{
		verify.Pass: {0x1a, 0x7f, 0x37, 0xff}, verify.Fail: {0xcf, 0x22, 0x2e, 0xff},
		verify.Inconclusive: {0x9a, 0x67, 0x00, 0xff},
	}
	dir := t.TempDir()
	for name, p := range samplePages() {
		t.Run(name, func(t *testing.T) {
			page := filepath.Join(dir, filepath.Base(t.Name())+".html")
			shot := filepath.Join(dir, filepath.Base(t.Name())+".png")
			if err := WritePage(page, p); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
				"--user-data-dir="+filepath.Join(dir, "profile-"+filepath.Base(t.Name())),
				"--window-size="+strconv.Itoa(w)+","+strconv.Itoa(h), "--screenshot="+shot, "file://"+page)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("chromium: %v\n%s", err, out)
			}
			f, err := os.Open(shot)
			if err != nil {
				t.Fatalf("no screenshot: %v", err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Fatalf("screenshot %v, want %dx%d", b, w, h)
			}
			// Not blank: many pixels differ from the white background; and
			// the verdict badge is there, in its colour.
			want := badge[p.Result.Verdict]
			var ink, badgePx int
			for y := 0; y < h; y++ {
				for x := 0; x < w; x++ {
					c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
					if c.R < 0xf0 || c.G < 0xf0 || c.B < 0xf0 {
						ink++
					}
					if near(c, want) {
						badgePx++
					}
				}
			}
			if ink < w*h/100 {
				t.Errorf("screenshot nearly blank: %d non-white pixels", ink)
			}
			// The badge is about 135×57 px; its text takes part of it.
			if badgePx < 2000 {
				t.Errorf("verdict badge (%v) not seen: %d pixels of its colour", want, badgePx)
			}
			if t.Failed() {
				keep(t, shot)
			}
		})
	}
}

func near(a, b color.RGBA) bool {
	d := func(x, y uint8) bool { return x-y < 4 || y-x < 4 }
	return d(a.R, b.R) && d(a.G, b.G) && d(a.B, b.B)
}

// keep copies a failing test's screenshot to $EVENTSWARM_SHOTS (when set) to look at.
func keep(t *testing.T, shot string) {
	dst := os.Getenv("EVENTSWARM_SHOTS")
	if dst == "" {
		t.Logf("screenshot %s (set EVENTSWARM_SHOTS=DIR to keep it)", shot)
		return
	}
	b, err := os.ReadFile(shot)
	if err == nil {
		err = os.WriteFile(filepath.Join(dst, filepath.Base(shot)), b, 0o644)
	}
	if err != nil {
		t.Logf("keep screenshot: %v", err)
	}
}
