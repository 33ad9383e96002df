// Command image builds eventswarm's container image offline, as an OCI image
// layout directory: the same image as the repository's Dockerfile (static
// swarm, probe and localbus on an empty base, a CA bundle, a non-root user,
// swarm as the entrypoint), without a container daemon or a base image to
// pull. It is its own module so that eventswarm's module does not depend on
// go-containerregistry.
//
//	cd deploy/image && go run . -o ../../dist/eventswarm-oci
//
// Load the layout with any OCI tool, e.g. `skopeo copy oci:DIR:TAG
// docker://REGISTRY/eventswarm:TAG` or `podman load -i DIR`; the image is
// named by -tag (org.opencontainers.image.ref.name). The build is
// reproducible: file times and the image's creation time are fixed, so the
// same sources and Go toolchain give the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is; the Dockerfile says the same (the test checks it).
const (
	// User is the numeric non-root user and group the image runs as
	// (Kubernetes' runAsNonRoot needs a numeric user to check).
	User = "65532:65532"
	// BinDir holds the binaries.
	BinDir = "/usr/local/bin"
	// CABundle is where the CA certificates go (Go's default search path).
	CABundle = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultTag names the image in the layout.
	DefaultTag = "eventswarm/eventswarm:dev"
)

// Entrypoint is the image's entrypoint: swarm (swarm merge is its "merge" argument).
var Entrypoint = []string{BinDir + "/swarm"}

// Commands are the binaries put in the image, from the module's cmd/.
var Commands = []string{"swarm", "probe", "localbus"}

// epoch is every file's time and the image's creation time: a reproducible build.
var epoch = time.Unix(0, 0).UTC()

// Options configure a build.
type Options struct {
	// Module is the eventswarm module's root (where go.mod is).
	Module string
	// Out is the OCI layout directory to write (created; must not exist or be empty).
	Out string
	// Tag names the image (org.opencontainers.image.ref.name).
	Tag string
	// Arch is the GOARCH of the binaries and the image (default the host's).
	Arch string
	// CAFile is the CA bundle to copy in ("" for none).
	CAFile string
	// Log receives the build's progress (nil: none).
	Log io.Writer
}

func main() {
	o := Options{}
	flag.StringVar(&o.Module, "module", "../..", "eventswarm's module root")
	flag.StringVar(&o.Out, "o", "", "OCI layout directory to write (required; must not exist or be empty)")
	flag.StringVar(&o.Tag, "tag", DefaultTag, "image name in the layout")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "GOARCH of the image")
	flag.StringVar(&o.CAFile, "ca-file", CABundle, "CA bundle to copy into the image (empty: none)")
	flag.Parse()
	o.Log = os.Stderr
	if o.Out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "image: usage: go run . -o DIR [-tag NAME] [-arch GOARCH] [-module DIR]")
		os.Exit(2)
	}
	digest, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s in %s\n", o.Tag, digest, o.Out)
}

// Build compiles the binaries and writes the image as an OCI layout at
// o.Out; it returns the image's manifest digest.
func Build(o Options) (v1.Hash, error) {
	if o.Tag == "" {
		o.Tag = DefaultTag
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if ents, err := os.ReadDir(o.Out); err == nil && len(ents) > 0 {
		return v1.Hash{}, fmt.Errorf("-o %s exists and is not empty: choose a new directory", o.Out)
	}
	tmp, err := os.MkdirTemp("", "eventswarm-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(tmp)
	files := map[string][]byte{}
	for _, c := range Commands {
		bin := filepath.Join(tmp, c)
		fmt.Fprintf(o.Log, "image: go build ./cmd/%s (linux/%s, static)\n", c, o.Arch)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/"+c)
		cmd.Dir = o.Module
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			return v1.Hash{}, fmt.Errorf("go build ./cmd/%s: %v\n%s", c, err, out)
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			return v1.Hash{}, err
		}
		files[strings.TrimPrefix(BinDir, "/")+"/"+c] = b
	}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("-ca-file: %w", err)
		}
		files[strings.TrimPrefix(CABundle, "/")] = b
	}
	uid, gid, _ := strings.Cut(User, ":")
	files["etc/passwd"] = []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + uid + ":" + gid + ":nonroot:/home/nonroot:/sbin/nologin\n")
	files["etc/group"] = []byte("root:x:0:\nnonroot:x:" + gid + ":\n")

	layerTar, err := layerTar(files)
	if err != nil {
		return v1.Hash{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return v1.Hash{}, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "eventswarm deploy/image", Comment: "swarm, probe, localbus (static), CA bundle, passwd"}})
	if err != nil {
		return v1.Hash{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.Arch, "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = User
	cf.Config.Entrypoint = Entrypoint
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/tmp"
	cf.Config.Env = []string{"PATH=" + BinDir + ":/usr/bin:/bin"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "eventswarm",
		"org.opencontainers.image.description": "pub/sub load tester with a delivery verifier: swarm (entrypoint), probe, localbus",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(o.Out, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.Tag}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: o.Arch})); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// layerTar is the image's one layer: the directories, then files (binaries
// 0755, the rest 0644), owned by root, at the fixed epoch; /tmp is the one
// writable directory (1777), for --json and --html files.
func layerTar(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "home/", "home/nonroot/", "tmp/", "usr/", "usr/local/", "usr/local/bin/"}
	uid, gid := 65532, 65532
	for _, d := range dirs {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
		switch d {
		case "tmp/":
			h.Mode = 0o1777
		case "home/nonroot/":
			h.Uid, h.Gid, h.Mode = uid, gid, 0o700
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.HasPrefix("/"+n, BinDir+"/") {
			mode = 0o755
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: mode, Size: int64(len(files[n])), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
