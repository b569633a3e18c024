package fs

import (
	"runtime"
	"testing"
)

// TestTuneProcs: raised to procsFactor times Go's default, handed back to
// the default by stop, once.
func TestTuneProcs(t *testing.T) {
	orig := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	p := tuneProcs()
	if got := runtime.GOMAXPROCS(0); got != procsFactor*def {
		t.Fatalf("GOMAXPROCS %d after tuneProcs, want %d", got, procsFactor*def)
	}
	p.stop()
	if got := runtime.GOMAXPROCS(0); got != def {
		t.Fatalf("GOMAXPROCS %d after stop, want Go's default %d", got, def)
	}
	runtime.GOMAXPROCS(def + 1)
	p.stop() // a second stop changes nothing
	if got := runtime.GOMAXPROCS(0); got != def+1 {
		t.Fatalf("a second stop set GOMAXPROCS to %d", got)
	}
	var nilP *procsTuner
	nilP.stop()
}
