package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// The realistic tree the backup tests protect: Go's source tree plus a
// generated tree of the edge cases backup tools and encrypted file systems
// get wrong.

const goSrc = "/usr/local/go/src"

// sparseSize is the multi-GiB sparse file of the edge tree.
const sparseSize = 2<<30 + 12345

// buildEdgeTree creates the edge cases under dir and returns dir.
func buildEdgeTree(t *testing.T, dir string) string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	file := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, 0o600))
		must(os.Chmod(p, mode))
		return p
	}
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31 + i>>8)
		}
		return b
	}
	file("empty", nil, 0o644)
	file("blocks/one-block", pattern(crypto.BlockSize), 0o644)
	file("blocks/one-block-minus-1", pattern(crypto.BlockSize-1), 0o644)
	file("blocks/one-block-plus-1", pattern(crypto.BlockSize+1), 0o644)
	file("blocks/three-blocks-plus-7", pattern(3*crypto.BlockSize+7), 0o640)

	// A multi-GiB sparse file with data at the start, the middle and the end.
	sp, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(err)
	for _, off := range []int64{0, 1 << 30, sparseSize - 100} {
		_, err := sp.WriteAt([]byte(fmt.Sprintf("data at %d", off)), off)
		must(err)
	}
	must(sp.Truncate(sparseSize))
	must(sp.Close())

	// 255-byte names, Unicode in both normal forms (two distinct files).
	long := strings.Repeat("n", 251) + ".txt"
	file(long, []byte("longest name"), 0o644)
	must(os.MkdirAll(filepath.Join(dir, strings.Repeat("d", 255)), 0o755))
	file(filepath.Join(strings.Repeat("d", 255), "inside"), []byte("in a long dir"), 0o644)
	file("unicode/caf\u00e9-nfc", []byte("NFC"), 0o644)
	file("unicode/cafe\u0301-nfd", []byte("NFD"), 0o644)
	file("unicode/日本語 ファイル.txt", []byte("CJK"), 0o644)

	// Symlinks: relative, absolute, dangling, to a directory.
	must(os.Symlink("../empty", filepath.Join(dir, "blocks", "rel-link")))
	must(os.Symlink("/usr/local/go/VERSION", filepath.Join(dir, "abs-link")))
	must(os.Symlink("does/not/exist", filepath.Join(dir, "dangling")))
	must(os.Symlink("blocks", filepath.Join(dir, "dir-link")))

	// Hard links: three names for one file, across directories.
	hl := file("links/original", []byte("hard linked"), 0o644)
	must(os.MkdirAll(filepath.Join(dir, "links/sub"), 0o755))
	must(os.Link(hl, filepath.Join(dir, "links/second")))
	must(os.Link(hl, filepath.Join(dir, "links/sub/third")))

	// Unusual modes and owners.
	file("modes/none", []byte("0000"), 0)
	file("modes/setuid", []byte("4755"), 0o4755)
	file("modes/readonly", []byte("0444"), 0o444)
	must(os.Mkdir(filepath.Join(dir, "modes/sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "modes/sticky"), 0o1777|os.ModeSticky))
	must(os.Mkdir(filepath.Join(dir, "modes/setgid-dir"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "modes/setgid-dir"), 0o2755))
	owned := file("modes/owned", []byte("uid 1234"), 0o640)
	must(os.Lchown(owned, 1234, 5678))
	must(unix.Mkfifo(filepath.Join(dir, "modes/fifo"), 0o600))

	// Extended attributes on a file and a directory.
	x := file("xattrs/file", []byte("has xattrs"), 0o644)
	must(unix.Setxattr(x, "user.comment", []byte("a comment"), 0))
	must(unix.Setxattr(x, "user.binary", []byte{0, 1, 2, 255}, 0))
	must(unix.Setxattr(filepath.Join(dir, "xattrs"), "user.dir", []byte("on a dir"), 0))

	// Nanosecond times on everything, directories last (children bump them).
	i := int64(0)
	var dirs []string
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		i++
		return setTimes(p, 1700000000+i*1000, 123456789+i)
	}))
	for j := len(dirs) - 1; j >= 0; j-- {
		must(setTimes(dirs[j], 1600000000+int64(j), 987654321-int64(j)))
	}
	return dir
}

func setTimes(p string, sec, nsec int64) error {
	ts := []unix.Timespec{{Sec: sec, Nsec: nsec}, {Sec: sec, Nsec: nsec}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// compareOpts lists what a tool is known not to preserve.
type compareOpts struct {
	symlinkTimes bool // compare symlink mtimes too
}

// compareTrees compares src and dst byte for byte and metadata for
// metadata: type, mode bits, owner, size, content, mtime (ns), user xattrs,
// symlink targets and hard-link structure.
func compareTrees(t *testing.T, src, dst string, o compareOpts) {
	t.Helper()
	links := map[uint64]uint64{} // src inode → dst inode
	n, bad := 0, 0
	fail := func(format string, args ...any) {
		t.Helper()
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			return err
		}
		if err := unix.Lstat(q, &b); err != nil {
			fail("%s: missing in the restore: %v", rel, err)
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		n++
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid {
			fail("%s: mode/owner %o %d:%d, restored %o %d:%d", rel, a.Mode, a.Uid, a.Gid, b.Mode, b.Uid, b.Gid)
		}
		isLink := a.Mode&unix.S_IFMT == unix.S_IFLNK
		if (!isLink || o.symlinkTimes) && a.Mtim != b.Mtim {
			fail("%s: mtime %d.%09d, restored %d.%09d", rel, a.Mtim.Sec, a.Mtim.Nsec, b.Mtim.Sec, b.Mtim.Nsec)
		}
		switch a.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if a.Nlink > 1 {
				if prev, ok := links[a.Ino]; ok && prev != b.Ino {
					fail("%s: hard link broken in the restore", rel)
				}
				links[a.Ino] = b.Ino
				if b.Nlink != a.Nlink {
					fail("%s: link count %d, restored %d", rel, a.Nlink, b.Nlink)
				}
			}
			if a.Size != b.Size {
				fail("%s: size %d, restored %d", rel, a.Size, b.Size)
			} else if !sameContent(t, p, q) {
				fail("%s: content differs", rel)
			}
		case unix.S_IFLNK:
			ta, _ := os.Readlink(p)
			tb, _ := os.Readlink(q)
			if ta != tb {
				fail("%s: symlink target %q, restored %q", rel, ta, tb)
			}
		}
		if xa, xb := userXattrs(p), userXattrs(q); xa != xb {
			fail("%s: xattrs %q, restored %q", rel, xa, xb)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad > 20 {
		t.Errorf("... %d differences in all", bad)
	}
	t.Logf("compared %d entries of %s", n, src)
}

func sameContent(t *testing.T, a, b string) bool {
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Errorf("%s: %v", b, err)
		return false
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == nil) == (eb == nil)
		}
	}
}

// userXattrs renders the user.* attributes of p, sorted, for comparison.
func userXattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return ""
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			out = append(out, name+"=<"+err.Error()+">")
			continue
		}
		out = append(out, fmt.Sprintf("%s=%x", name, v[:m]))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// fileState is what a sync client looks at: size, mtime and content hash.
type fileState struct {
	size  int64
	mtime syscall.Timespec
	sum   [32]byte
}

// snapshotByInode records every regular file under dir by inode. sealfs
// gives each plaintext file its cipher file's inode number, which is how the
// incremental test pairs a cipher file with the plaintext file behind it.
func snapshotByInode(t *testing.T, dir string, hash bool) map[uint64]fileState {
	t.Helper()
	out := map[uint64]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		s := fileState{size: st.Size, mtime: st.Mtim}
		if hash {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			copy(s.sum[:], h.Sum(nil))
		}
		out[st.Ino] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
