package fs

import (
	"context"
	"encoding/binary"
	"sync"
	"syscall"
	"time"
	"unsafe"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/safefile"
)

// dirHandle lists a directory. The whole cipher directory is read and its
// names decrypted on the first READDIR(PLUS), so offsets are plain indices:
// seekdir/telldir and rewinddir work, and a READDIRPLUS lookup reuses the
// stored name it just decrypted instead of encrypting it again.
type dirHandle struct {
	n *node

	mu      sync.Mutex
	loaded  bool
	entries []fuse.DirEntry
	stored  []string // stored names, parallel to entries ("" for . and ..)
	pos     int
}

var (
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.FileReaddirenter   = (*dirHandle)(nil)
	_ gofs.FileLookuper       = (*dirHandle)(nil)
	_ gofs.FileSeekdirer      = (*dirHandle)(nil)
	_ gofs.FileFsyncdirer     = (*dirHandle)(nil)
)

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.r.touch()
	if err := n.checkAccess(unix.R_OK); err != nil { // access.go
		return nil, 0, toErrno(err)
	}
	return &dirHandle{n: n}, 0, 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded {
		if err := d.load(); err != nil {
			return nil, toErrno(err)
		}
	}
	if d.pos >= len(d.entries) {
		return nil, 0
	}
	de := d.entries[d.pos]
	d.pos++
	return &de, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 0 {
		d.loaded = false // rewinddir: see new entries
	}
	d.pos = int(off)
	return 0
}

// Lookup serves READDIRPLUS for the entry Readdirent just returned.
//
// An entry this mount described in a READDIRPLUS moments ago (plusFresh)
// gets no attributes this time: the kernel still holds them, and a zero node
// ID in a READDIRPLUS entry tells it just that (fuse_direntplus_link: "the
// filesystem did not want to return attributes for this entry"), so it
// lists the name as plain READDIR would. rm -rf and other fts walkers list
// every directory twice in a row; this halves their statx calls and node
// work.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d.mu.Lock()
	stored, ino := "", uint64(0)
	if i := d.pos - 1; i >= 0 && i < len(d.entries) && d.entries[i].Name == name {
		stored, ino = d.stored[i], d.entries[i].Ino
	}
	d.mu.Unlock()
	if stored == "" {
		return d.n.Lookup(ctx, name, out)
	}
	known := d.n.GetChild(name)
	if known != nil && known.StableAttr().Ino != ino {
		known = nil
	}
	if known != nil && asNode(known).plusFresh() {
		return nil, errNoAttrs
	}
	dd, err := d.n.dirFD()
	if err != nil {
		return nil, toErrno(err)
	}
	defer dd.put()
	var st unix.Statx_t
	if err := statxAt(dd.fd, stored, &st); err != nil {
		return nil, toErrno(err)
	}
	ch := d.n.newChild(ctx, name, stored, &st, out)
	d.n.r.checkEmpty(dd.fd, stored, &st, &out.Attr)
	if known != nil && known.StableAttr().Ino == ch.StableAttr().Ino {
		ch = known // go-fuse keeps the node it has (newChild)
	}
	asNode(ch).plusAt.Store(time.Now().UnixNano())
	return ch, 0
}

// errNoAttrs makes go-fuse send a READDIRPLUS entry without a node ID
// (and without adding a child), i.e. the name without attributes.
const errNoAttrs = syscall.EAGAIN

// plusFresh: the kernel got n's attributes from a READDIRPLUS within the
// last half attribute timeout, so it still holds them (or dropped them for
// a reason a repeat would not fix, such as a write).
func (n *node) plusFresh() bool {
	t := n.plusAt.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < attrTimeout/2
}

func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if err := d.n.r.syncIDs(); err != nil { // durable.go
		return toErrno(err)
	}
	fd, err := d.n.openDirRead()
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(fd)
	return toErrno(unix.Fsync(fd))
}

// openDirRead opens directory node n's cipher directory for reading.
func (n *node) openDirRead() (int, error) {
	dd, err := n.dirFD()
	if err != nil {
		return -1, err
	}
	defer dd.put()
	return safefile.OpenDirRead(dd.fd, "")
}

func (d *dirHandle) load() error {
	id, err := d.n.getDirID()
	if err != nil {
		return err
	}
	fd, err := d.n.openDirRead()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ents, err := d.n.list(fd, id) // listing.go
	if err != nil {
		return err
	}
	d.entries = d.entries[:0]
	d.stored = d.stored[:0]
	d.add(fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: d.n.StableAttr().Ino}, "")
	d.add(fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR}, "")
	for _, e := range ents {
		d.add(fuse.DirEntry{Name: e.name, Mode: dtToMode(e.typ), Ino: e.ino}, e.stored)
	}
	d.loaded = true
	return nil
}

func (d *dirHandle) add(de fuse.DirEntry, stored string) {
	de.Off = uint64(len(d.entries) + 1)
	d.entries = append(d.entries, de)
	d.stored = append(d.stored, stored)
}

// forEachDirent walks linux_dirent64 records: ino u64, off s64, reclen u16,
// type u8, NUL-terminated name. Parsed by hand because os.ReadDir drops
// d_ino, which plain READDIR must return.
func forEachDirent(b []byte, fn func(ino uint64, typ uint8, name string)) {
	const nameOff = int(unsafe.Offsetof(unix.Dirent{}.Name))
	for len(b) >= nameOff {
		ino := binary.NativeEndian.Uint64(b[0:])
		reclen := int(binary.NativeEndian.Uint16(b[16:]))
		if reclen < nameOff || reclen > len(b) {
			return
		}
		typ := b[18]
		name := b[nameOff:reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		fn(ino, typ, string(name))
		b = b[reclen:]
	}
}

func dtToMode(t uint8) uint32 {
	switch t {
	case unix.DT_DIR:
		return syscall.S_IFDIR
	case unix.DT_LNK:
		return syscall.S_IFLNK
	case unix.DT_FIFO:
		return syscall.S_IFIFO
	case unix.DT_SOCK:
		return syscall.S_IFSOCK
	case unix.DT_CHR:
		return syscall.S_IFCHR
	case unix.DT_BLK:
		return syscall.S_IFBLK
	}
	return syscall.S_IFREG
}
