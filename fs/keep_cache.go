package fs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Page cache across opens (FOPEN_KEEP_CACHE). Without the flag the kernel
// drops a file's cached pages at every open, so a file read twice is
// fetched, authenticated and decrypted twice. With it the kernel keeps them,
// which is right exactly when its pages still match the file:
//
//   - an open while the engine is open keeps them if the engine's life began
//     with the kernel's cache known good (openFile.cacheOK: the first open
//     either dropped the cache or found the stamp below intact); every change
//     since went through this mount and so through the kernel's cache;
//   - the first open after the last release keeps them if the backing file is
//     still as that release left it: same mtime, ctime and size (a stamp
//     taken once the engine had written everything, and only if its life
//     began with a good cache). Anything else — a sync client rewriting the
//     cipher file, another mount of the same folder — moves ctime, and the
//     open drops the cache as before. A SETATTR outside an open forgets the
//     stamp (it cannot tell its own change from one made underneath).
//
// The stamp lives on the node: the kernel's pages cannot outlive its inode,
// and go-fuse keeps the node as long as the kernel keeps the inode.

// stamp identifies the state of a backing file.
type stamp struct {
	mtime, ctime unix.StatxTimestamp
	size         uint64
	ok           bool
}

func stampOf(st *unix.Statx_t) stamp {
	return stamp{mtime: st.Mtime, ctime: st.Ctime, size: st.Size, ok: true}
}

// setStamp records st as the state the kernel's cache matches; nil forgets.
func (n *node) setStamp(st *unix.Statx_t) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st == nil {
		n.cacheStamp = stamp{}
		return
	}
	n.cacheStamp = stampOf(st)
}

// stampHolds reports whether the backing file behind of is still in the
// state n's stamp recorded.
func (n *node) stampHolds(of *openFile) bool {
	n.mu.Lock()
	want := n.cacheStamp
	n.mu.Unlock()
	if !want.ok {
		return false
	}
	var st unix.Statx_t
	return of.withFd(func(fd int) error { return fstatx(fd, &st) }) == nil && stampOf(&st) == want
}

// keepCache decides the FOPEN_KEEP_CACHE bit for a new handle of n. wasOpen:
// the engine was open before this open.
func (n *node) keepCache(of *openFile, wasOpen bool) uint32 {
	if (wasOpen && of.cacheOK.Load()) || (!wasOpen && n.stampHolds(of)) {
		of.cacheOK.Store(true)
		return fuse.FOPEN_KEEP_CACHE
	}
	// Without the flag the kernel drops what it cached: good from here on.
	of.cacheOK.Store(true)
	return 0
}
