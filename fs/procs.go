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
//
// The numbers are taken once, at mount, from Go's default then (which follows
// cgroup limits); an explicit GOMAXPROCS switches off Go's own updates of it
// until stop hands them back. One TuneProcs mount per process: a second
// would halve the first one's lowered value.
type procsGovernor struct {
	low, high int
	linger    time.Duration
	start     time.Time    // lastBulk counts from here (monotonic)
	lastBulk  atomic.Int64 // nanoseconds since start of the last bulk request
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

// newProcsGovernor lowers GOMAXPROCS from high to low now. Called before
// fuse.NewServer, so go-fuse sizes its pool of waiting readers from low
// (it never uses fewer than 2); raising does not grow that pool, which
// only bounds goroutines blocked in read(2). It returns nil, changing
// nothing, when there is nothing to switch between.
func newProcsGovernor(low, high int, linger time.Duration) *procsGovernor {
	if low >= high {
		return nil
	}
	runtime.GOMAXPROCS(low)
	return &procsGovernor{low: low, high: high, linger: linger, start: time.Now()}
}

// bulk notes a READ or WRITE of n bytes.
func (g *procsGovernor) bulk(n int) {
	if g == nil || n < bulkBytes {
		return
	}
	g.lastBulk.Store(int64(time.Since(g.start)))
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

// lowerWhenQuiet lowers GOMAXPROCS once no bulk request has come for linger.
// raised is cleared before lastBulk is read again: a bulk that stored its
// time after that read sees raised false and raises again (sequentially
// consistent atomics), so no raise is lost.
func (g *procsGovernor) lowerWhenQuiet() {
	wait := g.linger
	for {
		time.Sleep(wait)
		g.mu.Lock()
		g.raised.Store(false)
		if g.stopped {
			g.mu.Unlock()
			return
		}
		if idle := time.Since(g.start) - time.Duration(g.lastBulk.Load()); idle < g.linger {
			g.raised.Store(true)
			g.mu.Unlock()
			wait = g.linger - idle
			continue
		}
		runtime.GOMAXPROCS(g.low)
		g.mu.Unlock()
		return
	}
}

// stop hands GOMAXPROCS back to Go (its default, and its own updates of
// it) at unmount.
func (g *procsGovernor) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
	runtime.SetDefaultGOMAXPROCS()
}
