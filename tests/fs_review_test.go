package tests

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// A new file is never stored under a stale listing's name for a conflict
// copy that has gone meanwhile: it gets its own encryption, and survives a
// remount.
func TestFSNewNameNotStoredUnderGoneCopy(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("report.pdf"), []byte("v1"))
	c := m.cipherOf("report.pdf")
	copyCipher(t, c, c+" (1)")
	time.Sleep(1100 * time.Millisecond)
	if got := strings.Join(listNames(t, m.mnt), ","); got != "report (conflict 1).pdf,report.pdf" {
		t.Fatalf("listing %q", got)
	}
	if err := os.Remove(c + " (1)"); err != nil { // the sync service drops the copy
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	mustWrite(t, m.p("report (conflict 1).pdf"), []byte("a file of the user's own"))
	m.remount(mountOpts{})
	if b := mustRead(t, m.p("report (conflict 1).pdf")); string(b) != "a file of the user's own" {
		t.Fatalf("after remount: %q", b)
	}
}

// Removing a long-named original keeps its side file when a conflict copy
// arrived after the last listing: the copy stays named.
func TestFSLongSideFileKeptForCopyAfterListing(t *testing.T) {
	m := newMount(t, mountOpts{})
	long := strings.Repeat("long name ", 20) + ".txt"
	mustWrite(t, m.p(long), []byte("A"))
	listNames(t, m.mnt)
	lc := m.cipherOf(long)
	dir, base := filepath.Split(lc)
	copyCipher(t, lc, filepath.Join(dir, "sealfs.ln.sync-conflict-20261202-130124-CAVCEQA."+strings.TrimPrefix(base, "sealfs.ln.")))
	if err := os.Remove(m.p(long)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	want := strings.Repeat("long name ", 20) + " (conflict 2026-12-02 130124 CAVCEQA).txt"
	if got := strings.Join(listNames(t, m.mnt), ","); got != want {
		t.Fatalf("listing %q, want the copy", got)
	}
	if _, err := os.Stat(lc + crypto.LongNameSuffix); err != nil {
		t.Fatalf("side file gone: %v", err)
	}
}

// A directory whose cipher entry became a symlink answers ELOOP, not some
// other errno, and the log names it.
func TestFSWrongTypeErrno(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("d1"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("d1", "old"), []byte("x"))
	dc := m.cipherOf("d1")
	m.remount(mountOpts{})
	dfd, err := unix.Open(m.p("d1"), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := os.Rename(dc, dc+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), dc); err != nil {
		t.Fatal(err)
	}
	_, err = unix.Openat(dfd, "old", unix.O_RDONLY, 0)
	wantErrno(t, err, syscall.ELOOP, "open below a directory replaced by a symlink")
	wantErrno(t, unix.Mkdirat(dfd, "sub", 0o755), syscall.ELOOP, "mkdir below it")
	if !strings.Contains(m.logs.String(), "found a symlink") && !strings.Contains(m.logs.String(), "found=symlink") {
		t.Errorf("not logged:\n%s", m.logs.String())
	}
}

// A directory without its ID file cannot be renamed (its entries live on
// the ID derived from its name); a failed rmdir of a non-empty directory
// leaves its ID file untouched.
func TestFSDirIDKeptByRenameAndRmdir(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("d", "f"), []byte("x"))
	dc := m.cipherOf("d")
	var before unix.Stat_t
	if err := unix.Stat(filepath.Join(dc, crypto.DirIDFile), &before); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, unix.Rmdir(m.p("d")), syscall.ENOTEMPTY, "rmdir of a non-empty directory")
	var after unix.Stat_t
	if err := unix.Stat(filepath.Join(dc, crypto.DirIDFile), &after); err != nil || after.Ino != before.Ino || after.Ctim != before.Ctim {
		t.Errorf("the failed rmdir touched the ID file: %v", err)
	}
	m.remount(mountOpts{})
	if err := os.Remove(filepath.Join(dc, crypto.DirIDFile)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := strings.Join(listNames(t, m.p("d")), ","); got != "f" {
		t.Fatalf("d lists %q", got)
	}
	err := os.Rename(m.p("d"), m.p("e"))
	if !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("rename of a directory without its ID file: %v, want EAGAIN", err)
	}
	if got := strings.Join(listNames(t, m.p("d")), ","); got != "f" {
		t.Errorf("after the refused rename d lists %q", got)
	}
}

// A 0-byte cipher file (a sync placeholder) can be overwritten through the
// mount: O_TRUNC starts it afresh.
func TestFSPlaceholderOverwritten(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("f"), []byte("old"))
	c := m.cipherOf("f")
	m.unmount()
	if err := os.Truncate(c, 0); err != nil {
		t.Fatal(err)
	}
	m.mount()
	if _, err := os.ReadFile(m.p("f")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a placeholder: %v, want EIO", err)
	}
	mustWrite(t, m.p("f"), []byte("new content"))
	if b := mustRead(t, m.p("f")); string(b) != "new content" {
		t.Fatalf("after overwriting: %q", b)
	}
}

// A directory replaced underneath by another of the same name: the kernel's
// old node acts on nothing (ENOENT), never on the new directory.
func TestFSReplacedDirNotActedOn(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	dc := m.cipherOf("d")
	m.remount(mountOpts{})
	dfd, err := unix.Open(m.p("d"), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	// Replace it by a copy (another inode, same name and ID file).
	idb, _ := os.ReadFile(filepath.Join(dc, crypto.DirIDFile))
	if err := os.Rename(dc, dc+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dc, crypto.DirIDFile), idb, 0o444); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Openat(dfd, "new", unix.O_CREAT|unix.O_WRONLY, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	wantErrno(t, err, syscall.ENOENT, "create in a replaced directory through its old node")
	if ents, _ := os.ReadDir(dc); len(ents) != 1 {
		t.Errorf("the new directory got entries: %v", ents)
	}
}
