package fs

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/cipherfile"
	"github.com/sealfs/sealfs/internal/safefile"
)

// node is every file, directory, symlink and fifo of the plaintext view. It
// embeds gofs.Inode (go-fuse tracks the tree: parents, names, lookup counts)
// and keeps only what sealfs adds: the cipher name of its last known path,
// a directory's ID, and a regular file's shared open state.
type node struct {
	gofs.Inode
	r *root

	mu sync.Mutex
	// The stored cipher name of this node under nameParent as namePlain. It is
	// a cache keyed by (parent, plaintext name), checked against go-fuse's
	// current parent link on every use, so renames and hard links (several
	// parents) can never serve a stale name; they only cost a re-encryption.
	nameParent *gofs.Inode
	namePlain  string
	nameStored string
	// dirID is a directory's name-encryption ID, read once from its
	// sealfs.dirid file (IDs survive renames, so it never goes stale).
	dirID     crypto.DirID
	haveDirID bool
	warnedID  bool
	// extras: entries of a directory whose plaintext name does not
	// encrypt to their stored name (conflict copies, entries of another
	// directory ID), from the last listing at listedAt (listing.go).
	extras   map[string]extra
	listedAt time.Time
	// tried: how many directory IDs each undecryptable stored name was
	// tried under without a match (listing.go).
	tried map[string]int
	// cacheStamp: the backing file's state that the kernel's cached pages
	// of this regular file match (keep_cache.go).
	cacheStamp stamp
	// scan: a directory's head-prefetch state (prefetch.go).
	scan dirScan
	// plusAt: when a READDIRPLUS last gave the kernel n's attributes, unix
	// nanoseconds (dir_stream.go).
	plusAt atomic.Int64
}

func (r *root) newNode() *node { return &node{r: r} }

// asNode returns the sealfs node behind a go-fuse inode.
func asNode(in *gofs.Inode) *node { return in.Operations().(*node) }

// cipherPath returns the backing path of n by walking its parents, for log
// lines and the engine's messages only: system calls go through descriptors
// (backing.go). A node whose last name was removed (unlinked while open) has
// no path: ENOENT.
func (n *node) cipherPath() (string, error) {
	if n.IsRoot() {
		return n.r.cipherDir, nil
	}
	name, parent := n.Parent()
	if parent == nil {
		return "", syscall.ENOENT
	}
	pn := asNode(parent)
	ppath, err := pn.cipherPath()
	if err != nil {
		return "", err
	}
	stored, err := n.storedName(pn, name)
	if err != nil {
		return "", err
	}
	return ppath + "/" + stored, nil
}

// storedName is the directory entry name of n as child name of parent:
// the name it was created, looked up or renamed under when that was this
// (parent, name), else name's encryption in parent — or, for one of
// parent's extras (a conflict copy, an entry of another directory ID) whose
// encryption is not there, the extra's stored name (listing.go).
func (n *node) storedName(parent *node, name string) (string, error) {
	n.mu.Lock()
	if n.nameParent == &parent.Inode && n.namePlain == name {
		s := n.nameStored
		n.mu.Unlock()
		return s, nil
	}
	n.mu.Unlock()
	e, err := parent.existing(name)
	if err != nil {
		return "", err
	}
	e.done()
	n.setName(parent, name, e.stored)
	return e.stored, nil
}

// cachedName is n's stored name as child name of parent, if known.
func (n *node) cachedName(parent *node, name string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nameParent == &parent.Inode && n.namePlain == name {
		return n.nameStored, true
	}
	return "", false
}

func (n *node) setName(parent *node, name, stored string) {
	n.mu.Lock()
	n.nameParent, n.namePlain, n.nameStored = &parent.Inode, name, stored
	n.mu.Unlock()
}

// entryName is where a plaintext name lives in a cipher directory.
type entryName struct {
	dir    *dirRef // the directory's descriptor, held until done
	in     *node   // the directory, for log lines
	stored string  // directory entry name
	enc    string  // full cipher name (differs from stored for long names)
	long   bool    // stored is a long-name entry with a side file
}

func (e entryName) fd() int { return e.dir.fd }

// done releases the directory descriptor.
func (e entryName) done() { e.dir.put() }

// path is the entry's cipher path, for log lines.
func (e entryName) path() string { return e.in.logPath(e.stored) }

// side is the long-name side file's name next to the entry.
func (e entryName) side() string { return e.stored + crypto.LongNameSuffix }

func (n *node) encryptName(name string) (entryName, error) {
	if len(name) > crypto.MaxNameLen {
		return entryName{}, syscall.ENAMETOOLONG
	}
	id, err := n.getDirID()
	if err != nil {
		return entryName{}, err
	}
	enc, err := n.r.keys.EncryptName(id, name)
	if err != nil {
		return entryName{}, err
	}
	stored, long := crypto.StoredName(enc)
	return entryName{stored: stored, enc: enc, long: long}, nil
}

// child returns where a new entry name goes in directory n (its
// encryption under n's ID), holding n's descriptor until e.done().
func (n *node) child(name string) (entryName, error) {
	e, err := n.encryptName(name)
	if err != nil {
		return entryName{}, err
	}
	d, err := n.dirFD()
	if err != nil {
		return entryName{}, err
	}
	e.dir, e.in = d, n
	return e, nil
}

// existing returns where the existing entry name of directory n is: the
// stored name of the node the kernel knows under that name, else name's
// encryption if that entry is there, else one of n's extras if its stored
// name is still there (listing.go), else name's encryption (the caller's
// system call then says ENOENT). A stale listing never sends an operation to
// an entry that is gone, and a new name is never stored under an extra's.
func (n *node) existing(name string) (entryName, error) {
	if ch := n.GetChild(name); ch != nil {
		if stored, ok := asNode(ch).cachedName(n, name); ok {
			e, err := n.child(name)
			if err == nil && stored != e.stored {
				x, isExtra := n.extra(name)
				e.stored, e.enc, e.long = stored, x.enc, isExtra && x.long
			}
			return e, err
		}
	}
	e, err := n.child(name)
	if err != nil {
		return e, err
	}
	x, ok := n.extra(name)
	if !ok {
		return e, nil
	}
	var st unix.Statx_t
	if statxAt(e.fd(), e.stored, &st) == nil {
		return e, nil
	}
	if statxAt(e.fd(), x.stored, &st) == nil {
		e.stored, e.enc, e.long = x.stored, x.enc, x.long
		return e, nil
	}
	n.dropExtra(name)
	return e, nil
}

// getDirID returns the directory ID used to encrypt n's children.
func (n *node) getDirID() (crypto.DirID, error) {
	if n.IsRoot() {
		return crypto.RootDirID, nil
	}
	n.mu.Lock()
	if n.haveDirID {
		id := n.dirID
		n.mu.Unlock()
		return id, nil
	}
	n.mu.Unlock()
	d, err := n.dirFD()
	if err != nil {
		return crypto.DirID{}, err
	}
	b, err := safefile.ReadFileAt(d.fd, crypto.DirIDFile, maxMetaFile)
	d.put()
	if err == nil {
		id, perr := crypto.ParseDirID(b)
		if perr == nil {
			n.setDirID(id)
			return id, nil
		}
		err = perr
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, safefile.ErrNotRegular) && !errors.Is(err, safefile.ErrTooLarge) {
		return crypto.DirID{}, err
	}
	return n.fallbackDirID(err)
}

// fallbackDirID handles a missing or unreadable dirid file, typically a cloud
// sync that has not delivered it yet. The ID a directory got at mkdir is
// derived from its parent's ID and its name, so deriving it again finds the
// names unless the directory was renamed since. The folder is never hidden,
// and the warning says why its names may not decrypt (peers.md, user ask 2).
// The fallback is not cached, so the real file is used as soon as it arrives.
func (n *node) fallbackDirID(cause error) (crypto.DirID, error) {
	name, parent := n.Parent()
	if parent == nil {
		return crypto.DirID{}, syscall.ENOENT
	}
	pn := asNode(parent)
	pid, err := pn.getDirID()
	if err != nil {
		return crypto.DirID{}, err
	}
	if x, ok := pn.extra(name); ok && x.plain != "" {
		// A conflict copy of a directory: its ID was derived from the
		// original's name; an entry of another directory: from its name
		// under that directory's ID.
		name = x.plain
		if x.foreign {
			pid = x.id
		}
	}
	n.mu.Lock()
	warn := !n.warnedID
	n.warnedID = true
	n.mu.Unlock()
	if warn {
		n.r.log.Warn("directory ID file missing or invalid; using the ID derived from the directory's name",
			"cipher_path", n.logPath(crypto.DirIDFile), "err", cause)
	}
	return n.r.keys.DeriveDirID(pid, name), nil
}

func (n *node) setDirID(id crypto.DirID) {
	n.mu.Lock()
	n.dirID, n.haveDirID = id, true
	n.mu.Unlock()
	n.r.ids.add(id) // ids.go
}

// statxAt reads the backing attributes of the entry name in dirfd, without
// following a symlink. statx rather than lstat because the birth time gives
// go-fuse a generation number: a recycled backing inode number then becomes
// a new node instead of inheriting a dead one's cached directory ID or name.
func statxAt(dirfd int, name string, st *unix.Statx_t) error {
	if name != "" {
		if err := safefile.Component(name); err != nil {
			return err
		}
	}
	return unix.Statx(dirfd, name, emptyPath(name, unix.AT_SYMLINK_NOFOLLOW),
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, st)
}

func fstatx(fd int, st *unix.Statx_t) error {
	return unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS|unix.STATX_BTIME, st)
}

// stableAttr derives the inode number from the backing file's, as go-fuse's
// loopback does: st_ino with the device mixed in only when it differs from
// the cipher dir's. The backing store keeps st_ino across remounts, so backup
// tools see stable numbers, and hard links share one.
func (r *root) stableAttr(st *unix.Statx_t) gofs.StableAttr {
	dev := unix.Mkdev(st.Dev_major, st.Dev_minor)
	swap := func(d uint64) uint64 { return d<<32 | d>>32 }
	gen := uint64(1)
	if st.Mask&unix.STATX_BTIME != 0 && (st.Btime.Sec != 0 || st.Btime.Nsec != 0) {
		gen = uint64(st.Btime.Sec)*1e9 + uint64(st.Btime.Nsec)
	}
	return gofs.StableAttr{
		Mode: uint32(st.Mode) & syscall.S_IFMT,
		Ino:  swap(dev) ^ swap(r.dev) ^ st.Ino,
		Gen:  gen,
	}
}

// fillAttr converts backing attributes to plaintext ones: sizes of regular
// files and symlinks shrink by the encryption overhead. A regular file that
// is open reports the engine's size, and data the engine still buffers is
// written first (st is refreshed), so the times reported are final: with
// FOPEN_NOFLUSH (see Open) the buffered tail may otherwise reach the backing
// file after close(2) returned, moving mtime under an observer's feet.
func (n *node) fillAttr(st *unix.Statx_t, out *fuse.Attr) {
	plainSize := int64(-1)
	if st.Mode&syscall.S_IFMT == syscall.S_IFREG {
		a := n.r.stableAttr(st)
		if of := n.r.refOpen(fileKey{a.Ino, a.Gen}); of != nil {
			plainSize = of.settle(st)
			of.n.release(of)
		}
	}
	out.Ino = n.r.stableAttr(st).Ino
	out.Mode = uint32(st.Mode)
	out.Nlink = st.Nlink
	out.Uid, out.Gid = st.Uid, st.Gid
	out.Rdev = uint32(unix.Mkdev(st.Rdev_major, st.Rdev_minor))
	out.Blksize = st.Blksize
	out.Blocks = st.Blocks
	out.Atime, out.Atimensec = uint64(st.Atime.Sec), st.Atime.Nsec
	out.Mtime, out.Mtimensec = uint64(st.Mtime.Sec), st.Mtime.Nsec
	out.Ctime, out.Ctimensec = uint64(st.Ctime.Sec), st.Ctime.Nsec
	out.Size = st.Size
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		if plainSize >= 0 {
			out.Size = uint64(plainSize)
		} else {
			out.Size = uint64(cipherfile.PlainSizeOf(int64(st.Size)))
		}
	case syscall.S_IFLNK:
		out.Size = uint64(symlinkPlainLen(int64(st.Size)))
	}
}

// checkEmpty corrects the size fillAttr reported for the unopened regular
// file name in dirfd when its cipher size is that of an empty file: a file
// cut 28 bytes into its first block has that size too, and must not list
// as a valid empty file (cipherfile.CheckEmpty). Its open then fails.
func (r *root) checkEmpty(dirfd int, name string, st *unix.Statx_t, out *fuse.Attr) {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || int64(st.Size) != crypto.CipherSize(0) || out.Size != 0 {
		return
	}
	if of := r.refOpen(fileKey{r.stableAttr(st).Ino, r.stableAttr(st).Gen}); of != nil {
		of.n.release(of) // open: fillAttr took the engine's size
		return
	}
	fd, err := safefile.OpenFile(dirfd, name, unix.O_RDONLY)
	if err != nil {
		return // unreadable here (a 0200 file, EMFILE, a race): no verdict
	}
	err = cipherfile.CheckEmpty(r.keys, fd)
	unix.Close(fd)
	var verr *crypto.VersionError
	if errors.Is(err, crypto.ErrAuth) || errors.Is(err, crypto.ErrTruncated) || errors.Is(err, crypto.ErrFormat) || errors.As(err, &verr) {
		out.Size = uint64(cipherfile.DamagedSize(int64(st.Size)))
	}
}

// symlinkPlainLen computes a target's plaintext length from the stored
// length alone (base64url-nopad of nonce ‖ ct ‖ tag), so lookups and
// getattr need no readlink.
func symlinkPlainLen(enc int64) int64 {
	raw := enc * 3 / 4
	if raw < crypto.NonceSize+crypto.TagSize {
		return 0
	}
	return raw - crypto.NonceSize - crypto.TagSize
}

// newChild makes a node for the child found at stored (with attributes st)
// under name and fills out. go-fuse replaces it by the node it already has
// for the same inode (a hard link, a racing lookup) after we return; the
// open size comes from the root's table, so it is right either way.
func (n *node) newChild(ctx context.Context, name, stored string, st *unix.Statx_t, out *fuse.EntryOut) *gofs.Inode {
	ch := n.r.newNode()
	in := n.NewInode(ctx, ch, n.r.stableAttr(st))
	cn := asNode(in)
	cn.setName(n, name, stored)
	cn.fillAttr(st, &out.Attr)
	return in
}

// Statfs reports the backing filesystem's figures (block counts include the
// 0.1 % encryption overhead; close enough for df and for backup tools'
// free-space checks).
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Fstatfs(n.r.rootRef.fd, &s); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&s)
	out.NameLen = crypto.MaxNameLen
	return 0
}
