package offline

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// The cipher folder is hostile (issue 13): a sync peer can put a symlink to
// anywhere, a FIFO, a socket or (a local user) a device node where sealfs
// keeps a directory, a cipher file, a directory ID or a long-name side file.
// fsck and extract must report each, follow and open none, never hang, and
// leave everything outside the vault and DEST exactly as it was.

func (v *testVault) fifo(plain string) string {
	v.t.Helper()
	c := v.cipher(plain)
	v.must(unix.Mkfifo(c, 0o640))
	return c
}

func (v *testVault) socket(plain string) string {
	v.t.Helper()
	c := v.cipher(plain)
	v.must(unix.Mknod(c, unix.S_IFSOCK|0o640, 0))
	return c
}

func (v *testVault) xattr(plain, name string, value []byte) {
	v.t.Helper()
	stored, err := v.keys.EncryptXattrName(name)
	v.must(err)
	v.must(unix.Lsetxattr(v.cipher(plain), stored, v.keys.EncryptXattrValue(stored, value), 0))
}

// snapshot records every object below root: type, mode, size, times, owner
// and content (or link target), to prove that nothing there changed.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		// ctime too: any chmod, chown, utimes or setxattr moves it, even
		// one that put the old value back.
		s := fmt.Sprintf("mode=%o size=%d mtime=%d.%d ctime=%d.%d uid=%d gid=%d nlink=%d", st.Mode, st.Size,
			st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Uid, st.Gid, st.Nlink)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += " content=" + string(b)
		case syscall.S_IFLNK:
			l, _ := os.Readlink(p)
			s += " target=" + l
		}
		out[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantUnchanged(t *testing.T, root string, before map[string]string) {
	t.Helper()
	after := snapshot(t, root)
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("outside the vault: %s was removed", p)
		} else if a != b {
			t.Errorf("outside the vault: %s changed:\n before %s\n after  %s", p, b, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("outside the vault: %s appeared", p)
		}
	}
}

// within fails the test if fn does not return in time (a FIFO opened for
// reading without O_NONBLOCK blocks for good).
func within(t *testing.T, what string, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v", what, d)
	}
}

// plant replaces the cipher object at c: the original moves to keep (when
// set) and make puts the hostile object in its place.
func plant(t *testing.T, c, keep string, make func(string) error) {
	t.Helper()
	var err error
	if keep != "" {
		err = os.Rename(c, keep)
	} else {
		err = os.RemoveAll(c)
	}
	if err == nil {
		err = make(c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func symlinkTo(target string) func(string) error {
	return func(p string) error { return os.Symlink(target, p) }
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }
func mksock(p string) error { return unix.Mknod(p, unix.S_IFSOCK|0o644, 0) }
func mknull(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) }

type hostileTree struct {
	v      *testVault
	canary string            // the tree outside the vault the symlinks lead into
	want   map[string]string // cipher path → what its problem's detail must say
	asRoot bool
}

// newHostileTree builds a vault, then replaces cipher directories, files,
// directory IDs and long-name side files with symlinks into a canary tree
// (which holds the genuine objects, so following a link would read valid
// data and report nothing), FIFOs, sockets and, as root, a device node.
func newHostileTree(t *testing.T) *hostileTree {
	base := t.TempDir()
	h := &hostileTree{v: newTestVault(t, filepath.Join(base, "vault"), nil), canary: filepath.Join(base, "canary"),
		want: map[string]string{}, asRoot: os.Geteuid() == 0}
	v, canary := h.v, h.canary
	v.must(os.MkdirAll(filepath.Join(canary, "dir"), 0o751))
	v.must(os.WriteFile(filepath.Join(canary, "dir", "secret"), []byte("secret"), 0o600))
	long := strings.Repeat("long-name-", 20)

	v.file("ok.txt", []byte("fine"), 0o644)
	for _, d := range []string{"d1", "d2", "d3", "d4", "d5"} {
		v.mkdir(d, 0o755)
		v.file(d+"/inner.txt", []byte("inside "+d), 0o644)
	}
	for _, f := range []string{"f1", "f2", "f3", "f4"} {
		v.file(f, []byte("file "+f), 0o644)
	}
	for _, l := range []string{"L1", "L2", "L3"} {
		v.file(long+l, []byte("long "+l), 0o644)
	}

	// A cipher directory and a cipher file become symlinks to their own
	// genuine copies outside: their targets do not decrypt.
	plant(t, v.cipher("d2"), filepath.Join(canary, "d2-real"), symlinkTo(filepath.Join(canary, "d2-real")))
	h.want[v.cipher("d2")] = "symlink target"
	plant(t, v.cipher("f1"), filepath.Join(canary, "f1-real"), symlinkTo(filepath.Join(canary, "f1-real")))
	h.want[v.cipher("f1")] = "symlink target"
	// Directory IDs: a symlink to the genuine ID, a FIFO, a socket, a device.
	idOf := func(d string) string { return filepath.Join(v.cipher(d), crypto.DirIDFile) }
	plant(t, idOf("d1"), filepath.Join(canary, "d1-dirid"), symlinkTo(filepath.Join(canary, "d1-dirid")))
	h.want[idOf("d1")] = "found a symlink where a regular file belongs"
	plant(t, idOf("d3"), "", mkfifo)
	h.want[idOf("d3")] = "found a FIFO where a regular file belongs"
	plant(t, idOf("d4"), "", mksock)
	h.want[idOf("d4")] = "found a socket where a regular file belongs"
	if h.asRoot {
		plant(t, idOf("d5"), "", mknull)
		h.want[idOf("d5")] = "found a character device where a regular file belongs"
	}
	// Long-name side files: a symlink to the genuine one, a FIFO, a socket.
	side := func(l string) string { return v.cipher(long+l) + crypto.LongNameSuffix }
	plant(t, side("L1"), filepath.Join(canary, "L1-side"), symlinkTo(filepath.Join(canary, "L1-side")))
	h.want[v.cipher(long+"L1")] = "long-name side file: " + filepath.Base(side("L1")) + ": found a symlink where a regular file belongs"
	plant(t, side("L2"), "", mkfifo)
	h.want[v.cipher(long+"L2")] = "found a FIFO where a regular file belongs"
	plant(t, side("L3"), "", mksock)
	h.want[v.cipher(long+"L3")] = "found a socket where a regular file belongs"
	// Cipher files that became a FIFO, a socket, a device: under their
	// names the format allows those types (nothing tells them from a FIFO
	// made in the mount), so they are what the vault now holds — never
	// opened, extracted as what they are.
	plant(t, v.cipher("f2"), "", mkfifo)
	plant(t, v.cipher("f3"), "", mksock)
	if h.asRoot {
		plant(t, v.cipher("f4"), "", mknull)
	}
	return h
}

func (h *hostileTree) wantReported(t *testing.T, what string, ps []Problem) {
	t.Helper()
	for c, detail := range h.want {
		found := false
		for _, p := range ps {
			found = found || p.CipherPath == c && strings.Contains(p.Detail, detail)
		}
		if !found {
			t.Errorf("%s: %s not reported as %q; problems:\n%s", what, c, detail, problemList(ps))
		}
	}
}

func problemList(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestHostileCipherFolder(t *testing.T) {
	h := newHostileTree(t)
	before := snapshot(t, h.canary)
	keys, dir := h.v.keys, h.v.dir
	fds := openFDs(t)
	defer func() {
		// Every path through Check and Extract, the failing ones too,
		// closes what it opened.
		if n := openFDs(t); n != fds {
			t.Errorf("%d descriptors open before, %d after", fds, n)
		}
	}()

	var r *Report
	within(t, "fsck", 20*time.Second, func() {
		var err error
		if r, err = Check(keys, dir, nil); err != nil {
			t.Error(err)
		}
	})
	h.wantReported(t, "fsck", r.Problems)
	// ok.txt and the files in d1, d3, d4, d5 (found by their derived IDs)
	// are checked, and f4 unless it became a device; d2's and f1's copies
	// outside are not.
	wantFiles := 5
	if !h.asRoot {
		wantFiles++
	}
	if r.Files != wantFiles || r.Symlinks != 2 {
		t.Errorf("fsck checked %d files and %d symlinks, want %d and 2 (the planted links)", r.Files, r.Symlinks, wantFiles)
	}

	var total int64
	within(t, "TotalBytes", 20*time.Second, func() { total = TotalBytes(dir) })
	var want int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, _ := d.Info()
			want += fi.Size()
		}
		return nil
	})
	if total != want {
		t.Errorf("TotalBytes = %d, want %d (the regular files inside the vault only)", total, want)
	}

	dest := filepath.Join(t.TempDir(), "dest")
	within(t, "extract", 20*time.Second, func() {
		var err error
		if r, err = Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest}); err != nil {
			t.Error(err)
		}
	})
	h.wantReported(t, "extract", r.Problems)
	for _, p := range []string{"d2", "f1", "d2/inner.txt"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); err == nil {
			t.Errorf("extract restored %s through a symlink out of the vault", p)
		}
	}
	for _, p := range []string{"ok.txt", "d1/inner.txt", "d3/inner.txt", "d4/inner.txt"} {
		if b, err := os.ReadFile(filepath.Join(dest, p)); err != nil || !strings.Contains(string(b), strings.TrimSuffix(p, "/inner.txt")) && p != "ok.txt" {
			t.Errorf("%s not extracted: %q %v", p, b, err)
		}
	}
	wantType := func(p string, typ uint32) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dest, p), &st); err != nil || st.Mode&unix.S_IFMT != typ {
			t.Errorf("DEST/%s: mode %o, %v; want a %o", p, st.Mode, err, typ)
		}
	}
	wantType("f2", unix.S_IFIFO)
	wantType("f3", unix.S_IFSOCK)
	if h.asRoot {
		wantType("f4", unix.S_IFCHR)
	}

	// A PATH argument through the symlinked directory stops at it.
	within(t, "extract d2/inner.txt", 20*time.Second, func() {
		_, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: t.TempDir(), Path: "d2/inner.txt"})
		if err == nil || !strings.Contains(err.Error(), h.v.cipher("d2")) || !strings.Contains(err.Error(), "found a symlink where a directory belongs") {
			t.Errorf("extract d2/inner.txt: %v; want the symlink at d2's cipher path named", err)
		}
	})
	wantUnchanged(t, h.canary, before)
}

// While fsck and extract run, cipher entries are swapped in a tight loop
// (rename exchange, atomic) with symlinks into the canary tree — which holds
// copies of them that differ from the vault's only in holding a "planted"
// entry — and with FIFOs: whatever each call meets, nothing hangs, nothing
// outside changes, and DEST never gets what only the copies hold.
func TestHostileCipherFolderWhileSwapping(t *testing.T) {
	base := t.TempDir()
	v := newTestVault(t, filepath.Join(base, "vault"), nil)
	canary := filepath.Join(base, "canary")
	stage := filepath.Join(base, "stage")
	v.must(os.MkdirAll(canary, 0o700))
	v.must(os.MkdirAll(stage, 0o700))
	v.mkdir("d", 0o755)
	v.file("d/inner.txt", []byte("inner"), 0o644)
	v.mkdir("d/deep", 0o755)
	v.file("d/deep/x", []byte("x"), 0o644)
	v.file("d/planted", []byte("planted"), 0o644)
	v.file("d/deep/planted", []byte("planted"), 0o644)
	v.file("f", []byte("planted"), 0o644)
	var swaps [][2]string
	for i, c := range []string{v.cipher("d"), v.cipher("f"), filepath.Join(v.cipher("d"), crypto.DirIDFile), v.cipher("d/deep")} {
		cp := filepath.Join(canary, fmt.Sprintf("copy%d", i))
		if out, err := exec.Command("cp", "-a", c, cp).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		link := filepath.Join(stage, fmt.Sprintf("link%d", i))
		v.must(os.Symlink(cp, link))
		fifo := filepath.Join(stage, fmt.Sprintf("fifo%d", i))
		v.must(unix.Mkfifo(fifo, 0o600))
		swaps = append(swaps, [2]string{c, link}, [2]string{c, fifo})
	}
	// The vault itself holds no "planted" entry and a genuine f.
	v.must(os.Remove(v.cipher("d/planted")))
	v.must(os.Remove(v.cipher("d/deep/planted")))
	v.must(os.Remove(v.cipher("f")))
	v.file("f", []byte("genuine"), 0o644)
	before := snapshot(t, canary)

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			s := swaps[i%len(swaps)]
			// Exchange in, then back: the vault is whole again after
			// each pair; a failure only means a parent is swapped out.
			if unix.Renameat2(unix.AT_FDCWD, s[0], unix.AT_FDCWD, s[1], unix.RENAME_EXCHANGE) == nil {
				_ = unix.Renameat2(unix.AT_FDCWD, s[0], unix.AT_FDCWD, s[1], unix.RENAME_EXCHANGE)
			}
		}
	}()
	rounds, hit := 0, 0
	deadline := time.Now().Add(2 * time.Second)
	within(t, "fsck and extract under swaps", 60*time.Second, func() {
		for ; time.Now().Before(deadline) || rounds < 10; rounds++ {
			if r, err := Check(v.keys, v.dir, nil); err != nil {
				t.Error(err)
			} else if !r.OK() {
				hit++
			}
			dest := filepath.Join(base, "dest", fmt.Sprint(rounds))
			if _, err := Extract(ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: dest}); err != nil {
				t.Error(err)
			}
			for _, p := range []string{"d/planted", "d/deep/planted"} {
				if _, err := os.Lstat(filepath.Join(dest, p)); err == nil {
					t.Errorf("round %d: extract followed a symlink out of the vault: DEST/%s", rounds, p)
				}
			}
			// DEST/f is a FIFO when extract met the swapped-in FIFO.
			if fi, err := os.Lstat(filepath.Join(dest, "f")); err == nil && fi.Mode().IsRegular() {
				if b, _ := os.ReadFile(filepath.Join(dest, "f")); string(b) != "genuine" {
					t.Errorf("round %d: extract followed a symlink out of the vault: DEST/f holds %q", rounds, b)
				}
			}
		}
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("%d rounds of fsck and extract under swaps; fsck met a swapped entry in %d", rounds, hit)
	if hit == 0 {
		t.Error("no round met a swapped entry: the test proved nothing")
	}
	wantUnchanged(t, canary, before)
	// Once the swapping stops the vault reads clean again.
	if r, err := Check(v.keys, v.dir, nil); err != nil || !r.OK() {
		t.Errorf("after the swaps: %v %v", err, r.Problems)
	}
}
