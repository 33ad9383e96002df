package bustest

import (
	"testing"
	"time"
)

// HangGuard bounds every wait in this package and its users' tests. It only
// turns a hang into a failure; nothing asserts that anything is fast.
const HangGuard = 30 * time.Second

// Eventually polls cond until it holds, and fails the test if it still does
// not after HangGuard. It is not a timing assertion.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(HangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Within runs f on its own goroutine and fails the test if it has not
// returned after HangGuard (a hang guard, not a latency bound).
func Within(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(HangGuard):
		t.Fatalf("%s did not return", what)
	}
}
