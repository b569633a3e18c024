package tests

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The cipher folder is shared with a sync service and whoever controls it:
// any entry can become a symlink, a FIFO, a socket or a directory at any
// moment while the vault is mounted (issue 13). These tests run every kind
// of FUSE operation against a mount while an attacker swaps cipher entries
// in a tight loop, and require that nothing outside the vault changed and
// nothing hung. Errors from the workload are expected; only acting outside
// the vault, hanging or crashing fails.

// canaryTree is a tree outside the vault that the attacker's symlinks point
// at; snapshot records everything the daemon could change in it.
type canaryTree struct {
	root string
}

func newCanaryTree(t *testing.T) *canaryTree {
	t.Helper()
	c := &canaryTree{root: filepath.Join(t.TempDir(), "canary")}
	for _, d := range []string{"", "dir", "dir/sub", "open"} {
		if err := os.Mkdir(filepath.Join(c.root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{"file": 0o640, "dir/secret": 0o600, "dir/sub/deep": 0o444, "open/world": 0o666}
	for name, mode := range files {
		p := filepath.Join(c.root, name)
		if err := os.WriteFile(p, []byte("canary "+name+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	os.Chmod(filepath.Join(c.root, "open"), 0o777)
	if err := unix.Setxattr(filepath.Join(c.root, "file"), "user.canary", []byte("v"), 0); err != nil {
		t.Logf("no xattrs on the canary (%v); not compared", err)
	}
	// Old times, so any touch shows.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	filepath.WalkDir(c.root, func(p string, _ fs.DirEntry, _ error) error {
		os.Chtimes(p, old, old)
		return nil
	})
	return c
}

// targets are the canary paths the attacker links to.
func (c *canaryTree) targets() []string {
	return []string{c.root, filepath.Join(c.root, "file"), filepath.Join(c.root, "dir"),
		filepath.Join(c.root, "dir/secret"), filepath.Join(c.root, "open"), filepath.Join(c.root, "open/world")}
}

// snapshot describes every entry: type, mode, owner, size, mtime, ctime,
// content hash, xattrs and, for directories, the names inside.
func (c *canaryTree) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(c.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d.%09d ctime=%d.%09d nlink=%d",
			st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Nlink)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" sha256=%x", sha256.Sum256(b))
		case unix.S_IFDIR:
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			desc += " entries=" + strings.Join(names, ",")
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, name := range names {
				if name == "" {
					continue
				}
				vb := make([]byte, 4096)
				vn, _ := unix.Lgetxattr(p, name, vb)
				desc += fmt.Sprintf(" xattr:%s=%q", name, vb[:max(vn, 0)])
			}
		}
		out[strings.TrimPrefix(p, c.root)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *canaryTree) requireUnchanged(t *testing.T, before map[string]string) {
	t.Helper()
	after := c.snapshot(t)
	for p, want := range before {
		if got, ok := after[p]; !ok {
			t.Errorf("canary %q disappeared", p)
		} else if got != want {
			t.Errorf("canary %q changed:\n  before %s\n  after  %s", p, want, got)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("canary gained %q: %s", p, after[p])
		}
	}
}

// attacker swaps cipher entries for hostile objects and back. It works
// fd-relative itself (the workload renames and removes cipher entries
// concurrently, so a path it listed may lead through a planted symlink by
// the time it acts), and moves what it planted into a trash directory
// rather than removing it (removing would have to open directories that
// may have become FIFOs meanwhile).
type attacker struct {
	cipher  string
	trash   int // O_PATH fd of a directory on the cipher folder's filesystem
	targets []string
	rng     *rand.Rand
	swaps   atomic.Int64
	n       int
}

// entries lists every entry below the cipher dir (metadata files too),
// relative to it.
func (a *attacker) entries() []string {
	var out []string
	filepath.WalkDir(a.cipher, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != a.cipher && !strings.Contains(p, ".hostile-") {
			out = append(out, strings.TrimPrefix(p, a.cipher+"/"))
		}
		return nil
	})
	return out
}

// openParent opens the directory holding rel, one component at a time,
// following no symlink.
func (a *attacker) openParent(rel string) (int, string, bool) {
	fd, err := unix.Open(a.cipher, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", false
	}
	parts := strings.Split(rel, "/")
	for _, c := range parts[:len(parts)-1] {
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, "", false
		}
		fd = next
	}
	return fd, parts[len(parts)-1], true
}

// swap replaces the entry rel by a hostile object for a moment, then puts
// the original back (if nothing else took its place meanwhile).
func (a *attacker) swap(rel string) {
	dfd, base, ok := a.openParent(rel)
	if !ok {
		return
	}
	defer unix.Close(dfd)
	a.n++
	saved := fmt.Sprintf("%s.hostile-%d", base, a.n)
	if unix.Renameat(dfd, base, dfd, saved) != nil {
		return
	}
	a.swaps.Add(1)
	switch a.rng.IntN(6) {
	case 0, 1:
		unix.Symlinkat(a.targets[a.rng.IntN(len(a.targets))], dfd, base)
	case 2:
		unix.Mknodat(dfd, base, unix.S_IFIFO|0o666, 0)
	case 3:
		unix.Mknodat(dfd, base, unix.S_IFSOCK|0o666, 0)
	case 4:
		unix.Mkdirat(dfd, base, 0o777)
	case 5:
		if fd, err := unix.Openat(dfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666); err == nil {
			unix.Write(fd, []byte("junk that is not a cipher file"))
			unix.Close(fd)
		}
	}
	if a.rng.IntN(2) == 0 {
		time.Sleep(time.Duration(a.rng.IntN(3000)) * time.Microsecond)
	} else {
		runtime.Gosched()
	}
	unix.Renameat(dfd, base, a.trash, fmt.Sprint(a.n))
	unix.Renameat(dfd, saved, dfd, base)
}

// run swaps until stop is closed.
func (a *attacker) run(stop <-chan struct{}) {
	ents := a.entries()
	refresh := time.Now()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if time.Since(refresh) > 200*time.Millisecond || len(ents) == 0 {
			ents, refresh = a.entries(), time.Now()
			if len(ents) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
		}
		a.swap(ents[a.rng.IntN(len(ents))])
	}
}

// hostileWorkload runs every kind of FUSE operation on random names in the
// mount until stop is closed. Every open is O_NONBLOCK: a cipher entry
// swapped for a FIFO shows as a FIFO, and opening a FIFO for reading would
// block the workload itself (that is the kernel's pipe, not the daemon).
func hostileWorkload(m *testMount, rng *rand.Rand, stop <-chan struct{}, ops *atomic.Int64) {
	dirs := []string{"", "d0", "d1", "d1/deep", "d1/deep/er", strings.Repeat("D", 180)}
	names := []string{"f0", "f1", "f2", "new", "x", strings.Repeat("L", 200), "sub", "lnk", "fifo", "dev"}
	pick := func() string {
		return filepath.Join(m.mnt, dirs[rng.IntN(len(dirs))], names[rng.IntN(len(names))])
	}
	buf := make([]byte, 70000)
	for {
		select {
		case <-stop:
			return
		default:
		}
		p := pick()
		switch rng.IntN(24) {
		case 0:
			if fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644); err == nil {
				unix.Write(fd, buf[:rng.IntN(len(buf))])
				unix.Close(fd)
			}
		case 1:
			if fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				unix.Read(fd, buf)
				unix.Close(fd)
			}
		case 2:
			var st unix.Stat_t
			unix.Lstat(p, &st)
			unix.Stat(p, &st)
		case 3:
			unix.Chmod(p, uint32(rng.IntN(0o1000)))
		case 4:
			unix.Lchown(p, 1000+rng.IntN(3), 1000+rng.IntN(3))
		case 5:
			unix.UtimesNano(p, []unix.Timespec{{Sec: 12345}, {Sec: 67890}})
		case 6:
			unix.Truncate(p, int64(rng.IntN(100000)))
		case 7:
			unix.Mkdir(p, 0o755)
		case 8:
			unix.Rmdir(p)
		case 9:
			unix.Rename(p, pick())
		case 10:
			unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, pick(), unix.RENAME_EXCHANGE)
		case 11:
			unix.Link(p, pick())
		case 12:
			unix.Symlink("target/of/"+filepath.Base(p), p)
			unix.Readlink(p, buf[:4096])
		case 13:
			unix.Unlink(p)
		case 14:
			unix.Mkfifo(p, 0o644)
		case 15:
			unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3)))
		case 16:
			unix.Lsetxattr(p, "user.k", []byte("value"), 0)
			unix.Lgetxattr(p, "user.k", buf[:4096])
		case 17:
			unix.Llistxattr(p, buf[:4096])
			unix.Lremovexattr(p, "user.k")
		case 18:
			if fd, err := unix.Open(filepath.Dir(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				for {
					n, err := unix.Getdents(fd, buf)
					if n <= 0 || err != nil {
						break
					}
				}
				unix.Close(fd)
			}
		case 19:
			if fd, err := unix.Open(p, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				unix.Pwrite(fd, buf[:rng.IntN(40000)], int64(rng.IntN(70000)))
				unix.Fsync(fd)
				unix.Fchmod(fd, 0o600)
				unix.Close(fd)
			}
		case 20:
			var s unix.Statfs_t
			unix.Statfs(p, &s)
		case 21:
			unix.Access(p, unix.R_OK|unix.W_OK)
		case 22:
			if fd, err := unix.Open(filepath.Dir(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
				unix.Fsync(fd)
				unix.Close(fd)
			}
		case 23:
			os.MkdirAll(filepath.Join(m.mnt, dirs[rng.IntN(len(dirs))]), 0o755)
		}
		ops.Add(1)
	}
}

// seedHostileTree fills the mount with what the workload works on.
func seedHostileTree(t *testing.T, m *testMount) {
	t.Helper()
	long := strings.Repeat("D", 180)
	for _, d := range []string{"d0", "d1/deep/er", long} {
		if err := os.MkdirAll(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"", "d0", "d1", "d1/deep", "d1/deep/er", long} {
		for i, name := range []string{"f0", "f1", strings.Repeat("L", 200)} {
			mustWrite(t, m.p(d, name), []byte(strings.Repeat("content ", 5000*i+1)))
		}
		os.Symlink("f0", m.p(d, "lnk"))
	}
}

func TestFSHostileSwapsNeverEscape(t *testing.T) {
	m := newMount(t, mountOpts{})
	seedHostileTree(t, m)
	canary := newCanaryTree(t)
	before := canary.snapshot(t)

	dur := 8 * time.Second
	if testing.Short() {
		dur = 3 * time.Second
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	trash := filepath.Join(filepath.Dir(m.cipher), "trash")
	if err := os.Mkdir(trash, 0o700); err != nil {
		t.Fatal(err)
	}
	tfd, err := unix.Open(trash, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tfd)
	att := &attacker{cipher: m.cipher, trash: tfd, targets: canary.targets(), rng: rand.New(rand.NewPCG(1, 2))}
	wg.Add(1)
	go func() { defer wg.Done(); att.run(stop) }()
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hostileWorkload(m, rand.New(rand.NewPCG(uint64(i)+10, 3)), stop, &ops)
		}()
	}
	time.Sleep(dur)
	close(stop)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		t.Errorf("workload hung after the attack stopped:\n%s", buf[:runtime.Stack(buf, true)])
		abortFUSE(t, m.mnt)
		m.srv = nil
		return
	}
	t.Logf("%d operations, %d swaps in %v", ops.Load(), att.swaps.Load(), dur)
	if att.swaps.Load() < 100 || ops.Load() < 100 {
		t.Errorf("too little happened to prove anything: %d swaps, %d operations", att.swaps.Load(), ops.Load())
	}
	canary.requireUnchanged(t, before)
	unmounted := make(chan error, 1)
	go func() { unmounted <- m.srv.Unmount() }()
	select {
	case err := <-unmounted:
		if err != nil {
			t.Errorf("unmount after the attack: %v", err)
		} else {
			m.srv.Wait()
			m.srv = nil
		}
	case <-time.After(30 * time.Second):
		t.Errorf("unmount hung")
		abortFUSE(t, m.mnt)
		m.srv = nil
	}
	canary.requireUnchanged(t, before)
}

// The two reproductions from issue 13, made deterministic: a directory's
// cipher entry replaced by a symlink to an outside 0700 directory while a
// process works in it, and one file's cipher entry replaced by a symlink to
// an outside file before a chmod of its plaintext name.
func TestFSHostileSymlinkedDirAndFile(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("d1"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("d1", "old"), []byte("old"))
	mustWrite(t, m.p("file"), []byte("plain"))
	canary := newCanaryTree(t)
	before := canary.snapshot(t)
	dirCipher, fileCipher := m.cipherOf("d1"), m.cipherOf("file")

	// Hold the directory open like a shell cd'd into it, so the kernel
	// keeps its node; wait out the entry timeout so every name is looked
	// up again.
	dfd, err := unix.Open(m.p("d1"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := os.Rename(dirCipher, dirCipher+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(canary.root, "dir"), dirCipher); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fileCipher, fileCipher+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(canary.root, "file"), fileCipher); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	// Through the held directory fd and by path.
	if fd, err := unix.Openat(dfd, "newfile", unix.O_CREAT|unix.O_WRONLY, 0o644); err == nil {
		unix.Write(fd, []byte("x"))
		unix.Close(fd)
	}
	unix.Mkdirat(dfd, "sub", 0o755)
	unix.Fchmod(dfd, 0o777)
	unix.Fchmodat(dfd, "old", 0o777, 0)
	os.WriteFile(m.p("d1", "newfile2"), []byte("x"), 0o644)
	os.Mkdir(m.p("d1", "sub2"), 0o755)
	os.Chmod(m.p("d1"), 0o777)
	os.Chmod(m.p("file"), 0o644)
	os.Chown(m.p("file"), 1234, 1234)
	os.Truncate(m.p("file"), 0)
	os.WriteFile(m.p("file"), []byte("overwrite"), 0o644)
	unix.Setxattr(m.p("file"), "user.x", []byte("y"), 0)
	os.Chtimes(m.p("file"), time.Now(), time.Now())
	canary.requireUnchanged(t, before)
	// A looked-up name shows what is there now (a symlink whose target
	// does not decrypt: EIO); a directory the kernel still holds keeps its
	// own descriptor. Either way the mount says so in its log.
	if logs := m.logs.String(); !strings.Contains(logs, "wrong type") && !strings.Contains(logs, "failed authentication") {
		t.Errorf("the planted symlinks were not logged:\n%s", logs)
	}
}
