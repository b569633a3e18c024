package fs

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/safefile"
)

// Head prefetch. A backup or restore that reads the mount (tar, rsync or
// restic reading from it, a restore) opens file after file of a directory
// in listing order, and each open waits for one cold disk read: the cipher
// header, which the engine needs before anything else (and which, through
// the backing filesystem's readahead, brings in the whole of a small file).
// A plain directory pays the same wait once per file. sealfs can do better,
// because it knows more than the kernel: once a second file of a directory
// is opened cold, the directory is being scanned, so a goroutine asks the
// backing filesystem for the first prefetchHead bytes of every regular
// cipher file in it (fadvise WILLNEED starts the reads and returns). The
// disk then works on many files at once while the reader goes through round
// trips, and its opens find their headers in the page cache.
//
// Listing a directory (ls -l, rsync's and restic's scans) never triggers it:
// only opens of files do. One prefetch per directory node (go-fuse drops the
// node when the kernel forgets the directory, so a later scan prefetches
// again); at most prefetchMax files each, and at most prefetchWorkers
// directories at a time, skipped rather than queued beyond that. It reads
// only ciphertext, and only where the cipher directory is on a local disk
// (newPrefetcher); Unmount waits for it.

const (
	prefetchHead    = 64 << 10 // header + the first block (and then some) of each file
	prefetchMax     = 4096     // files per directory
	prefetchWorkers = 2
	// prefetchAfter: cold opens of files in one directory before it counts
	// as scanned. One open is a user opening a file; two in a row is a scan.
	prefetchAfter = 2
)

// prefetcher is the root's bookkeeping.
type prefetcher struct {
	sem     chan struct{}
	wg      sync.WaitGroup
	stopped atomic.Bool
}

// newPrefetcher returns a prefetcher for the cipher directory dir, stopped
// from the start unless dir lies on a local disk filesystem: on a network
// or FUSE filesystem (an rclone mount, a sync client's virtual files) an
// open can mean a download, and a prefetch would fetch files no one reads.
func newPrefetcher(dirfd int) *prefetcher {
	p := &prefetcher{sem: make(chan struct{}, prefetchWorkers)}
	var st unix.Statfs_t
	if unix.Fstatfs(dirfd, &st) != nil || !localFS[int64(st.Type)] {
		p.stopped.Store(true)
	}
	return p
}

// localFS: filesystem magic numbers (statfs f_type) of local disk
// filesystems, where reading ahead costs only page cache.
var localFS = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:  true, // also ext2/ext3
	unix.XFS_SUPER_MAGIC:   true,
	unix.BTRFS_SUPER_MAGIC: true,
	unix.F2FS_SUPER_MAGIC:  true,
	unix.TMPFS_MAGIC:       true,
	0x2fc12fc1:             true, // zfs
	0xca451a4e:             true, // bcachefs
}

// stop makes running prefetches end early and waits for them.
func (p *prefetcher) stop() {
	p.stopped.Store(true)
	p.wg.Wait()
}

// dirScan is a directory node's state.
type dirScan struct {
	coldOpens atomic.Int32
	started   atomic.Bool
}

// noteColdOpen is called by Open when it had to open n's engine (the file
// was not open already); it may start prefetching n's directory.
func (n *node) noteColdOpen() {
	_, parent := n.Parent()
	if parent == nil {
		return
	}
	dir := asNode(parent)
	if dir.scan.coldOpens.Add(1) != prefetchAfter || dir.scan.started.Swap(true) {
		return
	}
	p := n.r.prefetch
	if p.stopped.Load() {
		return
	}
	select {
	case p.sem <- struct{}{}:
	default:
		dir.scan.started.Store(false) // busy: the next cold open may try again
		dir.scan.coldOpens.Store(prefetchAfter - 1)
		return
	}
	d, err := dir.dirFD()
	if err != nil {
		<-p.sem
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		defer d.put()
		p.heads(d.fd)
	}()
}

// heads asks for the first prefetchHead bytes of each regular cipher file in
// the directory dirfd. Errors end it quietly: it is only a hint.
func (p *prefetcher) heads(dirfd int) {
	dfd, err := safefile.OpenDirRead(dirfd, "")
	if err != nil {
		return
	}
	defer unix.Close(dfd)
	noatime := unix.O_NOATIME
	buf := make([]byte, 32<<10)
	done := 0
	for done < prefetchMax && !p.stopped.Load() {
		nb, err := unix.Getdents(dfd, buf)
		if err != nil || nb <= 0 {
			return
		}
		forEachDirent(buf[:nb], func(_ uint64, typ uint8, name string) {
			if typ != unix.DT_REG || strings.HasPrefix(name, metaPrefix) || done >= prefetchMax || p.stopped.Load() {
				return
			}
			done++
			// Checked open: the entry may have become a FIFO, a device
			// or a symlink since getdents.
			fd, err := safefile.OpenFile(dfd, name, unix.O_RDONLY|noatime)
			if errors.Is(err, unix.EPERM) && noatime != 0 {
				// O_NOATIME needs ownership; keep atime semantics then.
				noatime = 0
				fd, err = safefile.OpenFile(dfd, name, unix.O_RDONLY)
			}
			if err != nil {
				return
			}
			_ = unix.Fadvise(fd, 0, prefetchHead, unix.FADV_WILLNEED)
			unix.Close(fd)
		})
	}
}
