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
	"github.com/sealfs/sealfs/internal/syncnames"
)

// Mkdir creates the cipher directory and its dirid file. The directory is
// made with owner rwx so a non-root daemon can write the dirid file, then
// given the requested mode if that differs. The dirid file is made durable
// before the directory is first renamed (durable.go).
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	if err := n.writableDir(); err != nil {
		return nil, toErrno(err)
	}
	e, err := n.child(name)
	if err != nil {
		return nil, toErrno(err)
	}
	defer e.done()
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
	if err := unix.Mkdirat(e.fd(), e.stored, made); err != nil {
		n.r.removeSideFile(e, sideMade)
		return nil, toErrno(err)
	}
	var st unix.Statx_t
	var id crypto.DirID
	dfd, err := safefile.OpenDir(e.fd(), e.stored)
	if err == nil {
		id, err = n.r.writeDirID(dfd, e, n.r.keys.DeriveDirID(pid, name))
		if err == nil {
			err = n.r.chownToCaller(ctx, obj{fd: dfd})
		}
		if err == nil && made != perm {
			err = safefile.Chmod(dfd, "", perm)
		}
		if err == nil {
			err = statxAt(dfd, "", &st)
		}
		if err != nil {
			unix.Unlinkat(dfd, crypto.DirIDFile, 0)
			unix.Close(dfd)
		}
	}
	if err != nil {
		unix.Unlinkat(e.fd(), e.stored, unix.AT_REMOVEDIR)
		n.r.removeSideFile(e, sideMade)
		return nil, toErrno(n.r.typeError(err, e.path()))
	}
	ch := n.newChild(ctx, name, e.stored, &st, out)
	asNode(ch).setDirID(id)
	n.r.pendingIDs.add(asNode(ch).key())
	// Its first create needs this descriptor: keep it rather than reopen.
	n.r.dirs.add(asNode(ch), dfd).put()
	return ch, 0
}

// writeDirID creates the dirid file in the new directory dfd (entry e of
// its parent) exclusively; Mkdir marks it pending durability (durable.go). If
// it already exists with a valid ID — a cloud-sync merge of the same
// directory made on another device derives the same ID — that ID is
// accepted.
func (r *root) writeDirID(dfd int, e entryName, id crypto.DirID) (crypto.DirID, error) {
	fd, err := unix.Openat(dfd, crypto.DirIDFile, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
	if err == unix.EEXIST {
		b, rerr := safefile.ReadFileAt(dfd, crypto.DirIDFile, maxMetaFile)
		if rerr != nil {
			return id, rerr
		}
		have, perr := crypto.ParseDirID(b)
		if perr != nil {
			return id, perr
		}
		if have != id {
			r.log.Warn("directory already has a different ID; keeping it", "cipher_path", e.in.logPath(e.stored+"/"+crypto.DirIDFile))
		}
		return have, nil
	}
	if err != nil {
		return id, err
	}
	_, err = unix.Write(fd, crypto.MarshalDirID(id))
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return id, err
}

// syncDir fsyncs the directory behind the O_PATH descriptor dfd.
func syncDir(dfd int) error {
	fd, err := safefile.OpenDirRead(dfd, "")
	if err != nil {
		return err
	}
	err = unix.Fsync(fd)
	unix.Close(fd)
	return err
}

// Rmdir removes the dirid file first (rmdir(2) needs an empty directory)
// and puts it back if the rmdir fails, e.g. ENOTEMPTY.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	e, err := n.existing(name)
	if err != nil {
		return toErrno(err)
	}
	defer e.done()
	t, err := n.r.takeDirID(e)
	if err != nil {
		return toErrno(n.r.typeError(err, e.path()))
	}
	defer t.close()
	if err := unix.Unlinkat(e.fd(), e.stored, unix.AT_REMOVEDIR); err != nil {
		t.restore()
		if errors.Is(err, syscall.ENOTEMPTY) {
			n.r.logLeftoverMeta(t.fd, e)
		}
		return toErrno(err)
	}
	if ch := n.GetChild(name); ch != nil {
		n.r.dirs.drop(asNode(ch))
	}
	n.forgetName(name, e)
	return 0
}

// takenID is a directory's dirid file, removed so the directory can be
// removed or replaced, and what is needed to put it back.
type takenID struct {
	r     *root
	e     entryName
	fd    int    // O_PATH descriptor of the directory, -1 if nothing was taken
	b     []byte // the file's content
	mode  uint32 // the directory's mode, if it had to be made writable
	chmod bool
}

// takeDirID removes the dirid file of the directory at e, if e is a
// directory. A missing file is not an error. Callers close the result.
func (r *root) takeDirID(e entryName) (*takenID, error) {
	t := &takenID{r: r, e: e, fd: -1}
	fd, err := safefile.OpenDir(e.fd(), e.stored)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, safefile.ErrNotDir) {
		var te *safefile.TypeError
		if errors.As(err, &te) && te.Found == unix.S_IFLNK {
			return nil, err // rmdir would say ENOTDIR; say what it is
		}
		return t, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := safefile.ReadFileAt(fd, crypto.DirIDFile, maxMetaFile)
	if errors.Is(err, os.ErrNotExist) {
		unix.Close(fd)
		return t, nil
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	t.fd, t.b = fd, b
	// A directory with entries keeps its ID file: rmdir(2) would refuse
	// anyway, and removing and writing back the file would leave a window
	// where a crash loses it, and make the sync service carry both changes.
	if !onlyMeta(fd) {
		n := names(fd)
		t.fd = -1
		unix.Close(fd)
		if len(n) > 0 && allHousekeeping(n) {
			r.logOnce(e.path(), "directory holds only a sync service's files, which keep it from being removed", "entries", n)
		}
		return nil, syscall.ENOTEMPTY
	}
	// rmdir(2) needs write permission on the parent only, but removing the
	// dirid file needs it on the directory itself: an empty 0555 directory
	// is made owner-writable for the removal (and until restore, so that
	// the file can be put back), as openBacking does for 0444 files. Not
	// where the chmod back could not restore a set-group-ID bit (a non-root
	// daemon outside the directory's group).
	err = unix.Unlinkat(fd, crypto.DirIDFile, 0)
	if err == unix.EACCES || err == unix.EPERM {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && (r.asRoot || st.Mode&unix.S_ISGID == 0) &&
			safefile.Chmod(fd, "", (st.Mode&07777)|0o700) == nil {
			t.mode, t.chmod = st.Mode&07777, true
			err = unix.Unlinkat(fd, crypto.DirIDFile, 0)
		}
	}
	if err != nil {
		t.unlock()
		t.close()
		return nil, err
	}
	return t, nil
}

// restore puts the dirid file back (the removal or replacement failed).
func (t *takenID) restore() {
	if t.fd < 0 {
		return
	}
	fd, err := unix.Openat(t.fd, crypto.DirIDFile, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
	if err == nil {
		_, err = unix.Write(fd, t.b)
		if err == nil {
			err = unix.Fsync(fd)
		}
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncDir(t.fd)
		}
	}
	if err != nil {
		t.r.log.Error("restoring directory ID file", "cipher_path", t.e.in.logPath(t.e.stored+"/"+crypto.DirIDFile), "err", err)
	}
	t.unlock()
}

// unlock gives the directory its mode back if takeDirID changed it.
func (t *takenID) unlock() {
	if !t.chmod {
		return
	}
	if err := safefile.Chmod(t.fd, "", t.mode); err != nil {
		t.r.log.Warn("restoring a directory's mode", "cipher_path", t.e.path(), "err", err)
	}
	t.chmod = false
}

func (t *takenID) close() {
	if t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

// listNames returns the entry names of the directory behind the O_PATH
// descriptor dfd (without . and ..).
func listNames(dfd int) ([]string, error) {
	fd, err := safefile.OpenDirRead(dfd, "")
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 8<<10)
	for {
		nb, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if nb <= 0 {
			return names, nil
		}
		forEachDirent(buf[:nb], func(_ uint64, _ uint8, name string) {
			if name != "." && name != ".." {
				names = append(names, name)
			}
		})
	}
}

// names lists dfd's entries that are not sealfs metadata ("" on error).
func names(dfd int) []string {
	all, _ := listNames(dfd)
	var out []string
	for _, name := range all {
		if !strings.HasPrefix(name, metaPrefix) {
			out = append(out, name)
		}
	}
	return out
}

// allHousekeeping reports whether every name is a sync service's own file.
func allHousekeeping(names []string) bool {
	for _, name := range names {
		if !syncnames.Housekeeping(name) {
			return false
		}
	}
	return true
}

// onlyMeta reports whether the directory dfd lists nothing but sealfs
// metadata.
func onlyMeta(dfd int) bool {
	names, err := listNames(dfd)
	if err != nil {
		return false
	}
	for _, name := range names {
		if !strings.HasPrefix(name, metaPrefix) {
			return false
		}
	}
	return true
}

// logLeftoverMeta explains an ENOTEMPTY on a directory that lists empty:
// only sealfs metadata (orphaned side files, temp files) is left. It is not
// deleted automatically because a side file may belong to an entry a cloud
// sync has not delivered yet; fsck decides.
func (r *root) logLeftoverMeta(dfd int, e entryName) {
	if dfd < 0 {
		return
	}
	names, err := listNames(dfd)
	if err != nil {
		return
	}
	for _, name := range names {
		if !strings.HasPrefix(name, metaPrefix) {
			return // a real entry: a plain ENOTEMPTY
		}
	}
	r.log.Warn("directory lists empty but holds sealfs metadata; run fsck", "cipher_path", e.path(), "entries", names)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	e, err := n.existing(name)
	if err != nil {
		return toErrno(err)
	}
	defer e.done()
	if err := unix.Unlinkat(e.fd(), e.stored, 0); err != nil {
		return toErrno(err)
	}
	n.forgetName(name, e)
	return 0
}

// forgetName tidies up after the entry e of name left directory n (unlink,
// rmdir, rename away): its long-name side file goes unless a conflict copy
// still needs it to be named, and so does the side file of a long-name
// entry whose last conflict copy this was, if the entry itself is gone.
func (n *node) forgetName(name string, e entryName) {
	x, wasExtra := n.extra(name)
	n.dropExtra(name)
	if e.long && !hasCopyOf(e.fd(), e.stored) {
		n.r.removeSideFile(e, true)
	}
	if wasExtra && x.orig != "" && crypto.IsLongName(x.orig) && x.stored == e.stored && !hasCopyOf(e.fd(), x.orig) {
		var st unix.Statx_t
		if statxAt(e.fd(), x.orig, &st) == syscall.ENOENT {
			n.r.removeSideFile(entryName{dir: e.dir, in: n, stored: x.orig, long: true}, true)
		}
	}
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
	if err := np.writableDir(); err != nil {
		return toErrno(err)
	}
	src, err := n.existing(name)
	if err != nil {
		return toErrno(err)
	}
	defer src.done()
	dst, err := np.existing(newName)
	if err != nil {
		return toErrno(err)
	}
	defer dst.done()
	srcNode, dstNode := n.GetChild(name), np.GetChild(newName)
	if err := n.r.beforeDirMoves(srcNode, src); err != nil {
		return toErrno(err)
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		if err := n.r.beforeDirMoves(dstNode, dst); err != nil {
			return toErrno(err)
		}
		// Both names stay, so both side files stay valid.
		if err := unix.Renameat2(src.fd(), src.stored, dst.fd(), dst.stored, unix.RENAME_EXCHANGE); err != nil {
			return toErrno(err)
		}
		if srcNode != nil {
			asNode(srcNode).setName(np, newName, dst.stored)
		}
		if dstNode != nil {
			asNode(dstNode).setName(n, name, src.stored)
		}
		return 0
	}
	if src.stored == dst.stored && sameDir(src.fd(), dst.fd()) {
		var st unix.Statx_t
		return toErrno(statxAt(src.fd(), src.stored, &st))
	}
	sideMade, err := n.r.writeSideFile(dst)
	if err != nil {
		return toErrno(err)
	}
	taken := &takenID{fd: -1}
	if flags&unix.RENAME_NOREPLACE == 0 {
		// Replacing an (empty) directory: its dirid file would make it
		// non-empty to rename(2).
		var st unix.Statx_t
		if statxAt(dst.fd(), dst.stored, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			if taken, err = n.r.takeDirID(dst); err != nil {
				n.r.removeSideFile(dst, sideMade)
				return toErrno(err)
			}
		}
	}
	defer taken.close()
	if err := unix.Renameat2(src.fd(), src.stored, dst.fd(), dst.stored, uint(flags)); err != nil {
		taken.restore()
		n.r.removeSideFile(dst, sideMade)
		return toErrno(err)
	}
	if dstNode != nil && dstNode.StableAttr().Mode == syscall.S_IFDIR {
		n.r.dirs.drop(asNode(dstNode)) // the directory it replaced is gone
	}
	if srcNode != nil {
		// Its stored name now, whatever encrypting newName would give
		// (it may have replaced one of np's extras).
		asNode(srcNode).setName(np, newName, dst.stored)
	}
	n.r.renamed(srcNode, dst.path())
	// rename(2) between two links of one inode succeeds and changes
	// nothing; the source name then still needs its side file.
	var st unix.Statx_t
	if errors.Is(statxAt(src.fd(), src.stored, &st), syscall.ENOENT) {
		n.forgetName(name, src)
	}
	return 0
}

// beforeDirMoves readies the directory in (entry e) for a move to another
// name: its ID must be known from its ID file (a directory without one
// lives on the ID derived from its name, which the move would change: its
// entries would vanish), and that file must be durable (durable.go).
func (r *root) beforeDirMoves(in *gofs.Inode, e entryName) error {
	if in == nil || in.StableAttr().Mode != syscall.S_IFDIR {
		return nil
	}
	if !asNode(in).idFromFile() {
		r.logOnce(e.path(), "a directory without its ID file cannot be renamed (its entries would no longer decrypt); "+
			"wait for the sync, or run sealfs fsck --repair")
		return errIDUnknown
	}
	return r.durableIDAt(asNode(in).key(), e.fd(), e.stored)
}

// sameDir reports whether two directory descriptors are the same directory.
func sameDir(a, b int) bool {
	if a == b {
		return true
	}
	var sa, sb unix.Stat_t
	return unix.Fstat(a, &sa) == nil && unix.Fstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
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
	return n.makeEntry(ctx, name, out,
		func(dfd int, stored string) error { return unix.Symlinkat(enc, dfd, stored) },
		func(o obj) error { return n.r.chownToCaller(ctx, o) })
}

// Mknod makes FIFOs, sockets and (where the daemon may: as root) block and
// character devices, with their device numbers. None holds data, so they
// are stored as themselves (docs/format.md §2); rsync -aD and tar of a
// system tree need the devices. The backing object is never opened: a
// device swapped under a regular file's name is refused (safefile.OpenFile).
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK:
		dev = 0
	case syscall.S_IFCHR, syscall.S_IFBLK:
		// FUSE sends the kernel's new_encode_dev format, which is what
		// mknod(2) takes for numbers that fit 32 bits.
	default:
		return nil, syscall.EINVAL
	}
	return n.makeEntry(ctx, name, out,
		func(dfd int, stored string) error { return unix.Mknodat(dfd, stored, mode, int(dev)) },
		func(o obj) error { return n.r.fixNewOwnerMode(ctx, o, mode) })
}

// Link adds a name for target. The new entry has target's backing inode,
// so go-fuse returns the existing node: one inode, shared open state.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	td, tname, err := asNode(target.EmbeddedInode()).at()
	if err != nil {
		return nil, toErrno(err)
	}
	defer td.put()
	return n.makeEntry(ctx, name, out,
		func(dfd int, stored string) error { return unix.Linkat(td.fd, tname, dfd, stored, 0) }, nil)
}

// makeEntry creates a non-regular entry with mk (side file first for long
// names), runs fix on it (owner, mode), and registers the node.
func (n *node) makeEntry(ctx context.Context, name string, out *fuse.EntryOut, mk func(dfd int, stored string) error, fix func(obj) error) (*gofs.Inode, syscall.Errno) {
	if err := n.writableDir(); err != nil {
		return nil, toErrno(err)
	}
	e, err := n.child(name)
	if err != nil {
		return nil, toErrno(err)
	}
	defer e.done()
	sideMade, err := n.r.writeSideFile(e)
	if err != nil {
		return nil, toErrno(err)
	}
	if err := mk(e.fd(), e.stored); err != nil {
		n.r.removeSideFile(e, sideMade)
		return nil, toErrno(err)
	}
	if fix != nil {
		err = fix(obj{dirfd: e.fd(), name: e.stored})
	}
	var st unix.Statx_t
	if err == nil {
		err = statxAt(e.fd(), e.stored, &st)
	}
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, name, e.stored, &st, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	n.r.touch()
	d, name, err := n.at()
	if err != nil {
		return nil, toErrno(err)
	}
	defer d.put()
	enc, err := readlinkAt(d.fd, name)
	if err != nil {
		return nil, toErrno(err)
	}
	target, err := n.r.keys.DecryptSymlink(enc)
	if err != nil {
		n.r.log.Error("symlink target failed authentication", "cipher_path", n.logPath(""), "err", err)
		return nil, syscall.EIO
	}
	return []byte(target), 0
}

// readlinkAt reads the target of the symlink name in dirfd. A valid stored
// target is under PATH_MAX (docs/format.md §6); a longer one is cut, and
// then fails authentication.
func readlinkAt(dirfd int, name string) (string, error) {
	if err := safefile.Component(name); err != nil {
		return "", err
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
