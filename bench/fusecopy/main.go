// Command fusecopy is bench/run's floor for the data rows: go-fuse's
// loopback filesystem with the data going through the daemon. go-fuse's own
// example loopback reads and writes through FUSE passthrough where the kernel
// offers it, which no encrypting filesystem can use, so its data rows say
// nothing about what a FUSE daemon that must see every byte can reach. This
// one refuses passthrough and otherwise matches sealfs' mount: 1 MiB
// WRITEs, a 4 MiB readahead window, 1 s entry and attribute timeouts,
// single-user. No crypto, no name mapping.
//
// Usage: fusecopy MOUNTPOINT ORIGINAL (unmount with fusermount3 -u).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

type node struct{ *fs.LoopbackNode }

// WrapChild makes every node the loopback creates a node of ours.
func (n *node) WrapChild(_ context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{ops.(*fs.LoopbackNode)}
}

// file is a LoopbackFile without its PassthroughFd method, so every READ
// and WRITE reaches the daemon, and READ answered from a pread into the
// request's buffer as sealfs answers it (the loopback's own Read hands go-fuse
// the fd to splice, which fails for 1 MiB requests and falls back to that).
type file struct {
	fd int
	fs.FileWriter
	fs.FileReleaser
	fs.FileGetattrer
	fs.FileSetattrer
	fs.FileFlusher
	fs.FileFsyncer
	fs.FileAllocater
	fs.FileLseeker
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return wrap(fh), fl, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	ch, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, wrap(fh), fl, 0
}

func wrap(fh fs.FileHandle) fs.FileHandle {
	lf := fh.(*fs.LoopbackFile)
	fd, _ := lf.PassthroughFd()
	return &file{fd, lf, lf, lf, lf, lf, lf, lf, lf}
}

func (f *file) Read(_ context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := syscall.Pread(f.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: fusecopy MOUNTPOINT ORIGINAL")
		os.Exit(2)
	}
	mnt, orig := os.Args[1], os.Args[2]
	root, err := fs.NewLoopbackRoot(orig)
	if err != nil {
		log.Fatal(err)
	}
	sec := time.Second
	srv, err := fs.Mount(mnt, &node{root.(*fs.LoopbackNode)}, &fs.Options{
		AttrTimeout:     &sec,
		EntryTimeout:    &sec,
		NegativeTimeout: &sec,
		NullPermissions: true,
		// DisableSplice as sealfs: answers are bytes in memory.
		MountOptions: fuse.MountOptions{MaxWrite: 1 << 20, FsName: orig, Name: "fusecopy", DirectMount: true, DisableSplice: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	// As sealfs does (fs/mount.go): FUSE_INIT can only lower the kernel's
	// 128 KiB readahead; the bdi's window is the knob.
	var mst unix.Stat_t
	if err := unix.Stat(mnt, &mst); err == nil {
		p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(mst.Dev), unix.Minor(mst.Dev))
		_ = os.WriteFile(p, []byte("4096"), 0)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; _ = srv.Unmount() }()
	srv.Wait()
}
