package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// handle is one open(2) of a regular file. All handles of an inode share
// one openFile; the handle only remembers its open flags.
type handle struct {
	n      *node
	of     *openFile
	append bool
}

func newHandle(n *node, of *openFile, flags uint32) *handle {
	return &handle{n: n, of: of, append: flags&syscall.O_APPEND != 0}
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileSetattrer = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.n.r.touch()
	h.of.rw.RLock()
	n, err := h.of.cf.ReadAt(dest, off)
	h.of.rw.RUnlock()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write writes at off, or for O_APPEND at the inode's current size: the
// kernel's offset comes from its cached i_size, which another handle or a
// buffered engine write may have moved.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.r.touch()
	if h.n.r.killRequested(ctx) {
		killed, err := h.n.killSUIDGID(ctx)
		if err != nil {
			return 0, toErrno(err)
		}
		if killed {
			h.n.NotifyContent(-1, 0) // attributes only (killpriv.go)
		}
	}
	h.of.rw.RLock()
	defer h.of.rw.RUnlock()
	if h.append {
		h.of.appendMu.Lock()
		defer h.of.appendMu.Unlock()
		off = h.of.cf.Size()
	}
	n, err := h.of.cf.WriteAt(data, off)
	if err != nil {
		return uint32(n), toErrno(err)
	}
	return uint32(n), 0
}

// Flush would run at every close(2); handles are opened with FOPEN_NOFLUSH
// (see openFlags), so the kernel does not send it. It stays for kernels that
// ignore the flag: buffered data then reaches the backing file before close
// returns.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	h.of.rw.RLock()
	defer h.of.rw.RUnlock()
	return toErrno(h.of.cf.Flush())
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.n.r.touch()
	if err := h.n.r.syncIDs(); err != nil { // durable.go
		return toErrno(err)
	}
	h.of.rw.RLock()
	defer h.of.rw.RUnlock()
	// FUSE_FSYNC_FDATASYNC is bit 0 of the fsync flags.
	return toErrno(h.of.cf.Sync(flags&1 != 0))
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	return toErrno(h.n.release(h.of))
}

// Allocate supports mode 0 (reserve and extend). Punching holes, collapsing
// and zeroing ranges would need block-level rewrites the engine does not
// offer, so they are refused as unsupported rather than faked.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	h.n.r.touch()
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	h.of.rw.RLock()
	defer h.of.rw.RUnlock()
	return toErrno(h.of.cf.Allocate(int64(off), int64(size)))
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.n.Getattr(ctx, h, out)
}

func (h *handle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return h.n.Setattr(ctx, h, in, out)
}
