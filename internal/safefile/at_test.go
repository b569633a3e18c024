package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostileDir makes a directory holding one entry of each type a sync peer
// (or a local user) can plant, plus a canary file outside it that symlinks
// point at.
func hostileDir(t *testing.T) (dirfd int, canary string) {
	t.Helper()
	base := t.TempDir()
	d := filepath.Join(base, "vault")
	canary = filepath.Join(base, "canary")
	must(t, os.Mkdir(d, 0o755))
	must(t, os.WriteFile(canary, []byte("canary"), 0o600))
	must(t, os.Mkdir(filepath.Join(d, "dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(d, "file"), []byte("data"), 0o644))
	must(t, os.Symlink(canary, filepath.Join(d, "link")))
	must(t, os.Symlink(base, filepath.Join(d, "dirlink")))
	must(t, syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644))
	must(t, unix.Mknod(filepath.Join(d, "sock"), unix.S_IFSOCK|0o644, 0))
	if os.Geteuid() == 0 {
		must(t, unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd, canary
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantType checks that err is a TypeError for found with the given errno.
func wantType(t *testing.T, what string, err error, found uint32, errno syscall.Errno) {
	t.Helper()
	var te *TypeError
	if !errors.As(err, &te) || te.Found != found || te.Errno() != errno {
		t.Errorf("%s: got %v, want a TypeError finding a %s (%v)", what, err, TypeName(found), errno)
	}
}

// noHang fails the test if fn does not return within a few seconds (a
// FIFO opened for reading without O_NONBLOCK blocks for good).
func noHang(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s hung", what)
	}
}

func TestOpenDirRefusesEverythingButDirectories(t *testing.T) {
	dfd, _ := hostileDir(t)
	fd, err := OpenDir(dfd, "dir")
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Fstat(fd, &st))
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("OpenDir(dir) gave mode %o", st.Mode)
	}
	unix.Close(fd)
	_, err = OpenDir(dfd, "dirlink")
	wantType(t, "symlink to a directory", err, unix.S_IFLNK, syscall.ELOOP)
	_, err = OpenDir(dfd, "fifo")
	wantType(t, "fifo", err, unix.S_IFIFO, syscall.EIO)
	_, err = OpenDir(dfd, "file")
	wantType(t, "regular file", err, unix.S_IFREG, syscall.EIO)
	if _, err := OpenDir(dfd, "missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	noHang(t, "OpenDirRead of a FIFO", func() {
		_, err = OpenDirRead(dfd, "fifo")
		wantType(t, "OpenDirRead fifo", err, unix.S_IFIFO, syscall.EIO)
	})
	_, err = OpenDirRead(dfd, "dirlink")
	wantType(t, "OpenDirRead symlink", err, unix.S_IFLNK, syscall.ELOOP)
	rfd, err := OpenDirRead(dfd, "")
	must(t, err)
	must(t, unix.Fsync(rfd))
	unix.Close(rfd)
}

func TestOpenFileOpensOnlyRegularFiles(t *testing.T) {
	dfd, canary := hostileDir(t)
	fd, err := OpenFile(dfd, "file", unix.O_RDWR)
	must(t, err)
	buf := make([]byte, 8)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil || string(buf[:n]) != "data" {
		t.Errorf("read %q, %v", buf[:n], err)
	}
	unix.Close(fd)
	noHang(t, "OpenFile of a FIFO", func() {
		_, err := OpenFile(dfd, "fifo", unix.O_RDONLY)
		wantType(t, "fifo", err, unix.S_IFIFO, syscall.EIO)
	})
	_, err = OpenFile(dfd, "link", unix.O_RDWR)
	wantType(t, "symlink to a file outside", err, unix.S_IFLNK, syscall.ELOOP)
	_, err = OpenFile(dfd, "dir", unix.O_RDONLY)
	wantType(t, "directory", err, unix.S_IFDIR, syscall.EIO)
	if os.Geteuid() == 0 {
		_, err = OpenFile(dfd, "null", unix.O_RDWR)
		wantType(t, "character device", err, unix.S_IFCHR, syscall.EIO)
	}
	if _, err := OpenFile(dfd, "file", unix.O_RDWR|unix.O_TRUNC); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("O_TRUNC accepted: %v", err)
	}
	if b, _ := os.ReadFile(canary); string(b) != "canary" {
		t.Errorf("canary changed: %q", b)
	}
}

func TestReadFileAt(t *testing.T) {
	dfd, _ := hostileDir(t)
	if b, err := ReadFileAt(dfd, "file", 4); err != nil || string(b) != "data" {
		t.Errorf("file: %q %v", b, err)
	}
	if _, err := ReadFileAt(dfd, "file", 3); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	_, err := ReadFileAt(dfd, "link", 100)
	wantType(t, "symlink", err, unix.S_IFLNK, syscall.ELOOP)
	noHang(t, "ReadFileAt of a FIFO", func() {
		_, err := ReadFileAt(dfd, "fifo", 100)
		wantType(t, "fifo", err, unix.S_IFIFO, syscall.EIO)
	})
	_, err = ReadFileAt(dfd, "sock", 100)
	wantType(t, "socket", err, unix.S_IFSOCK, syscall.EIO)
	if !errors.Is(err, ErrNotRegular) {
		t.Errorf("a TypeError for a file should match ErrNotRegular: %v", err)
	}
	if os.Geteuid() == 0 {
		// /dev/null's numbers: refused before any open.
		_, err = ReadFileAt(dfd, "null", 100)
		wantType(t, "character device", err, unix.S_IFCHR, syscall.EIO)
	}
}

func TestChmodNeverFollows(t *testing.T) {
	dfd, canary := hostileDir(t)
	must(t, Chmod(dfd, "file", 0o600))
	var st unix.Stat_t
	must(t, unix.Fstatat(dfd, "file", &st, 0))
	if st.Mode&0o7777 != 0o600 {
		t.Errorf("file mode %o", st.Mode&0o7777)
	}
	if err := Chmod(dfd, "link", 0o777); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("chmod of a symlink: %v", err)
	}
	fi, err := os.Stat(canary)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("canary mode changed to %v", fi.Mode().Perm())
	}
}

func TestComponent(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "/", "a\x00b", "../x"} {
		if Component(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"a", "sealfs.dirid", "...", "a b", ".stfolder"} {
		if err := Component(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	dfd, _ := hostileDir(t)
	if _, err := OpenDir(dfd, "../vault"); !errors.Is(err, ErrBadComponent) {
		t.Errorf("OpenDir of a two-component path: %v", err)
	}
}

func TestLstatAndReadlinkAtNeverFollow(t *testing.T) {
	dfd, canary := hostileDir(t)
	st, err := Lstat(dfd, "link")
	must(t, err)
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("Lstat(link) mode %o", st.Mode)
	}
	if got, err := ReadlinkAt(dfd, "link"); err != nil || got != canary {
		t.Errorf("ReadlinkAt(link) = %q, %v", got, err)
	}
	_, err = ReadlinkAt(dfd, "file")
	wantType(t, "ReadlinkAt of a regular file", err, unix.S_IFREG, syscall.EIO)
	if !errors.Is(err, ErrNotSymlink) {
		t.Errorf("a TypeError for a symlink should match ErrNotSymlink: %v", err)
	}
	noHang(t, "ReadlinkAt of a FIFO", func() {
		_, err := ReadlinkAt(dfd, "fifo")
		wantType(t, "fifo", err, unix.S_IFIFO, syscall.EIO)
	})
	if _, err := ReadlinkAt(dfd, "missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := Lstat(dfd, "dir/file"); !errors.Is(err, ErrBadComponent) {
		t.Errorf("Lstat of a two-component path: %v", err)
	}
	// A target as long as Linux allows comes back whole.
	long := strings.Repeat("x/", unix.PathMax/2-1) + "y"
	must(t, unix.Symlinkat(long, dfd, "longlink"))
	if got, err := ReadlinkAt(dfd, "longlink"); err != nil || got != long {
		t.Errorf("long target: %d bytes, %v; want %d", len(got), err, len(long))
	}
}

func TestReadDir(t *testing.T) {
	dfd, _ := hostileDir(t)
	rfd, err := OpenDirRead(dfd, "")
	must(t, err)
	defer unix.Close(rfd)
	// Enough entries to need several getdents calls.
	for i := range 2000 {
		must(t, unix.Mkdirat(dfd, fmt.Sprintf("d%04d-%s", i, strings.Repeat("n", 40)), 0o700))
	}
	ents, err := ReadDir(rfd)
	must(t, err)
	want := map[string]uint32{"dir": unix.S_IFDIR, "file": unix.S_IFREG, "link": unix.S_IFLNK,
		"dirlink": unix.S_IFLNK, "fifo": unix.S_IFIFO, "sock": unix.S_IFSOCK}
	if os.Geteuid() == 0 {
		want["null"] = unix.S_IFCHR
	}
	seen := map[string]bool{}
	for _, e := range ents {
		if seen[e.Name] {
			t.Errorf("%q listed twice", e.Name)
		}
		seen[e.Name] = true
		if e.Name == "." || e.Name == ".." {
			t.Errorf("%q listed", e.Name)
		}
		var st unix.Stat_t
		must(t, unix.Fstatat(dfd, e.Name, &st, unix.AT_SYMLINK_NOFOLLOW))
		if e.Ino != st.Ino || (e.Type != 0 && e.Type != st.Mode&unix.S_IFMT) {
			t.Errorf("%s: ino %d type %o, lstat says %d %o", e.Name, e.Ino, e.Type, st.Ino, st.Mode&unix.S_IFMT)
		}
		if typ, ok := want[e.Name]; ok && e.Type != typ {
			t.Errorf("%s: type %o, want %o", e.Name, e.Type, typ)
		}
	}
	if len(ents) != 2000+len(want) {
		t.Errorf("listed %d entries, want %d", len(ents), 2000+len(want))
	}
	// At the end of the directory there is nothing more.
	if more, err := ReadDir(rfd); err != nil || len(more) != 0 {
		t.Errorf("second ReadDir: %d entries, %v", len(more), err)
	}
	pfd, err := OpenDir(dfd, "dir")
	must(t, err)
	defer unix.Close(pfd)
	if _, err := ReadDir(pfd); err == nil {
		t.Error("ReadDir of an O_PATH handle succeeded")
	}
}

func TestXattrsByFd(t *testing.T) {
	dfd, canary := hostileDir(t)
	big := []byte(strings.Repeat("v", 3000)) // past the first buffer
	if err := unix.Setxattr(canary, "user.canary", []byte("c"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	fd, err := OpenFile(dfd, "file", unix.O_RDONLY)
	must(t, err)
	defer unix.Close(fd)
	must(t, unix.Fsetxattr(fd, "user.small", []byte("s"), 0))
	must(t, unix.Fsetxattr(fd, "user.big", big, 0))
	pfd, err := unix.Openat(dfd, "file", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(pfd)
	for what, f := range map[string]int{"open file": fd, "O_PATH handle": pfd} {
		names, err := Listxattr(f)
		must(t, err)
		got := map[string]bool{}
		for _, n := range names {
			got[n] = true
		}
		if !got["user.small"] || !got["user.big"] || got["user.canary"] {
			t.Errorf("%s: Listxattr = %v", what, names)
		}
		if v, err := Getxattr(f, "user.big"); err != nil || string(v) != string(big) {
			t.Errorf("%s: Getxattr(user.big) = %d bytes, %v", what, len(v), err)
		}
		if v, err := Getxattr(f, "user.small"); err != nil || string(v) != "s" {
			t.Errorf("%s: Getxattr(user.small) = %q, %v", what, v, err)
		}
		if _, err := Getxattr(f, "user.none"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s: missing attribute: %v", what, err)
		}
	}
	// The handle of a symlink to the canary never reaches the canary.
	lfd, err := unix.Openat(dfd, "link", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(lfd)
	_, err = Listxattr(lfd)
	wantType(t, "Listxattr of a symlink handle", err, unix.S_IFLNK, syscall.ELOOP)
	_, err = Getxattr(lfd, "user.canary")
	wantType(t, "Getxattr of a symlink handle", err, unix.S_IFLNK, syscall.ELOOP)
}
