package tests

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFSInodeStability: inode numbers come from the backing files, so they
// survive remounts (backup tools detect changes with them) and hard links
// share one.
func TestFSInodeStability(t *testing.T) {
	m := newMount(t, mountOpts{})
	os.MkdirAll(m.p("d", "e"), 0o755)
	mustWrite(t, m.p("d", "f"), []byte("x"))
	mustWrite(t, m.p("g"), nil)
	os.Link(m.p("g"), m.p("d", "e", "glink"))
	os.Symlink("g", m.p("s"))
	paths := []string{"", "d", "d/e", "d/f", "g", "d/e/glink", "s"}
	inos := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, p := range paths {
			var st unix.Stat_t
			if err := unix.Lstat(m.p(p), &st); err != nil {
				t.Fatal(err)
			}
			out[p] = st.Ino
		}
		return out
	}
	before := inos()
	if before["g"] != before["d/e/glink"] {
		t.Fatalf("hard links have inodes %d and %d", before["g"], before["d/e/glink"])
	}
	seen := map[uint64]string{}
	for p, ino := range before {
		if q, dup := seen[ino]; dup && !(p == "g" || p == "d/e/glink") {
			t.Fatalf("%s and %s share inode %d", p, q, ino)
		}
		seen[ino] = p
	}
	// readdir's d_ino agrees with stat.
	for name, ino := range direntInos(t, m.p("d")) {
		if name != "." && name != ".." && ino != before["d/"+name] {
			t.Errorf("readdir d_ino of %s = %d, stat says %d", name, ino, before["d/"+name])
		}
	}
	m.remount(mountOpts{})
	after := inos()
	for p := range before {
		if before[p] != after[p] {
			t.Errorf("%q: inode %d before remount, %d after", p, before[p], after[p])
		}
	}
	if err := os.Rename(m.p("d", "f"), m.p("f2")); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Lstat(m.p("f2"), &st)
	if st.Ino != before["d/f"] {
		t.Errorf("rename changed inode %d → %d", before["d/f"], st.Ino)
	}
}

// direntInos reads d_ino of every entry with getdents(2).
func direntInos(t *testing.T, dir string) map[string]uint64 {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 19; {
			ino := binary.NativeEndian.Uint64(b)
			reclen := binary.NativeEndian.Uint16(b[16:])
			name := b[19:reclen]
			out[string(name[:bytes.IndexByte(name, 0)])] = ino
			b = b[reclen:]
		}
	}
}
