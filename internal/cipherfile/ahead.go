package cipherfile

import (
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// Read-ahead of the backing file. A sequential reader of the mount gets
// 1 MiB READs from the kernel's FUSE readahead; each one preads its cipher
// range and decrypts it. Without help the backing filesystem sees one
// synchronous 1 MiB read at a time from the daemon, so its disk time and the
// daemon's decryption and reply take turns. A large read therefore asks for
// the next aheadBytes of the cipher file with fadvise(WILLNEED), which
// starts the disk reads and returns: by the time the next READ arrives its
// blocks are on their way into the page cache.

// aheadBytes is how far past a large read the backing file is requested;
// the same as the mount's FUSE readahead window (fs.readaheadKiB).
const aheadBytes = 4 << 20

// aheadMinRead: reads at least this large look sequential (the kernel's
// readahead sends 128 KiB and more); small reads are left alone.
const aheadMinRead = 128 << 10

// readAhead is called by ReadAt for a read of n bytes at plaintext offset
// off. Concurrent READs may call it at once; the window only moves forward.
func (f *File) readAhead(off int64, n int) {
	if n < aheadMinRead {
		return
	}
	end := crypto.BlockOffset((off + int64(n)) / bs)
	for {
		have := f.ahead.Load()
		if have >= end+aheadBytes/2 {
			return // most of the next window is requested already
		}
		to := end + aheadBytes
		if !f.ahead.CompareAndSwap(have, to) {
			continue
		}
		from := max(have, end)
		// Advisory: a failure costs only the overlap.
		_ = unix.Fadvise(f.sysfd, from, to-from, unix.FADV_WILLNEED)
		return
	}
}
