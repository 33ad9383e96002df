package verify

import "sort"

// span is the closed interval [lo, hi].
type span struct{ lo, hi uint64 }

// intervals is a sorted set of disjoint, non-adjacent closed intervals of
// uint64, capped: when it would hold more than max intervals, the oldest
// (lowest) one is forgotten. Seqs are finalized in increasing order, so add
// is almost always an append or an extension of the last interval.
type intervals struct {
	s         []span
	forgotten uint64 // values dropped by the cap
}

func (v *intervals) len() int { return len(v.s) }

// search returns the index of the first interval with hi >= x.
func (v *intervals) search(x uint64) int {
	return sort.Search(len(v.s), func(i int) bool { return v.s[i].hi >= x })
}

func (v *intervals) contains(x uint64) bool {
	if len(v.s) == 0 || x < v.s[0].lo || x > v.s[len(v.s)-1].hi {
		return false
	}
	i := v.search(x)
	return i < len(v.s) && v.s[i].lo <= x
}

// add inserts x, keeping at most max intervals.
func (v *intervals) add(x uint64, max int) {
	n := len(v.s)
	switch {
	case n == 0 || x > v.s[n-1].hi+1 && v.s[n-1].hi != ^uint64(0):
		v.s = append(v.s, span{x, x})
	case x == v.s[n-1].hi+1:
		v.s[n-1].hi = x
	default:
		i := v.search(x)
		if i < n && v.s[i].lo <= x {
			return // present
		}
		// x lies before v.s[i] (or at the end, handled above).
		joinPrev := i > 0 && v.s[i-1].hi+1 == x
		joinNext := i < n && v.s[i].lo == x+1
		switch {
		case joinPrev && joinNext:
			v.s[i-1].hi = v.s[i].hi
			v.s = append(v.s[:i], v.s[i+1:]...)
		case joinPrev:
			v.s[i-1].hi = x
		case joinNext:
			v.s[i].lo = x
		default:
			v.s = append(v.s, span{})
			copy(v.s[i+1:], v.s[i:])
			v.s[i] = span{x, x}
		}
	}
	v.trim(max)
}

// remove deletes x and reports whether it was present.
func (v *intervals) remove(x uint64, max int) bool {
	if !v.contains(x) {
		return false
	}
	i := v.search(x)
	sp := v.s[i]
	switch {
	case sp.lo == sp.hi:
		v.s = append(v.s[:i], v.s[i+1:]...)
	case x == sp.lo:
		v.s[i].lo++
	case x == sp.hi:
		v.s[i].hi--
	default:
		v.s = append(v.s, span{})
		copy(v.s[i+1:], v.s[i:])
		v.s[i] = span{sp.lo, x - 1}
		v.s[i+1] = span{x + 1, sp.hi}
		v.trim(max)
	}
	if len(v.s) == 0 {
		v.s = nil
	}
	return true
}

func (v *intervals) trim(max int) {
	if max <= 0 {
		max = 1
	}
	if over := len(v.s) - max; over > 0 {
		for _, sp := range v.s[:over] {
			v.forgotten += sp.hi - sp.lo + 1
		}
		v.s = append(v.s[:0], v.s[over:]...)
	}
}

func (v *intervals) footprint() int { return cap(v.s) * 16 }
