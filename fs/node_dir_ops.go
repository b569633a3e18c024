package fs

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// Mkdir creates the cipher directory and its dirid file. The directory is
// made with owner rwx so a non-root daemon can write the dirid file, then
// given the requested mode if that differs.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	e, err := n.child(name)
	if err != nil {
		return nil, toErrno(err)
	}
	pid, err := n.getDirID()
	if err != nil {
		return nil, toErrno(err)
	}
	sideMade, err := n.r.writeSideFile(e)
	if err != nil {
		return nil, toErrno(err)
	}
	perm := mode & 07777
	made := (perm | 0o700) &^ n.r.umask
	if err := unix.Mkdir(e.path(), made); err != nil {
		n.r.removeSideFile(e, sideMade)
		return nil, toErrno(err)
	}
	id, err := n.r.writeDirID(e.path(), n.r.keys.DeriveDirID(pid, name))
	if err == nil {
		err = n.r.chownToCaller(ctx, -1, e.path())
	}
	if err == nil && made != perm {
		err = unix.Chmod(e.path(), perm)
	}
	var st unix.Statx_t
	if err == nil {
		err = statx(e.path(), &st)
	}
	if err != nil {
		os.Remove(e.path() + "/" + crypto.DirIDFile)
		unix.Rmdir(e.path())
		n.r.removeSideFile(e, sideMade)
		return nil, toErrno(err)
	}
	ch := n.newChild(ctx, name, e.stored, &st, out)
	asNode(ch).setDirID(id)
	return ch, 0
}

// writeDirID creates the dirid file exclusively. If it already exists with
// a valid ID — a cloud-sync merge of the same directory made on another
// device derives the same ID — that ID is accepted.
func (r *root) writeDirID(dir string, id crypto.DirID) (crypto.DirID, error) {
	p := dir + "/" + crypto.DirIDFile
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if errors.Is(err, os.ErrExist) {
		b, rerr := safefile.ReadFile(p, maxMetaFile)
		if rerr != nil {
			return id, rerr
		}
		have, perr := crypto.ParseDirID(b)
		if perr != nil {
			return id, perr
		}
		if have != id {
			r.log.Warn("directory already has a different ID; keeping it", "cipher_path", p)
		}
		return have, nil
	}
	if err != nil {
		return id, err
	}
	_, err = f.Write(crypto.MarshalDirID(id))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return id, err
}

// Rmdir removes the dirid file first (rmdir(2) needs an empty directory)
// and puts it back if the rmdir fails, e.g. ENOTEMPTY.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	e, err := n.child(name)
	if err != nil {
		return toErrno(err)
	}
	restore, err := n.r.takeDirID(e.path())
	if err != nil {
		return toErrno(err)
	}
	if err := unix.Rmdir(e.path()); err != nil {
		restore()
		if errors.Is(err, syscall.ENOTEMPTY) {
			n.r.logLeftoverMeta(e.path())
		}
		return toErrno(err)
	}
	n.r.removeSideFile(e, true)
	return 0
}

// takeDirID removes dir's dirid file if dir is a directory and returns a
// function that restores it. A missing file is not an error.
func (r *root) takeDirID(dir string) (restore func(), err error) {
	p := dir + "/" + crypto.DirIDFile
	b, err := safefile.ReadFile(p, maxMetaFile)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	// rmdir(2) needs write permission on the parent only, but removing the
	// dirid file needs it on the directory itself: an empty 0555 directory
	// is made owner-writable for the removal (and until restore, so that
	// the file can be put back), as openBacking does for 0444 files.
	// Only for a directory holding nothing but sealfs metadata (otherwise
	// its ID file would be gone while it still has entries, and rmdir(2)
	// refuses anyway), and not where the chmod back could not restore a
	// set-group-ID bit (a non-root daemon outside the directory's group).
	unlock := func() {}
	err = os.Remove(p)
	if errors.Is(err, os.ErrPermission) {
		var st unix.Stat_t
		if !onlyMeta(dir) {
			return nil, syscall.ENOTEMPTY
		}
		if unix.Lstat(dir, &st) == nil && (r.asRoot || st.Mode&unix.S_ISGID == 0) &&
			unix.Chmod(dir, (st.Mode&07777)|0o700) == nil {
			mode := st.Mode & 07777
			unlock = func() {
				if err := unix.Chmod(dir, mode); err != nil {
					r.log.Warn("restoring a directory's mode", "cipher_path", dir, "err", err)
				}
			}
			err = os.Remove(p)
		}
	}
	if err != nil {
		unlock()
		return nil, err
	}
	return func() {
		if err := os.WriteFile(p, b, 0o444); err != nil {
			r.log.Error("restoring directory ID file", "cipher_path", p, "err", err)
		}
		unlock()
	}, nil
}

// onlyMeta reports whether dir lists nothing but sealfs metadata.
func onlyMeta(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), metaPrefix) {
			return false
		}
	}
	return true
}

// logLeftoverMeta explains an ENOTEMPTY on a directory that lists empty:
// only sealfs metadata (orphaned side files, temp files) is left. It is not
// deleted automatically because a side file may belong to an entry a cloud
// sync has not delivered yet; fsck decides.
func (r *root) logLeftoverMeta(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if len(e.Name()) < len(metaPrefix) || e.Name()[:len(metaPrefix)] != metaPrefix {
			return // a real entry: a plain ENOTEMPTY
		}
		names = append(names, e.Name())
	}
	r.log.Warn("directory lists empty but holds sealfs metadata; run fsck", "cipher_path", dir, "entries", names)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	e, err := n.child(name)
	if err != nil {
		return toErrno(err)
	}
	if err := unix.Unlink(e.path()); err != nil {
		return toErrno(err)
	}
	n.r.removeSideFile(e, true)
	return 0
}

// Rename maps the kernel's rename(2) flags straight onto renameat2(2).
// Entries keep their content and dirid file (a directory ID survives
// renames, so children are not touched). Side files follow names, not
// entries: the target's is written before, the source's removed after.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	np := asNode(newParent.EmbeddedInode())
	src, err := n.child(name)
	if err != nil {
		return toErrno(err)
	}
	dst, err := np.child(newName)
	if err != nil {
		return toErrno(err)
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		// Both names stay, so both side files stay valid.
		return toErrno(unix.Renameat2(unix.AT_FDCWD, src.path(), unix.AT_FDCWD, dst.path(), unix.RENAME_EXCHANGE))
	}
	if src.path() == dst.path() {
		var st unix.Statx_t
		return toErrno(statx(src.path(), &st))
	}
	sideMade, err := n.r.writeSideFile(dst)
	if err != nil {
		return toErrno(err)
	}
	restore := func() {}
	if flags&unix.RENAME_NOREPLACE == 0 {
		// Replacing an (empty) directory: its dirid file would make it
		// non-empty to rename(2).
		var st unix.Statx_t
		if statx(dst.path(), &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			if restore, err = n.r.takeDirID(dst.path()); err != nil {
				n.r.removeSideFile(dst, sideMade)
				return toErrno(err)
			}
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, src.path(), unix.AT_FDCWD, dst.path(), uint(flags)); err != nil {
		restore()
		n.r.removeSideFile(dst, sideMade)
		return toErrno(err)
	}
	n.r.renamed(n.GetChild(name), dst.path())
	if src.long {
		// rename(2) between two links of one inode succeeds and changes
		// nothing; the source name then still needs its side file.
		var st unix.Statx_t
		if errors.Is(statx(src.path(), &st), syscall.ENOENT) {
			n.r.removeSideFile(src, true)
		}
	}
	return 0
}

// renamed points an open engine's log lines at the file's new cipher path.
// (Files open below a renamed directory keep logging the old path.)
func (r *root) renamed(in *gofs.Inode, newPath string) {
	if in == nil || in.StableAttr().Mode != syscall.S_IFREG {
		return
	}
	if of := asNode(in).existingOpen(); of != nil {
		of.rw.RLock()
		of.cf.SetPath(newPath)
		of.rw.RUnlock()
		of.n.release(of)
	}
}

// Symlink stores the target encrypted (randomized AES-GCM): link targets
// leak neither names nor structure.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	if len(target) > crypto.MaxSymlinkTarget {
		return nil, syscall.ENAMETOOLONG
	}
	enc, err := n.r.keys.EncryptSymlink(target)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.makeEntry(ctx, name, out, func(p string) error { return unix.Symlink(enc, p) },
		func(p string) error { return n.r.chownToCaller(ctx, -1, p) })
}

// Mknod supports fifos and sockets, which hold no data. Device nodes in a
// cloud-synced backup folder would be meaningless and are refused.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return nil, syscall.EPERM
	}
	return n.makeEntry(ctx, name, out, func(p string) error { return unix.Mknod(p, mode, 0) },
		func(p string) error { return n.r.fixNewOwnerMode(ctx, -1, p, mode) })
}

// Link adds a name for target. The new entry has target's backing inode,
// so go-fuse returns the existing node: one inode, shared open state.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	tpath, err := asNode(target.EmbeddedInode()).cipherPath()
	if err != nil {
		return nil, toErrno(err)
	}
	return n.makeEntry(ctx, name, out, func(p string) error { return unix.Link(tpath, p) }, nil)
}

// makeEntry creates a non-regular entry with mk (side file first for long
// names), runs fix on it (owner, mode), and registers the node.
func (n *node) makeEntry(ctx context.Context, name string, out *fuse.EntryOut, mk, fix func(string) error) (*gofs.Inode, syscall.Errno) {
	e, err := n.child(name)
	if err != nil {
		return nil, toErrno(err)
	}
	sideMade, err := n.r.writeSideFile(e)
	if err != nil {
		return nil, toErrno(err)
	}
	if err := mk(e.path()); err != nil {
		n.r.removeSideFile(e, sideMade)
		return nil, toErrno(err)
	}
	if fix != nil {
		err = fix(e.path())
	}
	var st unix.Statx_t
	if err == nil {
		err = statx(e.path(), &st)
	}
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, name, e.stored, &st, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	n.r.touch()
	p, err := n.cipherPath()
	if err != nil {
		return nil, toErrno(err)
	}
	enc, err := os.Readlink(p)
	if err != nil {
		return nil, toErrno(err)
	}
	target, err := n.r.keys.DecryptSymlink(enc)
	if err != nil {
		n.r.log.Error("symlink target failed authentication", "cipher_path", p, "err", err)
		return nil, syscall.EIO
	}
	return []byte(target), 0
}
