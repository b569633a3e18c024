package crypto

import (
	"crypto/subtle"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// lockedBuf holds key material outside the Go heap: the GC never copies it, it
// is excluded from core dumps and, where RLIMIT_MEMLOCK allows, it cannot be
// swapped out. Wipe zeroes it and hands the pages back.
type lockedBuf struct {
	mu      sync.Mutex
	region  []byte // whole mapping
	b       []byte // the usable prefix
	mapped  bool   // false for the heap fallback
	locked  bool
	lockErr error // why mlock failed, when it did
}

func newLockedBuf(n int) *lockedBuf {
	size := (n + os.Getpagesize() - 1) / os.Getpagesize() * os.Getpagesize()
	if size == 0 {
		size = os.Getpagesize()
	}
	region, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		// Out of address space or mmap forbidden: fall back to the heap rather
		// than refuse to work; Wipe still zeroes it.
		region = make([]byte, size)
		return &lockedBuf{region: region, b: region[:n], lockErr: fmt.Errorf("mmap: %w", err)}
	}
	lb := &lockedBuf{region: region, b: region[:n], mapped: true}
	if err := unix.Mlock(region); err != nil {
		lb.lockErr = fmt.Errorf("mlock: %w", err)
	} else {
		lb.locked = true
	}
	_ = unix.Madvise(region, unix.MADV_DONTDUMP)
	return lb
}

// Locked reports whether the pages are mlock'ed.
func (l *lockedBuf) Locked() bool { return l.locked }

func (l *lockedBuf) wipe() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.region == nil {
		return
	}
	clear(l.region)
	if l.locked {
		_ = unix.Munlock(l.region)
	}
	if l.mapped {
		_ = unix.Munmap(l.region)
	}
	l.region, l.b = nil, nil
}

// Wipe overwrites b with zeros. It exists so callers outside this package
// have one obvious way to clear transient secrets (passwords, unsealed keys).
func Wipe(b []byte) {
	clear(b)
}

// equal is a constant-time comparison for MACs and check values.
func equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
