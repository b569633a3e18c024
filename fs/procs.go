package fs

import (
	"runtime"
	"sync"
)

// procsFactor is how many Ps the daemon runs per P Go would give it: more Ps
// than CPUs.
//
// Almost every FUSE request is a synchronous round trip, and go-fuse serves
// them from goroutines that block in read(2) on /dev/fuse (and the daemon's
// handlers block in backing-store system calls). A goroutine that comes back
// from a system call needs a P; when none is idle it waits in the run queue
// until the goroutine holding one blocks, and if that one blocks in a system
// call too, until sysmon takes the P away, 20 µs to 20 ms later (sysmon
// sleeps up to 10 ms and retakes a P only after seeing the same system call
// twice). go-fuse also starts a new reader goroutine whenever no other one
// is waiting in read(2), which with too few Ps is nearly every request
// (75.8k new readers for 131k requests in an untar with one P: the spare
// reader rarely got a P before the next request came).
//
// Measured on this 2-CPU VM (docs/performance.md, issue 17), kernel-side
// time of the requests that took over 100 µs during an untar of Go's source
// tree: 1.2 s with one P (what sealfs ran with before), 0.43 s with two,
// 0.35 s with four; securefs (libfuse, plain threads) 0.02 s. bench/ab
// medians, one P (half the CPUs, with all of them while data streamed) →
// four: untar 7.04 → 6.34 s, rsync 10.25 → 9.20 s, rm -rf 1.95 → 1.83 s,
// ls -lR 0.75 → 0.63 s, tar read 3.08 → 2.96 s, 1 GiB write 1.68 → 1.59 s,
// cold read 1.15 → 1.09 s. Idle Ps cost nothing; busy, they do: the
// collector's dedicated workers are a quarter of the Ps, and the engine
// splits a large READ or WRITE over up to GOMAXPROCS goroutines, so on 2
// CPUs four of them share two cores (measured above: no loss). Only
// measured on 2 CPUs.
const procsFactor = 2

// procsTuner sets GOMAXPROCS for the daemon at mount and hands it back to Go
// (its default, and its own updates of it) at unmount.
type procsTuner struct {
	once sync.Once
}

// tuneProcs raises GOMAXPROCS to procsFactor times its current value now:
// Go's default (which follows cgroup limits), since the daemon only tunes
// when $GOMAXPROCS is unset. It runs before fuse.NewServer, so go-fuse sizes
// its pool of waiting readers from the raised value.
func tuneProcs() *procsTuner {
	runtime.GOMAXPROCS(procsFactor * runtime.GOMAXPROCS(0))
	return &procsTuner{}
}

// stop hands GOMAXPROCS back to Go. Safe on nil and more than once.
func (p *procsTuner) stop() {
	if p == nil {
		return
	}
	p.once.Do(func() { runtime.SetDefaultGOMAXPROCS() })
}
