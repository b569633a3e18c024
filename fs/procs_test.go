package fs

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestProcsGovernor: lowered at creation, raised by a bulk request (not by a
// small one), kept raised while bulk requests come, lowered once they stop,
// handed back to Go's default by stop.
func TestProcsGovernor(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	const linger = 300 * time.Millisecond
	if newProcsGovernor(2, 2, linger) != nil {
		t.Fatal("a governor with nothing to switch between")
	}
	g := newProcsGovernor(1, 3, linger)
	want := func(n int, when string) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != n {
			t.Fatalf("%s: GOMAXPROCS %d, want %d", when, got, n)
		}
	}
	waitLowered := func(when string) {
		t.Helper()
		for deadline := time.Now().Add(20 * linger); runtime.GOMAXPROCS(0) != 1; time.Sleep(linger / 10) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still GOMAXPROCS %d %v after the last bulk request", when, runtime.GOMAXPROCS(0), 20*linger)
			}
		}
	}
	want(1, "after creation")
	g.bulk(bulkBytes - 1)
	want(1, "after a small request")
	g.bulk(bulkBytes)
	want(3, "after a bulk request")
	// Bulk requests every linger/10 keep it raised over several lingers.
	for end := time.Now().Add(3 * linger); time.Now().Before(end); time.Sleep(linger / 10) {
		g.bulk(1 << 20)
		want(3, "while bulk requests keep coming")
	}
	waitLowered("after the bulk requests")

	// Many request goroutines at once (for -race), then quiet again.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for end := time.Now().Add(2 * linger); time.Now().Before(end); time.Sleep(time.Millisecond) {
				g.bulk(1 << 20)
			}
		}()
	}
	wg.Wait()
	want(3, "right after concurrent bulk requests")
	waitLowered("after concurrent bulk requests")

	g.bulk(1 << 20)
	want(3, "raised again")
	g.stop()
	want(def, "after stop")
	time.Sleep(2 * linger) // the lowering goroutine wakes and must leave it alone
	want(def, "after stop, once the lowering goroutine woke")
	g.bulk(1 << 20)
	want(def, "a bulk request after stop")

	var nilG *procsGovernor
	nilG.bulk(1 << 20)
	nilG.stop()
}
