package fs

import (
	"bytes"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/safefile"
)

// metaPrefix starts every sealfs metadata entry in a cipher directory (vault
// header, dirid files, long-name entries and side files, temp files).
// base64url has no '.', so no regular cipher name can start with it.
const metaPrefix = "sealfs."

// writeSideFile stores a long name's full cipher name before its entry is
// created, so an entry never exists without a way back to its name. Side
// files are content-addressed (the entry is a hash of their content): one
// that already exists with the right content is reused. made reports
// whether this call created it (and so must remove it if the operation
// fails).
// maxMetaFile bounds reads of dirid and long-name side files: a valid one is
// 18 bytes or at most 4096 (crypto.ParseLongNameFile's limit).
const maxMetaFile = 4096

func (r *root) writeSideFile(e entryName) (made bool, err error) {
	if !e.long {
		return false, nil
	}
	fd, err := unix.Openat(e.fd(), e.side(), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err == unix.EEXIST {
		if b, rerr := safefile.ReadFileAt(e.fd(), e.side(), maxMetaFile); rerr == nil && bytes.Equal(b, []byte(e.enc)) {
			return false, nil
		}
		// Replace, never write through: what is there may be a FIFO or a
		// symlink planted in the synced folder.
		r.log.Warn("replacing a long-name side file with wrong content", "cipher_path", e.in.logPath(e.side()))
		if err := unix.Unlinkat(e.fd(), e.side(), 0); err != nil {
			return false, err
		}
		_, err := r.writeSideFile(e)
		return false, err
	}
	if err != nil {
		return false, err
	}
	_, err = unix.Write(fd, []byte(e.enc))
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(e.fd(), e.side(), 0)
		return false, err
	}
	return true, nil
}

// removeSideFile removes a long name's side file after its entry is gone
// (or when the creation it was written for failed, if made).
func (r *root) removeSideFile(e entryName, made bool) {
	if !e.long || !made {
		return
	}
	if err := unix.Unlinkat(e.fd(), e.side(), 0); err != nil && err != unix.ENOENT {
		r.log.Warn("removing long-name side file", "cipher_path", e.in.logPath(e.side()), "err", err)
	}
}
