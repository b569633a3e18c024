package offline

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// DEST may already hold symlinks where the vault puts a directory, a file,
// a symlink or a FIFO — left by an earlier extraction or planted — pointing
// at a canary tree: extract must refuse each (KindDestination), follow
// none, and leave the canary exactly as it was.
func TestExtractNeverFollowsSymlinksInDest(t *testing.T) {
	base := t.TempDir()
	canary := filepath.Join(base, "canary")
	if err := os.MkdirAll(filepath.Join(canary, "dir"), 0o751); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"file", "dir/file"} {
		if err := os.WriteFile(filepath.Join(canary, f), []byte("canary"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	v := newTestVault(t, filepath.Join(base, "vault"), nil)
	v.mkdir("a", 0o777)
	v.file("a/f", []byte("vault a/f"), 0o666)
	v.mkdir("a/sub", 0o777)
	v.file("a/sub/g", []byte("vault a/sub/g"), 0o666)
	v.file("top", []byte("vault top"), 0o4777)
	v.symlink("link", "../anything")
	v.fifo("pipe")
	v.mkdir("b", 0o700)
	v.file("b/x", []byte("vault b/x"), 0o600)

	dest := filepath.Join(base, "dest")
	for p, target := range map[string]string{
		"a/sub": filepath.Join(canary, "dir"),         // a directory of the vault, one level down
		"a/f":   filepath.Join(canary, "file"),        // a file
		"top":   filepath.Join(canary, "dir", "file"), // a setuid file: chmod must not pass through
		"link":  filepath.Join(canary, "dir"),         // a symlink
		"pipe":  filepath.Join(canary, "file"),        // a FIFO
		"b":     filepath.Join(canary, "dir"),         // a directory at the top
		"b.x":   filepath.Join(canary, "nonexistent"), // dangling, not in the vault's way
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dest, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dest, p)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, canary)
	var r *Report
	within(t, "extract", 20*time.Second, func() {
		var err error
		if r, err = Extract(ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: dest}); err != nil {
			t.Error(err)
		}
	})
	for _, p := range []string{"a/sub", "a/f", "top", "link", "pipe", "b"} {
		wantProblem(t, r.Problems, KindDestination, p)
	}
	wantUnchanged(t, canary, before)
	if _, err := os.Lstat(filepath.Join(canary, "nonexistent")); err == nil {
		t.Error("a dangling symlink in DEST was followed to create its target")
	}
	// The rest was extracted, metadata included.
	fi, err := os.Stat(filepath.Join(dest, "a"))
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("DEST/a: %v %v, want mode 0777", fi, err)
	}

	// Extracting the same vault again: everything is in the way now,
	// including the symlinks extract itself made; nothing moves.
	destSnap := snapshot(t, dest)
	r, err = Extract(ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, r.Problems, KindDestination, "link")
	wantUnchanged(t, canary, before)
	for p, s := range snapshot(t, dest) {
		if destSnap[p] != s && p != dest && !strings.HasSuffix(p, "/a") {
			t.Errorf("a second extraction changed %s:\n %s\n %s", p, destSnap[p], s)
		}
	}
}

// A second vault extracted into the same DEST finds the first vault's
// symlinks where its directory and file go (the two trees share plaintext
// names): it must not write through them.
func TestExtractIntoEarlierExtraction(t *testing.T) {
	base := t.TempDir()
	canary := filepath.Join(base, "canary")
	if err := os.MkdirAll(canary, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(canary, "file"), []byte("canary"), 0o640); err != nil {
		t.Fatal(err)
	}
	first := newTestVault(t, filepath.Join(base, "v1"), nil)
	first.symlink("x", canary)
	first.symlink("y", filepath.Join(canary, "file"))
	second := newTestVault(t, filepath.Join(base, "v2"), nil)
	second.mkdir("x", 0o777)
	second.file("x/new", []byte("new"), 0o666)
	second.file("y", []byte("vault y"), 0o666)
	before := snapshot(t, canary)
	dest := filepath.Join(base, "dest")
	if r, err := Extract(ExtractOptions{Keys: first.keys, CipherDir: first.dir, Dest: dest}); err != nil || !r.OK() {
		t.Fatalf("first vault: %v %v", err, r.Problems)
	}
	r, err := Extract(ExtractOptions{Keys: second.keys, CipherDir: second.dir, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, r.Problems, KindDestination, "x")
	wantProblem(t, r.Problems, KindDestination, "y")
	wantUnchanged(t, canary, before)
	// And the same through a PATH argument.
	r, err = Extract(ExtractOptions{Keys: second.keys, CipherDir: second.dir, Dest: dest, Path: "x/new"})
	if err == nil && r.OK() {
		t.Error("extracting x/new through DEST's symlink x reported nothing")
	}
	wantUnchanged(t, canary, before)
}

// Extract restores what the vault holds: contents, modes (setuid too),
// nanosecond times, user xattrs, symlinks, FIFOs, sockets, device nodes
// (as root), and hard links — also into a directory whose mode denies its
// owner search permission, which is applied only at the end.
func TestExtractRestoresEverything(t *testing.T) {
	v := newTestVault(t, "", nil)
	asRoot := os.Geteuid() == 0
	v.mkdir("d", 0o750)
	v.mkdir("d/locked", 0o750) // 0o600 below, once filled
	v.file("d/locked/f", []byte("hard-linked"), 0o640)
	v.must(os.Link(v.cipher("d/locked/f"), v.cipher("d/f-link")))
	v.must(os.Link(v.cipher("d/locked/f"), v.cipher("z-link")))
	v.file("d/suid", []byte("#!/bin/sh\n"), 0o4755)
	v.symlink("d/sym", "locked/f")
	v.fifo("d/pipe")
	v.socket("d/sock")
	if asRoot {
		v.must(unix.Mknod(v.cipher("d/null"), unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3))))
	}
	v.xattr("d/locked/f", "user.note", []byte("file attr"))
	v.xattr("d", "user.note", []byte("dir attr"))
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	for _, p := range []string{"d/locked/f", "d/locked", "d/suid", "d/pipe", "d"} {
		v.must(os.Chtimes(v.cipher(p), mtime, mtime))
	}
	v.must(unix.Lutimes(v.cipher("d/sym"), []unix.Timeval{unix.NsecToTimeval(mtime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())}))
	if asRoot {
		// Only root can read a cipher directory without search
		// permission (as the mount would need to).
		locked := v.cipher("d/locked")
		v.must(os.Chmod(locked, 0o600))
		t.Cleanup(func() { _ = os.Chmod(locked, 0o700) })
	}

	dest := filepath.Join(t.TempDir(), "new", "dest") // created, parents too
	r, err := Extract(ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: dest})
	if err != nil || !r.OK() {
		t.Fatalf("extract: %v\n%s", err, problemList(r.Problems))
	}
	lstat := func(p string) unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, p), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	cstat := func(p string) unix.Stat_t {
		var st unix.Stat_t
		v.must(unix.Lstat(v.cipher(p), &st))
		return st
	}
	for _, p := range []string{"d", "d/locked", "d/locked/f", "d/suid", "d/pipe", "d/sock", "d/sym"} {
		got, want := lstat(p), cstat(p)
		if got.Mode != want.Mode {
			t.Errorf("%s: mode %o, want %o", p, got.Mode, want.Mode)
		}
		if got.Mtim != want.Mtim {
			t.Errorf("%s: mtime %v, want %v", p, got.Mtim, want.Mtim)
		}
		if asRoot && (got.Uid != want.Uid || got.Gid != want.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, got.Uid, got.Gid, want.Uid, want.Gid)
		}
	}
	if asRoot {
		if st := lstat("d/null"); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("d/null: mode %o rdev %x, want the character device 1:3", st.Mode, st.Rdev)
		}
	}
	f, l1, l2 := lstat("d/locked/f"), lstat("d/f-link"), lstat("z-link")
	if f.Ino != l1.Ino || f.Ino != l2.Ino || f.Nlink != 3 {
		t.Errorf("hard links not reproduced: inodes %d %d %d, nlink %d", f.Ino, l1.Ino, l2.Ino, f.Nlink)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "z-link")); string(b) != "hard-linked" {
		t.Errorf("z-link holds %q", b)
	}
	if tgt, _ := os.Readlink(filepath.Join(dest, "d/sym")); tgt != "locked/f" {
		t.Errorf("d/sym → %q", tgt)
	}
	for p, want := range map[string]string{"d/locked/f": "file attr", "d": "dir attr"} {
		buf := make([]byte, 64)
		n, err := unix.Getxattr(filepath.Join(dest, p), "user.note", buf)
		if err != nil || !bytes.Equal(buf[:n], []byte(want)) {
			t.Errorf("%s: user.note = %q, %v; want %q", p, buf[:max(n, 0)], err, want)
		}
	}
	if r.Files != 2 || r.Dirs != 2 || r.Symlinks != 1 || (asRoot && r.Other != 3) || (!asRoot && r.Other != 2) {
		// Other: the FIFO, the socket and, as root, the device.
		t.Errorf("counted %d files, %d dirs, %d symlinks, %d other", r.Files, r.Dirs, r.Symlinks, r.Other)
	}

}

// Without root a device node is reported, naming the device, not skipped
// in silence (mknod would fail with EPERM).
func TestExtractDeviceWithoutRoot(t *testing.T) {
	v := newTestVault(t, "", nil)
	dest := t.TempDir()
	fd, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	x := &extractor{o: ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: dest}, r: &Report{}, dest: fd, root: false}
	e := &Entry{CipherPath: v.dir + "/X", PlainPath: "dev", Stat: unix.Stat_t{Mode: unix.S_IFBLK | 0o660, Rdev: unix.Mkdev(8, 1)}}
	err = x.node(e, fd, "dev")
	if err == nil || classify(err) != KindDestination || !strings.Contains(err.Error(), "block device 8:1") ||
		!strings.Contains(err.Error(), "needs root") {
		t.Errorf("block device without root: %v (kind %s)", err, classify(err))
	}
	if _, err := os.Lstat(filepath.Join(dest, "dev")); err == nil {
		t.Error("something was made for the device")
	}
}
