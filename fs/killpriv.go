package fs

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Set-id bits are cleared by sealfs, not by the kernel (FUSE
// CAP_HANDLE_KILLPRIV_V2, Linux ≥ 5.11). Without that capability the kernel
// does it itself, and pays for it on every write: it asks the daemon for the
// file's security.capability xattr before each write(2) (a GETXATTR round
// trip per write call: 3.6 per untarred file) and refreshes the attributes
// before each chown (a GETATTR). With it, the superblock is SB_NOSEC: after
// the first write finds no set-id bit and no capability, the inode is marked
// and later writes skip the check.
//
// In exchange the daemon must clear the set-id bits (killBits) where the
// kernel tells it to:
//   - WRITE with FUSE_WRITE_KILL_SUIDGID (the writer lacks CAP_FSETID);
//   - SETATTR with FATTR_KILL_SUIDGID: truncate by such a caller, and any
//     chown of a non-directory (there the backing chown(2) clears the bits
//     already; clearing again is harmless);
//   - SETATTR with nothing to set: the kernel's file_remove_privs found bits
//     to clear before a write, fallocate or copy_file_range, and with
//     KILLPRIV_V2 sends no mode for them (fallocate sends nothing else).
//
// After clearing in WRITE the kernel's cached mode is stale (it refreshes
// only size and times after a write), so the inode's attributes are
// invalidated; a SETATTR reply carries the new mode itself.
//
// sealfs offers no security.* xattrs, so there are no file capabilities to
// drop.
const killCaps = fuse.CAP_HANDLE_KILLPRIV_V2

// rawFS passes FUSE_WRITE_KILL_SUIDGID to the node layer: go-fuse's node
// API hands a write its data and offset but drops WriteIn.WriteFlags. The
// flag is recorded under the request's cancel channel, which go-fuse passes
// on as the Cancel of the fuse.Context the handle's Write receives and which
// is unique among requests in flight.
type rawFS struct {
	fuse.RawFileSystem
	r *root
}

func (f *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer f.r.markKill(cancel, in)()
	return f.RawFileSystem.Write(cancel, in, data)
}

func (f *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	defer f.r.markKill(cancel, in)()
	return f.RawFileSystem.Writev(cancel, in, data)
}

// killWrites holds the cancel channels of WRITE requests in flight that
// carry FUSE_WRITE_KILL_SUIDGID.
type killWrites struct{ m sync.Map }

func (r *root) markKill(cancel <-chan struct{}, in *fuse.WriteIn) (unmark func()) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID == 0 {
		return func() {}
	}
	r.kills.m.Store(cancel, struct{}{})
	return func() { r.kills.m.Delete(cancel) }
}

// killRequested tells a handle's Write whether its request carries the flag.
func (r *root) killRequested(ctx context.Context) bool {
	c, ok := ctx.(*fuse.Context)
	if !ok || c.Cancel == nil {
		return false
	}
	_, kill := r.kills.m.Load(c.Cancel)
	return kill
}

// killBits are the set-id bits a write, truncate or chown by caller must
// clear from a file of mode and group gid (the kernel's should_remove_suid
// and setattr_should_drop_sgid): set-user-ID always; set-group-ID when
// group-execute is set, or when the caller is neither in the file's group
// nor privileged (uid 0 stands in for CAP_FSETID, which FUSE does not
// report).
func killBits(mode, gid uint32, caller *fuse.Caller) uint32 {
	kill := mode & syscall.S_ISUID
	if mode&syscall.S_ISGID != 0 {
		if mode&syscall.S_IXGRP != 0 || (caller != nil && caller.Uid != 0 && !inGroup(caller, gid)) {
			kill |= syscall.S_ISGID
		}
	}
	return kill
}

// inGroup reports whether the caller has gid as its primary or a
// supplementary group (read from /proc, as FUSE sends only the primary one).
func inGroup(c *fuse.Caller, gid uint32) bool {
	if c.Gid == gid {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(c.Pid)) + "/status")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if groups, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, g := range strings.Fields(groups) {
				if g == strconv.FormatUint(uint64(gid), 10) {
					return true
				}
			}
		}
	}
	return false
}

// killSUIDGID clears the set-id bits caller's change must clear, if the
// backing file has any, and reports whether it changed the mode.
func (n *node) killSUIDGID(ctx context.Context) (bool, error) {
	var st unix.Statx_t
	if err := n.statBacking(&st); err != nil {
		return false, err
	}
	mode := uint32(st.Mode)
	if mode&syscall.S_IFMT != syscall.S_IFREG || mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 {
		return false, nil
	}
	caller, _ := fuse.FromContext(ctx)
	kill := killBits(mode, st.Gid, caller)
	if kill == 0 {
		return false, nil
	}
	perm := mode & 07777 &^ kill
	err := n.chmod(perm)
	return err == nil, err
}

// killRequested tells whether a SETATTR asks for set-id bits to be cleared:
// explicitly, or by asking for nothing else (see above). An explicit new mode
// in the same request wins.
func killRequested(in *fuse.SetAttrIn) bool {
	if _, explicit := in.GetMode(); explicit {
		return false
	}
	const bookkeeping = fuse.FATTR_FH | fuse.FATTR_LOCKOWNER
	return in.Valid&fuse.FATTR_KILL_SUIDGID != 0 || in.Valid&^bookkeeping == 0
}
