package main

import (
	"archive/tar"
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestImage builds the image as an OCI layout, loads it back, checks its
// config (non-root user, entrypoint) and its files, and runs every binary
// taken out of the layer with --version.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	out := filepath.Join(t.TempDir(), "oci")
	digest, err := Build(Options{Module: "../..", Out: out, CAFile: caFileIfAny()})
	if err != nil {
		t.Fatal(err)
	}

	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatalf("the layout does not load: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.Digest != digest {
		t.Errorf("index names %s, Build returned %s", desc.Digest, digest)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != DefaultTag {
		t.Errorf("ref.name %q, want %q", got, DefaultTag)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want OCI", desc.MediaType)
	}
	img, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if cf.Config.User != User || strings.HasPrefix(cf.Config.User, "0") || cf.Config.User == "" {
		t.Errorf("user %q, want non-root %q", cf.Config.User, User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/swarm"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/usr/local/bin/swarm] and no cmd", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1: no base image", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}

	// The files, from the image's flattened filesystem.
	root := t.TempDir()
	entries := extract(t, mutate.Extract(img), root)
	for _, want := range []string{"usr/local/bin/swarm", "usr/local/bin/probe", "usr/local/bin/localbus", "etc/passwd", "tmp"} {
		if _, ok := entries[want]; !ok {
			t.Errorf("image has no %s", want)
		}
	}
	if h := entries["tmp"]; h != nil && h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode)
	}
	for name, h := range entries {
		if h.Typeflag == tar.TypeReg && (h.Uid != 0 || h.Mode&0o022 != 0) {
			t.Errorf("%s: owner %d mode %o: files must be root's and not writable by the user", name, h.Uid, h.Mode)
		}
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
			t.Errorf("%s: unexpected link", name)
		}
	}
	for _, shell := range []string{"bin/sh", "bin/bash", "usr/bin/sh"} {
		if _, ok := entries[shell]; ok {
			t.Errorf("image has a shell %s: the manifests must not need one", shell)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532: %q", passwd)
	}

	// Every binary is static and runs --version (the entrypoint first).
	for _, c := range Commands {
		bin := filepath.Join(root, "usr/local/bin", c)
		checkStatic(t, bin)
		args := []string{"--version"}
		cmd := exec.Command(bin, args...)
		cmd.Dir = root
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s --version: %v: %s", c, err, got)
			continue
		}
		if !strings.HasPrefix(string(got), c+" ") {
			t.Errorf("%s --version printed %q", c, got)
		}
	}
	// "swarm merge" runs from the entrypoint too (the merge Job's args).
	if got, err := exec.Command(filepath.Join(root, Entrypoint[0][1:]), "merge", "--version").CombinedOutput(); err != nil || !strings.HasPrefix(string(got), "swarm merge ") {
		t.Errorf("swarm merge --version: %v: %q", err, got)
	}

	// Reproducible: the same sources give the same digest.
	again, err := Build(Options{Module: "../..", Out: filepath.Join(t.TempDir(), "oci"), CAFile: caFileIfAny()})
	if err != nil {
		t.Fatal(err)
	}
	if again != digest {
		t.Errorf("second build %s, first %s: the build is not reproducible", again, digest)
	}
}

func caFileIfAny() string {
	if _, err := os.Stat(CABundle); err == nil {
		return CABundle
	}
	return ""
}

// extract writes the regular files of a tar stream under root and returns
// every entry's header by name.
func extract(t *testing.T, rc io.ReadCloser, root string) map[string]*tar.Header {
	t.Helper()
	defer rc.Close()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if strings.Contains(name, "..") {
			t.Fatalf("entry %q escapes the root", h.Name)
		}
		entries[name] = h
		if h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, io.LimitReader(tr, 256<<20)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// checkStatic: no dynamic loader, no shared libraries (CGO_ENABLED=0).
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Errorf("%s: not an ELF binary: %v", path, err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs %v: not static", path, libs)
	}
}

// TestDockerfileAgrees: the Dockerfile builds the same image: the same
// binaries, user, entrypoint and empty base.
func TestDockerfileAgrees(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var from []string
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	text := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		text += line + "\n"
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			from = append(from, rest)
		case "USER", "ENTRYPOINT", "WORKDIR", "CMD":
			got[strings.ToUpper(instr)] = rest
		}
	}
	if len(from) == 0 || from[len(from)-1] != "scratch" {
		t.Errorf("final stage FROM %v, want scratch (the OCI build has no base either)", from)
	}
	if got["USER"] != User {
		t.Errorf("Dockerfile USER %q, want %q", got["USER"], User)
	}
	ep, _ := json.Marshal(Entrypoint)
	if strings.ReplaceAll(got["ENTRYPOINT"], " ", "") != string(ep) {
		t.Errorf("Dockerfile ENTRYPOINT %s, want %s", got["ENTRYPOINT"], ep)
	}
	if got["CMD"] != "" {
		t.Errorf("Dockerfile CMD %q: the image has none", got["CMD"])
	}
	if got["WORKDIR"] != "/tmp" {
		t.Errorf("Dockerfile WORKDIR %q, want /tmp", got["WORKDIR"])
	}
	if !strings.Contains(text, "CGO_ENABLED=0") || !strings.Contains(text, "-trimpath") {
		t.Errorf("Dockerfile must build static (CGO_ENABLED=0) with -trimpath as deploy/image does")
	}
	for _, c := range Commands {
		if !strings.Contains(text, "./cmd/"+c) {
			t.Errorf("Dockerfile does not build ./cmd/%s", c)
		}
	}
}
