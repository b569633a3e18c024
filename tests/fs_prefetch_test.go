package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident reports whether the first page of the file at path is in the
// page cache.
func resident(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	vec := make([]byte, 1)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	return vec[0]&1 != 0
}

// evict drops the page cache of every file under dir (fadvise DONTNEED on
// clean pages; no global drop_caches, which would disturb other tests).
func evict(t *testing.T, dir string) {
	t.Helper()
	unix.Sync()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if f, err := os.Open(p); err == nil {
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				f.Close()
			}
		}
		return nil
	})
}

// TestFSPrefetchHeads: once a second file of a directory is opened cold,
// the mount asks the backing store for the heads of the directory's other
// cipher files (fs/prefetch.go); one open alone, or a listing, does not.
// Unmount waits for a running prefetch, so no backing fd outlives it.
func TestFSPrefetchHeads(t *testing.T) {
	m := newMount(t, mountOpts{})
	const n = 300
	for _, d := range []string{"scan", "single"} {
		if err := os.Mkdir(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			mustWrite(t, m.p(d, fmt.Sprintf("f%03d", i)), bytes.Repeat([]byte{byte(i)}, 5000))
		}
	}
	cipherFiles := func(dir string) []string {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "sealfs.") {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
		if len(out) != n {
			t.Fatalf("%d cipher files in %s, want %d", len(out), dir, n)
		}
		return out
	}
	scan, single := cipherFiles(m.cipherOf("scan")), cipherFiles(m.cipherOf("single"))
	countResident := func(files []string) int {
		c := 0
		for _, f := range files {
			if resident(t, f) {
				c++
			}
		}
		return c
	}

	m.remount(mountOpts{}) // every engine cold, every directory node new
	evict(t, m.cipher)
	if c := countResident(scan) + countResident(single); c > n/10 {
		t.Fatalf("eviction left %d of %d heads cached; cannot measure", c, 2*n)
	}
	if _, err := os.ReadDir(m.p("scan")); err != nil { // a listing alone
		t.Fatal(err)
	}
	mustRead(t, m.p("single", "f000")) // one open alone
	mustRead(t, m.p("scan", "f000"))
	mustRead(t, m.p("scan", "f001")) // the second: a scan
	deadline := time.Now().Add(10 * time.Second)
	for countResident(scan) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c := countResident(scan); c < n {
		t.Errorf("after two opens in scan/, %d of %d cipher heads are cached", c, n)
	}
	if c := countResident(single); c > n/10 {
		t.Errorf("one open in single/ brought %d of %d heads into the cache", c, n)
	}
	// Contents are unaffected.
	for i := range n {
		if got := mustRead(t, m.p("scan", fmt.Sprintf("f%03d", i))); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 5000)) {
			t.Fatalf("scan/f%03d reads wrong", i)
		}
	}

	// Unmount right after a scan starts: no fd into the cipher dir remains.
	m.remount(mountOpts{})
	mustRead(t, m.p("scan", "f100"))
	mustRead(t, m.p("scan", "f101"))
	m.unmount()
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, m.cipher) {
			t.Errorf("fd %s still open on %s after Unmount", fd.Name(), l)
		}
	}
}
