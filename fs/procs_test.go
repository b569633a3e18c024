package fs

import (
	"runtime"
	"testing"
	"time"
)

// TestProcsGovernor: lowered at creation, raised by a bulk request (not by a
// small one), lowered again once bulk requests stop, restored by stop.
func TestProcsGovernor(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(def) })
	if newProcsGovernor(2, 2) != nil {
		t.Fatal("a governor with nothing to switch between")
	}
	g := newProcsGovernor(1, 3)
	want := func(n int, when string) {
		t.Helper()
		if got := runtime.GOMAXPROCS(0); got != n {
			t.Fatalf("%s: GOMAXPROCS %d, want %d", when, got, n)
		}
	}
	want(1, "after creation")
	g.bulk(bulkBytes - 1)
	want(1, "after a small request")
	g.bulk(bulkBytes)
	want(3, "after a bulk request")
	// Bulk requests keep it raised past one linger period.
	for end := time.Now().Add(2 * bulkLinger); time.Now().Before(end); time.Sleep(bulkLinger / 4) {
		g.bulk(1 << 20)
		want(3, "while bulk requests keep coming")
	}
	deadline := time.Now().Add(10 * bulkLinger)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("still GOMAXPROCS %d %v after the last bulk request", runtime.GOMAXPROCS(0), 10*bulkLinger)
		}
		time.Sleep(bulkLinger / 4)
	}
	g.bulk(1 << 20)
	want(3, "raised again")
	g.stop()
	want(3, "after stop")
	time.Sleep(2 * bulkLinger)
	want(3, "after stop, once the lowering goroutine woke")
	g.bulk(1 << 20)
	want(3, "a bulk request after stop")

	var nilG *procsGovernor
	nilG.bulk(1 << 20)
	nilG.stop()
}
