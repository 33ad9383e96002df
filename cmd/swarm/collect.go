package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eventswarm/eventswarm/cmd/internal/cli"
	"github.com/eventswarm/eventswarm/internal/report"
)

// Bounds of the collector (swarm merge --listen): what one request may be,
// how many shards a run may have, and how many distinct files one index may
// bring (the first, and one that differs, which the merge then reports).
const (
	maxShardBody     = 32 << 20
	maxCollectShards = 10000
	maxPerIndex      = 2
)

// collector holds the shard files POSTed to swarm merge --listen until all
// --shards indexes have arrived.
type collector struct {
	shards int
	runID  string // "" accepts any run (merge then checks they agree)

	mu       sync.Mutex
	files    map[int][][]byte // per index: the distinct bodies, first first
	parsed   []report.ShardFile
	rejected []string // what was refused, for the report at the deadline
	done     chan struct{}
}

func newCollector(shards int, runID string) *collector {
	return &collector{shards: shards, runID: strings.ToLower(runID), files: map[int][][]byte{}, done: make(chan struct{})}
}

// accept takes one POSTed body. It returns the HTTP status and a one-line
// answer: 200 taken (or the same file again), 400 not a shard file of this
// run, 409 a different file for an index that already has one.
func (c *collector) accept(body []byte) (int, string) {
	var f report.ShardFile
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&f); err != nil {
		return c.reject(http.StatusBadRequest, fmt.Sprintf("not a shard file (swarm --shard-file JSON): %v", err))
	}
	if dec.More() {
		return c.reject(http.StatusBadRequest, "not a shard file: data after the JSON object")
	}
	switch {
	case f.Shards != c.shards:
		return c.reject(http.StatusBadRequest, fmt.Sprintf("shard %d is of a run of %d shards; this collector waits for %d", f.Shard, f.Shards, c.shards))
	case f.Shard < 0 || f.Shard >= c.shards:
		return c.reject(http.StatusBadRequest, fmt.Sprintf("shard index %d is outside 0..%d", f.Shard, c.shards-1))
	case c.runID != "" && strings.ToLower(f.RunID) != c.runID:
		return c.reject(http.StatusBadRequest, fmt.Sprintf("shard %d is of run %q, not %s", f.Shard, f.RunID, c.runID))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	have := c.files[f.Shard]
	for _, b := range have {
		if bytes.Equal(b, body) {
			return http.StatusOK, fmt.Sprintf("shard %d: already have this file", f.Shard)
		}
	}
	if len(have) >= maxPerIndex {
		c.rejected = append(c.rejected, fmt.Sprintf("shard %d sent yet another different file (refused)", f.Shard))
		return http.StatusConflict, fmt.Sprintf("shard %d: already have %d different files", f.Shard, len(have))
	}
	c.files[f.Shard] = append(have, body)
	c.parsed = append(c.parsed, f)
	if len(have) > 0 {
		// Kept: the merge reports the duplicate index, as with two files.
		return http.StatusConflict, fmt.Sprintf("shard %d: a different file for this index already arrived; the merge will refuse the set", f.Shard)
	}
	if len(c.files) == c.shards {
		close(c.done)
	}
	return http.StatusOK, fmt.Sprintf("shard %d: taken (%d of %d)", f.Shard, len(c.files), c.shards)
}

func (c *collector) reject(code int, msg string) (int, string) {
	c.mu.Lock()
	if len(c.rejected) < 100 {
		c.rejected = append(c.rejected, "refused a POST: "+msg)
	}
	c.mu.Unlock()
	return code, msg
}

// missing lists the indexes not arrived yet.
func (c *collector) missing() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var m []int
	for i := range c.shards {
		if _, ok := c.files[i]; !ok {
			m = append(m, i)
		}
	}
	return m
}

// ServeHTTP: POST a shard file (any path); GET says what has arrived.
func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m := c.missing()
		fmt.Fprintf(w, "have %d of %d shard files; missing %s\n", c.shards-len(m), c.shards, indexList(m))
		return
	case http.MethodPost, http.MethodPut:
	default:
		w.Header().Set("Allow", "GET, POST, PUT")
		http.Error(w, "POST a shard file (swarm --shard-file http://…)", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxShardBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			code, msg := c.reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("a body over %d bytes", maxShardBody))
			http.Error(w, msg, code)
			return
		}
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	code, msg := c.accept(body)
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// indexList is "[1 3]", or "none".
func indexList(m []int) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, len(m))
	for i, v := range m {
		parts[i] = strconv.Itoa(v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// collect serves the collector on ln until every shard's file has arrived
// (then it merges them exactly as swarm merge FILE... does), the deadline
// passes or ctx ends (then it prints which shards are missing, one line
// each, and exits 2, as a file merge with files missing does).
func collect(ctx context.Context, o *mergeOptions, ln net.Listener, stdout, stderr io.Writer) int {
	c := newCollector(o.shards, o.runID)
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	deadline := time.Now().Add(o.deadline)
	fmt.Fprintf(stderr, "swarm merge: collecting %d shard files on http://%s/ until %s\n", o.shards, ln.Addr(), deadline.UTC().Format(time.RFC3339))
	timer := time.NewTimer(o.deadline)
	defer timer.Stop()
	why := ""
	select {
	case <-c.done:
	case <-timer.C:
		why = "--deadline " + o.deadline.String() + " passed"
	case <-ctx.Done():
		why = "interrupted"
	}
	// Answer the requests under way, then stop listening.
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(shutCtx)
	cancel()
	<-served

	c.mu.Lock()
	files := slices.Clone(c.parsed)
	rejected := slices.Clone(c.rejected)
	c.mu.Unlock()
	if why != "" {
		m := c.missing()
		fmt.Fprintf(stderr, "swarm merge: %s with %d of %d shard files\n", why, o.shards-len(m), o.shards)
		for _, r := range rejected {
			fmt.Fprintf(stderr, "swarm merge: %s\n", r)
		}
		for _, i := range m {
			fmt.Fprintf(stderr, "swarm merge: missing shard %d of %d\n", i, o.shards)
		}
		return cli.ExitUsage
	}
	for _, r := range rejected {
		fmt.Fprintf(stderr, "swarm merge: %s\n", r)
	}
	return mergeFiles(o, files, nil, stdout, stderr)
}
