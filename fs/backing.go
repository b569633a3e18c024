package fs

import (
	"container/list"
	"errors"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/safefile"
)

// Every system call on the cipher folder is relative to a directory file
// descriptor and names one entry (safefile.Component), never a path: the
// folder is shared with a sync service and whoever controls it, and a
// path-based call follows a symlink planted in place of any directory on its
// way (O_NOFOLLOW guards the last component only; issue 13). A directory's
// descriptor is reached from the cipher root, one O_PATH|O_NOFOLLOW openat
// per level (safefile.OpenDir), so no symlink is ever followed and the
// backing PATH_MAX does not limit the plaintext depth.
//
// Descriptors of directories in use are cached, keyed by node. A node stands
// for one backing inode (its inode number is the backing one), so the
// descriptor stays right across renames, through the mount or underneath: if
// a sync service moves the directory, the node and its descriptor move with
// it; if it deletes the directory, creates in it fail with ENOENT until the
// kernel looks the name up again and gets a node for whatever is there now.
// Nothing else reaches the cache: a replaced entry is opened afresh, checked
// again. The cache is a bounded LRU (an untar's working set is the chain of
// directories it is in), and go-fuse's OnForget drops a node's entry.

// dirCacheMax bounds the cached directory descriptors (each is an O_PATH fd:
// a struct file in the kernel, no page cache).
const dirCacheMax = 512

// dirRef is a held directory descriptor; put it back with put.
type dirRef struct {
	fd   int
	c    *dirCache
	n    *node
	refs int  // holders, guarded by c.mu
	dead bool // out of the cache: closed when the last holder puts it back
	elem *list.Element
}

// put releases a reference obtained from dirCache.get.
func (d *dirRef) put() {
	if d == nil || d.c == nil { // the root's, never closed before unmount
		return
	}
	d.c.mu.Lock()
	d.refs--
	closeIt := d.dead && d.refs == 0
	d.c.mu.Unlock()
	if closeIt {
		unix.Close(d.fd)
	}
}

type dirCache struct {
	mu  sync.Mutex
	m   map[*node]*dirRef
	lru list.List // of *dirRef, most recently used first
	max int
}

func newDirCache(max int) *dirCache {
	return &dirCache{m: map[*node]*dirRef{}, max: max}
}

// cached returns n's descriptor with a reference held, or nil.
func (c *dirCache) cached(n *node) *dirRef {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.m[n]
	if d == nil {
		return nil
	}
	d.refs++
	c.lru.MoveToFront(d.elem)
	return d
}

// add caches a new descriptor of n and returns it with a reference held. If
// another caller added one meanwhile, fd is closed and theirs returned.
func (c *dirCache) add(n *node, fd int) *dirRef {
	c.mu.Lock()
	if d := c.m[n]; d != nil {
		d.refs++
		c.lru.MoveToFront(d.elem)
		c.mu.Unlock()
		unix.Close(fd)
		return d
	}
	d := &dirRef{fd: fd, c: c, n: n, refs: 1}
	d.elem = c.lru.PushFront(d)
	c.m[n] = d
	var closing []int
	for c.lru.Len() > c.max {
		old := c.lru.Back().Value.(*dirRef)
		if fd, ok := c.dropLocked(old); ok {
			closing = append(closing, fd)
		}
	}
	c.mu.Unlock()
	for _, fd := range closing {
		unix.Close(fd)
	}
	return d
}

// drop forgets n's descriptor (closed once no one holds it).
func (c *dirCache) drop(n *node) {
	c.mu.Lock()
	d := c.m[n]
	var fd int
	var closeIt bool
	if d != nil {
		fd, closeIt = c.dropLocked(d)
	}
	c.mu.Unlock()
	if closeIt {
		unix.Close(fd)
	}
}

func (c *dirCache) dropLocked(d *dirRef) (fd int, closeIt bool) {
	c.lru.Remove(d.elem)
	delete(c.m, d.n)
	d.dead = true
	return d.fd, d.refs == 0
}

// closeAll closes every cached descriptor (at unmount; nothing holds one).
func (c *dirCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.m {
		c.lru.Remove(d.elem)
		d.dead = true
		if d.refs == 0 {
			unix.Close(d.fd)
		}
	}
	clear(c.m)
}

// dirFD returns the O_PATH descriptor of directory node n's cipher
// directory, opened beneath the cipher root without following a symlink at
// any level. Callers put it back.
func (n *node) dirFD() (*dirRef, error) {
	if n.IsRoot() {
		return n.r.rootRef, nil
	}
	if d := n.r.dirs.cached(n); d != nil {
		return d, nil
	}
	name, parent := n.Parent()
	if parent == nil {
		return nil, syscall.ENOENT // removed
	}
	pn := asNode(parent)
	pd, err := pn.dirFD()
	if err != nil {
		return nil, err
	}
	defer pd.put()
	stored, err := n.storedName(pn, name)
	if err != nil {
		return nil, err
	}
	fd, err := safefile.OpenDir(pd.fd, stored)
	if err != nil {
		return nil, n.r.typeError(err, pn.logPath(stored))
	}
	// The node stands for one backing directory: if another one has taken
	// its name since (a sync service replaced it), the node's directory is
	// gone, as if removed.
	var st unix.Statx_t
	if err := fstatx(fd, &st); err != nil || n.r.stableAttr(&st) != n.StableAttr() {
		unix.Close(fd)
		if err == nil {
			err = syscall.ENOENT
		}
		return nil, err
	}
	return n.r.dirs.add(n, fd), nil
}

// at returns where n lives: its parent directory's descriptor and its stored
// name there, for the *at system calls. The root is its own descriptor with
// the name "" (AT_EMPTY_PATH: unlike ".", it needs no search permission). A
// node whose last name was removed (unlinked while open) has no place:
// ENOENT (callers with an open engine use its fd instead).
func (n *node) at() (*dirRef, string, error) {
	if n.IsRoot() {
		return n.r.rootRef, "", nil
	}
	name, parent := n.Parent()
	if parent == nil {
		return nil, "", syscall.ENOENT
	}
	pn := asNode(parent)
	pd, err := pn.dirFD()
	if err != nil {
		return nil, "", err
	}
	stored, err := n.storedName(pn, name)
	if err != nil {
		pd.put()
		return nil, "", err
	}
	return pd, stored, nil
}

// emptyPath adds AT_EMPTY_PATH to flags for the name "" (at's root).
func emptyPath(name string, flags int) int {
	if name == "" {
		return flags | unix.AT_EMPTY_PATH
	}
	return flags
}

// OnForget: the kernel forgot n, so no request will name it again.
func (n *node) OnForget() {
	if n.StableAttr().Mode == syscall.S_IFDIR {
		n.r.dirs.drop(n)
	}
}

var _ gofs.NodeOnForgetter = (*node)(nil)

// typeError logs an entry of the wrong type found at the cipher path (a
// symlink, FIFO or device where a directory or a regular file belongs: a
// sync peer can plant one), and passes err on. Other errors pass unlogged.
func (r *root) typeError(err error, path string) error {
	var te *safefile.TypeError
	if errors.As(err, &te) {
		r.log.Error("cipher folder entry has the wrong type; not followed",
			"cipher_path", path, "want", safefile.TypeName(te.Want), "found", safefile.TypeName(te.Found))
	}
	return err
}

// logPath is the cipher path of the entry stored in directory n, for log
// lines only: no system call ever gets a path of several components.
func (n *node) logPath(stored string) string {
	p, err := n.cipherPath()
	if err != nil {
		p = "(removed directory)"
	}
	if stored == "" {
		return p
	}
	return p + "/" + stored
}
