package fs

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// procsGovernor runs the daemon with half the Ps Go would use (GOMAXPROCS)
// while requests are small, and with all of them while data streams.
//
// Almost every FUSE request is a synchronous round trip from a process on
// another CPU, and what a small one costs is mostly wakeups. With a P per
// CPU the Go scheduler keeps handing work between Ps: go-fuse's readers
// block in read(2) on /dev/fuse, sysmon retakes the Ps of threads blocked
// there and wakes spinning threads to run them, and go-fuse starts a reader
// goroutine whenever none is waiting; each is a futex wake of a thread on
// another CPU (an IPI, a VM exit under a hypervisor). A loop of
// create/write/chmod/close on a 2-CPU VM (perf stat on the daemon): 9.3k
// futex calls and 66k context switches per 32k requests with GOMAXPROCS=2,
// 0.9k and 42k with 1. bench/ab medians with this governor against a P per
// CPU: untar 6.71 → 5.73 s, rm -rf 1.69 → 1.39 s; tar read, rsync, ls -lR,
// restic and sequential I/O unchanged within the noise. A cold sequential
// read needs more than one CPU in the daemon (decrypting, copying into the
// reply, page cache readahead): 1 GiB 1.10 → 1.38 s with one P fixed. So a
// READ or WRITE of bulkBytes or more raises GOMAXPROCS to the default until
// no such request has come for bulkLinger. Changing GOMAXPROCS stops the
// world for microseconds; it happens at the edges of a transfer only.
//
// The price: with one P, a goroutine in a system call that blocks (a cold
// disk read) holds the P until sysmon hands it on, 20 µs to 10 ms later, so
// a second client's request can wait that long behind it. Only measured on
// 2 CPUs; on more, half of them stay with the daemon.
type procsGovernor struct {
	low, high int
	lastBulk  atomic.Int64 // unix nanoseconds of the last bulk request
	raised    atomic.Bool

	mu      sync.Mutex // serialises GOMAXPROCS changes and stopped
	stopped bool
}

const (
	// bulkBytes: kernel readahead sends READs of 128 KiB and more, a
	// streaming writer 1 MiB WRITEs; tar's 10 KiB records stay below.
	bulkBytes  = 128 << 10
	bulkLinger = 200 * time.Millisecond
)

// newProcsGovernor lowers GOMAXPROCS from high to low now (before go-fuse
// sizes its reader pool from it). It returns nil, changing nothing, when
// there is nothing to switch between.
func newProcsGovernor(low, high int) *procsGovernor {
	if low >= high {
		return nil
	}
	runtime.GOMAXPROCS(low)
	return &procsGovernor{low: low, high: high}
}

// bulk notes a READ or WRITE of n bytes.
func (g *procsGovernor) bulk(n int) {
	if g == nil || n < bulkBytes {
		return
	}
	g.lastBulk.Store(time.Now().UnixNano())
	if g.raised.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.raised.Load() || g.stopped {
		return
	}
	runtime.GOMAXPROCS(g.high)
	g.raised.Store(true)
	go g.lowerWhenQuiet()
}

func (g *procsGovernor) lowerWhenQuiet() {
	for {
		time.Sleep(bulkLinger)
		g.mu.Lock()
		quiet := time.Since(time.Unix(0, g.lastBulk.Load())) >= bulkLinger
		if g.stopped || quiet {
			if !g.stopped {
				runtime.GOMAXPROCS(g.low)
			}
			g.raised.Store(false)
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// stop gives the process its GOMAXPROCS back (at unmount).
func (g *procsGovernor) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	runtime.GOMAXPROCS(g.high)
}
