package idpool

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkInvariants verifies the pool's internal bookkeeping: every ID is in
// exactly the list its state says, with the right index.
func checkInvariants(t *testing.T, p *Pool) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := 0
	for name, l := range map[string]*list{"freeWatched": &p.freeWatched, "freeIdle": &p.freeIdle, "activeWatched": &p.activeWatched, "activeUnwatched": &p.activeUnwatched} {
		for i, e := range l.ids {
			if e.idx != i {
				t.Errorf("%s[%d] = %s has idx %d", name, i, e.id, e.idx)
			}
			if p.listOf(e) != l {
				t.Errorf("%s holds %s (held=%v watchers=%d)", name, e.id, e.held, e.watchers)
			}
			seen++
		}
	}
	if seen != len(p.ids) {
		t.Errorf("lists hold %d IDs, pool knows %d", seen, len(p.ids))
	}
}

func TestSequence(t *testing.T) {
	p := New("run1.s0")
	a := p.TakeLearner()
	b := p.TakeLearner()
	if a == b {
		t.Fatalf("two learners got %q", a)
	}
	if free, active := p.Sizes(); free != 0 || active != 2 {
		t.Fatalf("Sizes() = %d, %d; want 0, 2", free, active)
	}
	// A proctor wanting 3 gets the two active IDs and one new free one.
	ids := p.TakeForProctor(3)
	if len(ids) != 3 || !contains(ids, a) || !contains(ids, b) {
		t.Fatalf("TakeForProctor(3) = %v; want %s, %s and a new one", ids, a, b)
	}
	if free, active := p.Sizes(); free != 1 || active != 2 {
		t.Fatalf("Sizes() = %d, %d; want 1, 2", free, active)
	}
	// The next learner takes the proctor's new free ID.
	c := p.TakeLearner()
	if !contains(ids, c) || c == a || c == b {
		t.Fatalf("TakeLearner() = %s; want the proctor's free ID from %v", c, ids)
	}
	// A returned ID is reused.
	p.ReturnLearner(a)
	if d := p.TakeLearner(); d != a {
		t.Fatalf("TakeLearner() after return = %s; want %s", d, a)
	}
	// A second proctor prefers unwatched active IDs.
	e := p.TakeLearner()
	ids2 := p.TakeForProctor(1)
	if len(ids2) != 1 || ids2[0] != e {
		t.Fatalf("second TakeForProctor(1) = %v; want [%s] (the only unwatched active ID)", ids2, e)
	}
	p.ReleaseProctor(ids)
	p.ReleaseProctor(ids2)
	p.ReleaseProctor([]string{"nope"})
	p.ReturnLearner("nope")
	checkInvariants(t, p)
	if got := p.TakeForProctor(0); got != nil {
		t.Fatalf("TakeForProctor(0) = %v; want nil", got)
	}
}

func TestIDsAreChannelSafe(t *testing.T) {
	for _, prefix := range []string{"", "run/1 shard#2", "ok-1.2_3", "ümlaut,comma"} {
		p := New(prefix)
		ids := append(p.TakeForProctor(3), p.TakeLearner())
		for _, id := range ids {
			for i := 0; i < len(id); i++ {
				if !Safe(id[i]) {
					t.Errorf("New(%q) made ID %q with unsafe byte %q", prefix, id, id[i])
				}
			}
		}
	}
	// Different prefixes (shards) never collide.
	a, b := New("run-s0"), New("run-s1")
	if x, y := a.TakeLearner(), b.TakeLearner(); x == y {
		t.Errorf("two shards made the same ID %q", x)
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// TestConcurrentProperty runs thousands of learners and proctors at once and
// checks that no ID is ever held by two learners at once, and that every ID a
// proctor watches is used by a real learner: held when the proctor took it, or
// taken by a learner while the proctor still watches it (learners prefer free
// IDs a proctor waits on). Proctors hold their IDs until that happened, so a
// pool that left a proctor's IDs unused would make this test fail, not hang:
// the wait is bounded.
func TestConcurrentProperty(t *testing.T) {
	learners, proctors, rounds := 2000, 200, 10
	if testing.Short() {
		learners, proctors, rounds = 500, 50, 5
	}
	p := New("prop")
	// Stock the free list with idle IDs, more than there are learners, so a
	// pool that did not prefer watched IDs would leave the proctors' unused.
	stock := make([]string, 2*learners)
	for i := range stock {
		stock[i] = p.TakeLearner()
	}
	for _, id := range stock {
		p.ReturnLearner(id)
	}
	var (
		holder     sync.Map // id -> learner index, while held
		takes      sync.Map // id -> *atomic.Int64, learner takes of id
		violations atomic.Int64
		done       atomic.Bool
		lwg, pwg   sync.WaitGroup
	)
	takeCount := func(id string) *atomic.Int64 {
		c, _ := takes.LoadOrStore(id, new(atomic.Int64))
		return c.(*atomic.Int64)
	}
	for l := 0; l < learners; l++ {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			for i := 0; !done.Load() || i < rounds; i++ {
				id := p.TakeLearner()
				if prev, loaded := holder.LoadOrStore(id, l); loaded {
					violations.Add(1)
					t.Errorf("learner %d got %s, held by learner %v", l, id, prev)
					return
				}
				takeCount(id).Add(1)
				runtime.Gosched()
				holder.Delete(id)
				p.ReturnLearner(id)
			}
		}()
	}
	for q := 0; q < proctors; q++ {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			rnd := rand.New(rand.NewPCG(uint64(q), 1))
			for range rounds {
				ids := p.TakeForProctor(1 + rnd.IntN(25))
				seen := map[string]bool{}
				type pending struct {
					c    *atomic.Int64
					base int64
				}
				var wait []pending
				for _, id := range ids {
					if seen[id] {
						t.Errorf("proctor %d got %s twice in one slice", q, id)
					}
					seen[id] = true
					if !strings.HasPrefix(id, "prop-") {
						t.Errorf("proctor %d got foreign ID %q", q, id)
					}
					c := takeCount(id)
					base := c.Load()
					if _, held := holder.Load(id); !held {
						wait = append(wait, pending{c, base})
					}
				}
				// Every ID not held now must be taken by a learner soon.
				deadline := time.Now().Add(20 * time.Second)
				for _, w := range wait {
					for w.c.Load() == w.base {
						if time.Now().After(deadline) {
							t.Errorf("proctor %d: an ID was not used by any learner within 20s", q)
							break
						}
						runtime.Gosched()
					}
				}
				p.ReleaseProctor(ids)
			}
		}()
	}
	pwg.Wait()
	done.Store(true)
	lwg.Wait()
	if violations.Load() > 0 {
		t.Fatalf("%d IDs held by two learners at once", violations.Load())
	}
	checkInvariants(t, p)
	if _, active := p.Sizes(); active != 0 {
		t.Errorf("active = %d after every learner returned its ID", active)
	}
}

// TestProctorWatchesLearnersConcurrently: while learners hold IDs, proctors
// prefer them, and a learner prefers a free ID a proctor is waiting on.
func TestProctorWatchesLearnersConcurrently(t *testing.T) {
	const n = 1000
	p := New("pair")
	held := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); held[i] = p.TakeLearner() }()
	}
	wg.Wait()
	// 100 proctors × 10 = exactly the 1000 active IDs, each watched once.
	got := make([][]string, 100)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = p.TakeForProctor(10) }()
	}
	wg.Wait()
	count := map[string]int{}
	for _, ids := range got {
		for _, id := range ids {
			count[id]++
		}
	}
	for _, id := range held {
		if count[id] != 1 {
			t.Errorf("active %s watched by %d proctors; want 1", id, count[id])
		}
	}
	if len(count) != n {
		t.Errorf("proctors watch %d IDs; want %d (no new ones needed)", len(count), n)
	}
	checkInvariants(t, p)
}

func BenchmarkPool(b *testing.B) {
	for _, lpp := range []int{1, 10} {
		b.Run(fmt.Sprintf("learners_per_proctor=%d", lpp), func(b *testing.B) {
			p := New("bench")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					if i%20 == 0 {
						p.ReleaseProctor(p.TakeForProctor(lpp))
						continue
					}
					p.ReturnLearner(p.TakeLearner())
				}
			})
		})
	}
}

// Later proctors still bring new IDs: a proctor takes at most half its IDs
// from active ones other proctors already watch, so learners that come later
// find watched free IDs (every learner is watched, see Gates.MinCoverage).
func TestProctorsBringNewIDs(t *testing.T) {
	p := New("x")
	first := p.TakeForProctor(4)
	for range 4 {
		p.TakeLearner() // the first proctor's four IDs are now active and watched
	}
	second := p.TakeForProctor(4)
	shared := 0
	for _, id := range second {
		if contains(first, id) {
			shared++
		}
	}
	if shared != 2 {
		t.Fatalf("second proctor shares %d of %v with %v; want 2 (half)", shared, second, first)
	}
	// The two new IDs are free and watched: the next learners take them.
	for range 2 {
		if id := p.TakeLearner(); !contains(second, id) || contains(first, id) {
			t.Fatalf("learner took %s; want one of the second proctor's new IDs %v", id, second)
		}
	}
	checkInvariants(t, p)
}
