package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFSAppendTruncate(t *testing.T) {
	m := newMount(t, mountOpts{})
	p := m.p("log")
	a, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 100 {
		f := a
		if i%2 == 1 {
			f = b
		}
		if _, err := f.Write([]byte{byte('a' + i%26)}); err != nil {
			t.Fatal(err)
		}
	}
	got := mustRead(t, p)
	if len(got) != 100 {
		t.Fatalf("two appenders wrote %d bytes, want 100", len(got))
	}
	for i, c := range got {
		if c != byte('a'+i%26) {
			t.Fatalf("byte %d = %q", i, c)
		}
	}
	// Truncate up (zeros) and down, by path and by fd, across block borders.
	if err := os.Truncate(p, 100_000); err != nil {
		t.Fatal(err)
	}
	got = mustRead(t, p)
	if len(got) != 100_000 || !bytes.Equal(got[100:], make([]byte, 100_000-100)) {
		t.Fatalf("truncate up: len %d", len(got))
	}
	if err := a.Truncate(40_000); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Size() != 40_000 {
		t.Fatalf("ftruncate down: size %d", st.Size())
	}
	if err := os.Truncate(p, 50); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, p); string(got) != "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx" {
		t.Fatalf("truncate down: %q", got)
	}
	// O_TRUNC on open.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(p); st.Size() != 0 {
		t.Fatalf("O_TRUNC: size %d", st.Size())
	}
}

func TestFSRandomAccessAndSparse(t *testing.T) {
	m := newMount(t, mountOpts{})
	f, err := os.OpenFile(m.p("sparse"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("end"), 200_000); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("mid"), 70_000); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200_003)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 200_003)
	copy(want[70_000:], "mid")
	copy(want[200_000:], "end")
	if !bytes.Equal(buf, want) {
		t.Fatal("sparse file content differs")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	// fallocate mode 0 extends; other modes are refused.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 300_000); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 300_000 {
		t.Fatalf("fallocate: size %d", st.Size())
	}
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE|unix.FALLOC_FL_PUNCH_HOLE, 0, 10)
	wantErrno(t, err, syscall.EOPNOTSUPP, "punch hole")
	// copy_file_range is not implemented by sealfs; the kernel falls back
	// to copying through the page cache.
	g, err := os.Create(m.p("copy"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var offIn, offOut int64 = 69_998, 0
	n, err := unix.CopyFileRange(int(f.Fd()), &offIn, int(g.Fd()), &offOut, 10, 0)
	if err != nil || n != 10 {
		t.Fatalf("copy_file_range: %d %v", n, err)
	}
	if got := mustRead(t, m.p("copy")); string(got) != "\x00\x00mid\x00\x00\x00\x00\x00" {
		t.Fatalf("copied %q", got)
	}
}

// TestFSLargeFile writes past 4 GiB: offsets and sizes must not be truncated
// to 32 bits anywhere. The engine stores holes as encrypted zero blocks, so
// this writes ~4 GiB to the cipher dir.
func TestFSLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 4 GiB")
	}
	m := newMount(t, mountOpts{})
	f, err := os.OpenFile(m.p("big"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const off = 4<<30 + 12345
	if _, err := f.WriteAt([]byte("beyond 4 GiB"), off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m.remount(mountOpts{})
	st, err := os.Stat(m.p("big"))
	if err != nil || st.Size() != off+12 {
		t.Fatalf("size %d (%v), want %d", st.Size(), err, off+12)
	}
	g, err := os.Open(m.p("big"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	buf := make([]byte, 20)
	n, _ := g.ReadAt(buf, off-8)
	if want := "\x00\x00\x00\x00\x00\x00\x00\x00beyond 4 GiB"; string(buf[:n]) != want {
		t.Fatalf("read %q", buf[:n])
	}
}

func TestFSAttrs(t *testing.T) {
	m := newMount(t, mountOpts{})
	p := m.p("f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	// Set times while the file is open with unflushed data: the flush must
	// happen before, or close would move mtime again.
	mt := time.Date(2001, 2, 3, 4, 5, 6, 123456789, time.UTC)
	at := time.Date(2002, 2, 3, 4, 5, 6, 987654321, time.UTC)
	if err := os.Chtimes(p, at, mt); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mtim.Nano() != mt.UnixNano() || st.Atim.Nano() != at.UnixNano() {
			t.Fatalf("%s: mtime %v atime %v", when, time.Unix(0, st.Mtim.Nano()), time.Unix(0, st.Atim.Nano()))
		}
		if st.Mode&0o7777 != 0o640 || st.Uid != 1234 || st.Gid != 5678 || st.Size != 4 {
			t.Fatalf("%s: mode %o uid %d gid %d size %d", when, st.Mode, st.Uid, st.Gid, st.Size)
		}
	}
	check("mounted")
	m.remount(mountOpts{})
	check("remounted")
	// Setgid and sticky bits survive create.
	if err := os.Mkdir(m.p("sticky"), 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(m.p("sticky"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(m.p("sticky")); st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("sticky bit lost: %v", st.Mode())
	}
}

func TestFSLinksSymlinksFifo(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("orig"), []byte("shared"))
	if err := os.Mkdir(m.p("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(m.p("orig"), m.p("sub", "link")); err != nil {
		t.Fatal(err)
	}
	var a, b unix.Stat_t
	unix.Stat(m.p("orig"), &a)
	unix.Stat(m.p("sub", "link"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
		t.Fatalf("hard link: ino %d/%d nlink %d/%d", a.Ino, b.Ino, a.Nlink, b.Nlink)
	}
	// Writes through one name are seen through the other, also while both
	// are open (one shared engine state).
	f1, _ := os.OpenFile(m.p("orig"), os.O_RDWR, 0)
	f2, _ := os.OpenFile(m.p("sub", "link"), os.O_RDWR, 0)
	if _, err := f1.WriteAt([]byte("SH"), 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := f2.ReadAt(buf, 0); err != nil || string(buf) != "SHared" {
		t.Fatalf("via link: %q %v", buf, err)
	}
	f1.Close()
	f2.Close()
	if err := os.Remove(m.p("orig")); err != nil {
		t.Fatal(err)
	}
	unix.Stat(m.p("sub", "link"), &b)
	if b.Nlink != 1 {
		t.Fatalf("nlink after unlink %d", b.Nlink)
	}
	// Symlinks: target encrypted, size is the plaintext length.
	target := "../some/where/else"
	if err := os.Symlink(target, m.p("sub", "sym")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(m.p("sub", "sym")); err != nil || got != target {
		t.Fatalf("readlink %q %v", got, err)
	}
	if st, err := os.Lstat(m.p("sub", "sym")); err != nil || st.Size() != int64(len(target)) || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("lstat symlink: %v %v", st, err)
	}
	// Fifo.
	if err := unix.Mkfifo(m.p("fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(m.p("fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm() != 0o640 {
		t.Fatalf("fifo: %v %v", st.Mode(), err)
	}
	// Devices keep their numbers (the daemon runs as root here; a non-root
	// daemon gets the backing filesystem's EPERM).
	for _, dev := range []struct {
		name         string
		typ          uint32
		major, minor uint32
	}{{"chr", unix.S_IFCHR, 1, 3}, {"blk", unix.S_IFBLK, 8, 0x12345}, {"big", unix.S_IFCHR, 4095, 0xfffff}} {
		if err := unix.Mknod(m.p(dev.name), dev.typ|0o640, int(unix.Mkdev(dev.major, dev.minor))); err != nil {
			t.Fatalf("mknod %s: %v", dev.name, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(m.p(dev.name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != dev.typ|0o640 || unix.Major(st.Rdev) != dev.major || unix.Minor(st.Rdev) != dev.minor {
			t.Errorf("%s: mode %o rdev %d:%d, want %o %d:%d", dev.name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev),
				dev.typ|0o640, dev.major, dev.minor)
		}
	}
	// Unlink while open: the handle keeps working.
	f, _ := os.OpenFile(m.p("sub", "link"), os.O_RDWR, 0)
	defer f.Close()
	if err := os.Remove(m.p("sub", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 100); err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != 101 {
		t.Fatalf("fstat unlinked: %v %v", st, err)
	}
}

func TestFSRenameFlags(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("a"), []byte("A"))
	mustWrite(t, m.p("b"), []byte("B"))
	err := unix.Renameat2(unix.AT_FDCWD, m.p("a"), unix.AT_FDCWD, m.p("b"), unix.RENAME_NOREPLACE)
	wantErrno(t, err, syscall.EEXIST, "RENAME_NOREPLACE onto existing")
	if err := unix.Renameat2(unix.AT_FDCWD, m.p("a"), unix.AT_FDCWD, m.p("b"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, m.p("a"))) != "B" || string(mustRead(t, m.p("b"))) != "A" {
		t.Fatal("RENAME_EXCHANGE did not swap")
	}
	// Exchange a file and a directory with a long name.
	long := string(bytes.Repeat([]byte("x"), 200))
	if err := os.Mkdir(m.p(long), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p(long, "in"), []byte("inside"))
	if err := unix.Renameat2(unix.AT_FDCWD, m.p("a"), unix.AT_FDCWD, m.p(long), unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, m.p("a", "in"))) != "inside" || string(mustRead(t, m.p(long))) != "B" {
		t.Fatal("exchange file/dir")
	}
	if err := unix.Renameat2(unix.AT_FDCWD, m.p("b"), unix.AT_FDCWD, m.p("c"), unix.RENAME_NOREPLACE); err != nil {
		t.Fatal(err)
	}
	// Overwriting rename (the backup tools' temp-file pattern).
	mustWrite(t, m.p("tmp"), []byte("new"))
	if err := os.Rename(m.p("tmp"), m.p("c")); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, m.p("c"))) != "new" {
		t.Fatal("overwrite rename")
	}
	// A directory over an empty directory, and not over a non-empty one
	// (rename(2) directly: os.Rename refuses directory targets itself).
	os.Mkdir(m.p("empty"), 0o755)
	if err := unix.Rename(m.p("a"), m.p("empty")); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, m.p("empty", "in"))) != "inside" {
		t.Fatal("dir over empty dir")
	}
	os.Mkdir(m.p("full"), 0o755)
	mustWrite(t, m.p("full", "x"), nil)
	os.Mkdir(m.p("d"), 0o755)
	err = unix.Rename(m.p("d"), m.p("full"))
	wantErrno(t, err, syscall.ENOTEMPTY, "dir over non-empty dir")
	mustWrite(t, m.p("full", "y"), []byte("still works"))
	m.remount(mountOpts{})
	if string(mustRead(t, m.p("full", "y"))) != "still works" || string(mustRead(t, m.p("empty", "in"))) != "inside" {
		t.Fatal("after remount")
	}
}

func TestFSXattrLocksStatfsMmap(t *testing.T) {
	m := newMount(t, mountOpts{})
	p := m.p("f")
	mustWrite(t, p, make([]byte, 10000))
	if err := unix.Setxattr(p, "user.color", []byte("blue"), 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(p, "user.color", buf)
	if err != nil || string(buf[:n]) != "blue" {
		t.Fatalf("getxattr %q %v", buf[:n], err)
	}
	if n, err := unix.Getxattr(p, "user.color", nil); err != nil || n != 4 {
		t.Fatalf("getxattr size probe %d %v", n, err)
	}
	n, err = unix.Listxattr(p, buf)
	if err != nil || string(buf[:n]) != "user.color\x00" {
		t.Fatalf("listxattr %q %v", buf[:n], err)
	}
	err = unix.Setxattr(p, "user.color", []byte("red"), unix.XATTR_CREATE)
	wantErrno(t, err, syscall.EEXIST, "XATTR_CREATE on existing")
	err = unix.Setxattr(p, "trusted.x", []byte("v"), 0)
	wantErrno(t, err, syscall.EOPNOTSUPP, "set trusted.*")
	// Namespaces other than user.* are unsupported, not empty: ls -l then
	// stops asking for labels and ACLs after the first entry (fs/xattr.go).
	_, err = unix.Getxattr(p, "security.selinux", buf)
	wantErrno(t, err, syscall.EOPNOTSUPP, "get security.*")
	_, err = unix.Getxattr(p, "system.posix_acl_access", buf)
	wantErrno(t, err, syscall.EOPNOTSUPP, "get system.posix_acl_access")
	if err := unix.Removexattr(p, "user.color"); err != nil {
		t.Fatal(err)
	}
	_, err = unix.Getxattr(p, "user.color", buf)
	wantErrno(t, err, syscall.ENODATA, "get removed")

	// flock and OFD locks are handled by the kernel, across handles.
	f1, _ := os.OpenFile(p, os.O_RDWR, 0)
	defer f1.Close()
	f2, _ := os.OpenFile(p, os.O_RDWR, 0)
	defer f2.Close()
	if err := unix.Flock(int(f1.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	err = unix.Flock(int(f2.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	wantErrno(t, err, syscall.EWOULDBLOCK, "second flock")
	unix.Flock(int(f1.Fd()), unix.LOCK_UN)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 100}
	if err := unix.FcntlFlock(f1.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	lk2 := lk
	err = unix.FcntlFlock(f2.Fd(), unix.F_OFD_SETLK, &lk2)
	wantErrno(t, err, syscall.EAGAIN, "conflicting OFD lock")
	lk3 := unix.Flock_t{Type: unix.F_WRLCK, Start: 0, Len: 100}
	if err := unix.FcntlFlock(f2.Fd(), unix.F_OFD_GETLK, &lk3); err != nil || lk3.Type != unix.F_WRLCK {
		t.Fatalf("F_OFD_GETLK: %+v %v", lk3, err)
	}

	var sfs unix.Statfs_t
	if err := unix.Statfs(m.mnt, &sfs); err != nil || sfs.Blocks == 0 || sfs.Namelen != 255 {
		t.Fatalf("statfs: %+v %v", sfs, err)
	}

	// Shared writable mmap: stores reach the file through the page cache.
	// Done in a child process: a page fault on the mount blocks its thread
	// outside any syscall, and if that thread belongs to the process
	// serving the mount, a GC stop-the-world waits for it forever.
	cmd := exec.Command(os.Args[0], "-test.run=^TestFSHelperMmap$")
	cmd.Env = append(os.Environ(), "SEALFS_MMAP_HELPER="+p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmap helper: %v\n%s", err, out)
	}
	f1.Close()
	f2.Close()
	m.remount(mountOpts{})
	got := mustRead(t, p)
	if string(got[5000:5006]) != "mapped" {
		t.Fatalf("mmap write lost: %q", got[5000:5006])
	}
}

// TestFSHelperMmap is the child process of TestFSXattrLocksStatfsMmap.
func TestFSHelperMmap(t *testing.T) {
	p := os.Getenv("SEALFS_MMAP_HELPER")
	if p == "" {
		t.Skip("helper process only")
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mm, err := unix.Mmap(int(f.Fd()), 0, 10000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(mm[5000:], "mapped")
	if err := unix.Msync(mm, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	if err := unix.Munmap(mm); err != nil {
		t.Fatal(err)
	}
}

// TestFSTimesSettleAtClose: close(2) does not wait for the engine to write
// its buffered tail (FOPEN_NOFLUSH), yet the times a stat reports right
// after close are final: they do not move when the tail reaches the backing
// file at RELEASE. Each stat is forced past the kernel's attribute cache.
func TestFSTimesSettleAtClose(t *testing.T) {
	m := newMount(t, mountOpts{})
	stat := func(p string) unix.Statx_t {
		t.Helper()
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for i := range 20 {
		p := m.p(fmt.Sprintf("f%d", i))
		var keep *os.File
		if i%2 == 1 {
			// A second handle keeps the engine open past the writer's
			// close, with the tail still buffered: the stat must write it.
			mustWrite(t, p, nil)
			var err error
			if keep, err = os.Open(p); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(t, p, bytes.Repeat([]byte("x"), 100+i*5000))
		first := stat(p)
		if keep != nil {
			keep.Close()
		}
		time.Sleep(20 * time.Millisecond)
		again := stat(p)
		if first.Mtime != again.Mtime || first.Ctime != again.Ctime || first.Size != again.Size {
			t.Fatalf("%s: after close mtime %v ctime %v size %d, 20 ms later %v %v %d", p,
				first.Mtime, first.Ctime, first.Size, again.Mtime, again.Ctime, again.Size)
		}
	}
}

// TestFSKeepCacheSeesChangesUnderneath: the kernel keeps a file's pages
// across opens (FOPEN_KEEP_CACHE) only while the cipher file is as the mount
// left it. A sync client replacing the cipher file's contents in place (same
// inode, same size, mtime restored) must be visible at the next open, not the
// cached old plaintext.
func TestFSKeepCacheSeesChangesUnderneath(t *testing.T) {
	m := newMount(t, mountOpts{})
	one := bytes.Repeat([]byte("one "), 5000)
	two := bytes.Repeat([]byte("TWO!"), 5000)
	mustWrite(t, m.p("a"), one)
	mustWrite(t, m.p("b"), two)
	for range 2 { // the second read may come from the kernel's cache
		if got := mustRead(t, m.p("a")); !bytes.Equal(got, one) {
			t.Fatal("a reads wrong before the change")
		}
	}
	a, b := m.cipherOf("a"), m.cipherOf("b")
	raw, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let the ctime move on coarse clocks
	// In place: the same inode.
	if err := os.WriteFile(a, raw, 0); err != nil {
		t.Fatal(err)
	}
	// Same size, and the old mtime restored (rsync -t, many sync clients):
	// the kernel's own check (mtime and size, AUTO_INVAL_DATA) sees nothing;
	// only the ctime in sealfs' stamp does.
	if err := os.Chtimes(a, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the attribute timeout
	if got := mustRead(t, m.p("a")); !bytes.Equal(got, two) {
		t.Fatalf("after the cipher file changed underneath, a reads %q…, want %q…", got[:8], two[:8])
	}
}

// TestFSListTwice: a directory listed again right after a listing gets its
// entries without attributes (the kernel still has them; fs/dir_stream.go).
// Names, types and every stat field must come out the same either way, and
// a change made through the mount in between must show.
func TestFSListTwice(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		p := m.p("d", fmt.Sprintf("f%02d", i))
		mustWrite(t, p, bytes.Repeat([]byte("x"), i*100))
		if err := os.Chmod(p, os.FileMode(0o600+i%8)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(m.p("d", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f01", m.p("d", "link")); err != nil {
		t.Fatal(err)
	}
	list := func() map[string]string {
		t.Helper()
		ents, err := os.ReadDir(m.p("d"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			out[e.Name()] = fmt.Sprintf("%v %v %d %d %d %d", e.Type(), fi.Mode(), fi.Size(), st.Ino, st.Nlink, fi.ModTime().UnixNano())
		}
		return out
	}
	m.remount(mountOpts{})
	first, second := list(), list()
	if len(first) != 42 {
		t.Fatalf("first listing has %d entries, want 42", len(first))
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("a second listing differs:\n%v\n%v", first, second)
	}
	if err := os.Chmod(m.p("d", "f03"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.p("d", "f04"), []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	third := list()
	if !strings.Contains(third["f03"], "-rw-r-----") {
		t.Errorf("chmod between listings not seen: %s", third["f03"])
	}
	if !strings.Contains(third["f04"], " 5 ") {
		t.Errorf("rewrite between listings not seen: %s", third["f04"])
	}
}

// TestFSReopenDeletedOpenFile: a file unlinked while open can still be
// opened again and truncated through /proc/PID/fd, as on ext4 (the
// permission check then goes through the engine's fd; fs/access.go).
func TestFSReopenDeletedOpenFile(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("gone"), []byte("still here"))
	f, err := os.Open(m.p("gone"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Remove(m.p("gone")); err != nil {
		t.Fatal(err)
	}
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if got, err := os.ReadFile(proc); err != nil || string(got) != "still here" {
		t.Fatalf("reopening the deleted file: %q, %v", got, err)
	}
	if err := os.Truncate(proc, 5); err != nil {
		t.Fatalf("truncate through /proc: %v", err)
	}
	if got, err := os.ReadFile(proc); err != nil || string(got) != "still" {
		t.Fatalf("after truncate: %q, %v", got, err)
	}
}
