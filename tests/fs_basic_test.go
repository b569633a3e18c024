package tests

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestFSBasicFileDirOps(t *testing.T) {
	m := newMount(t, mountOpts{})
	data := bytes.Repeat([]byte("hello sealfs "), 10000) // 130 kB: several blocks
	mustWrite(t, m.p("a.txt"), data)
	if got := mustRead(t, m.p("a.txt")); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(data))
	}
	if files := m.cipherFiles(); len(files) != 1 || strings.Contains(files[0], "a.txt") {
		t.Fatalf("cipher dir holds %q, want one encrypted name", files)
	}
	st, err := os.Stat(m.p("a.txt"))
	if err != nil || st.Size() != int64(len(data)) {
		t.Fatalf("stat: %v size %d want %d", err, st.Size(), len(data))
	}
	if err := os.MkdirAll(m.p("d1", "d2"), 0o750); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("d1", "d2", "f"), []byte("nested"))
	long := strings.Repeat("L", 255)
	mustWrite(t, m.p("d1", long), []byte("long name"))
	ents, err := os.ReadDir(m.p("d1"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{long, "d2"}; !slices.Equal(names, want) {
		t.Fatalf("readdir d1 = %q, want %q", names, want)
	}
	if st, err := os.Stat(m.p("d1")); err != nil || st.Mode().Perm() != 0o750 || !st.IsDir() {
		t.Fatalf("dir mode: %v %v", st.Mode(), err)
	}
	// Rename a directory: its children keep decrypting.
	if err := os.Rename(m.p("d1"), m.p("renamed")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.p("renamed", "d2", "f")); string(got) != "nested" {
		t.Fatalf("after dir rename: %q", got)
	}
	// Rename a long name to a short one and back: side files follow.
	if err := os.Rename(m.p("renamed", long), m.p("renamed", "short")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.p("renamed", "short"), m.p(long)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.p(long)); err != nil {
		t.Fatal(err)
	}
	err = os.Remove(m.p("renamed", "d2"))
	wantErrno(t, err, syscall.ENOTEMPTY, "rmdir non-empty")
	if err := os.Remove(m.p("renamed", "d2", "f")); err != nil {
		t.Fatal(err)
	}
	// The failed rmdir restored the dirid: create and read again.
	mustWrite(t, m.p("renamed", "d2", "g"), []byte("again"))
	m.remount(mountOpts{})
	if got := mustRead(t, m.p("renamed", "d2", "g")); string(got) != "again" {
		t.Fatalf("after remount: %q", got)
	}
	if got := mustRead(t, m.p("a.txt")); !bytes.Equal(got, data) {
		t.Fatal("a.txt changed across remount")
	}
	for _, p := range []string{m.p("renamed", "d2", "g"), m.p("renamed", "d2"), m.p("renamed"), m.p("a.txt")} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// Only the vault's own metadata may remain; here nothing at all.
	if left := m.cipherFiles(); len(left) != 0 {
		t.Fatalf("cipher dir not empty after removing everything: %q", left)
	}
}

// TestFSTarRoundTrip extracts a real tree with tar (create, write, fchown,
// fchmod, utimensat per file) and has tar compare it back: contents, modes,
// owners and mtimes must all match, also after a remount; rsync -a of the
// tree then finds nothing left to do.
func TestFSTarRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar not installed")
	}
	m := newMount(t, mountOpts{})
	src, _ := filepath.Abs("../crypto")
	ball := filepath.Join(t.TempDir(), "src.tar")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
			t.Fatalf("tar %q: %v\n%s", args, err, out)
		}
	}
	run("-C", filepath.Dir(src), "-cf", ball, filepath.Base(src))
	run("-C", m.mnt, "-xpf", ball)
	run("-C", m.mnt, "-df", ball)
	if _, err := exec.LookPath("rsync"); err == nil {
		rs := func(args ...string) string {
			out, err := exec.Command("rsync", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("rsync %q: %v\n%s", args, err, out)
			}
			return string(out)
		}
		rs("-aHX", src+"/", m.p("rs")+"/")
		// A second pass must find nothing to do: sizes, mtimes, modes match.
		if out := rs("-aHXni", src+"/", m.p("rs")+"/"); out != "" {
			t.Fatalf("rsync finds differences after copying:\n%s", out)
		}
	}
	m.remount(mountOpts{})
	run("-C", m.mnt, "-df", ball)
}

// TestFSLargeReadsQuiet reads a file with 1 MiB O_DIRECT reads, which the
// kernel sends as READs of that size whatever the readahead window. The data
// must come back intact and the mount log stay free of go-fuse's complaints:
// go-fuse used to try a splice for every READ answer and logged a line for
// each one too large for a pipe, one per MiB read.
func TestFSLargeReadsQuiet(t *testing.T) {
	m := newMount(t, mountOpts{})
	const size = 8 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	mustWrite(t, m.p("big"), data)
	f, err := os.OpenFile(m.p("big"), os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// O_DIRECT wants an aligned buffer; a page-aligned mmap is one.
	buf, err := syscall.Mmap(-1, 0, 1<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	var got []byte
	for {
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("O_DIRECT read at %d: %v", len(got), err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, different from the %d written", len(got), len(data))
	}
	if logs := m.logs.String(); strings.Contains(logs, "go-fuse") {
		t.Fatalf("mount log has go-fuse messages:\n%s", logs)
	}
}
