package tests

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What a sync service keeps of a tree: a fixture made on one side, probed on
// the other. docs/sync.md's tables are these measurements; the tests below
// hold each service to them, so the docs cannot drift from the client CI
// installs.

// preserveProbe is one property of the fixture.
type preserveProbe struct {
	what string
	// probe returns a description of the property on one side; the
	// property is kept if both sides describe it alike.
	probe func(root string) string
}

var (
	preserveMtime    = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	preserveDirMtime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	preserveLong     = strings.Repeat("L", 255)
)

// makePreserveFixture builds the fixture under root (as root: the owner
// probe chowns).
func makePreserveFixture(t testing.TB, root string) {
	t.Helper()
	data := make([]byte, 1<<20)
	rand.Read(data)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "data"), data, 0o644))
	must(os.WriteFile(filepath.Join(root, "zero-bytes"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, preserveLong), []byte("long"), 0o644))
	must(os.Mkdir(filepath.Join(root, strings.Repeat("D", 255)), 0o755))
	must(os.WriteFile(filepath.Join(root, strings.Repeat("D", 255), preserveLong), []byte("long in long"), 0o644))
	must(os.WriteFile(filepath.Join(root, "mtime"), []byte("m"), 0o644))
	must(os.Chtimes(filepath.Join(root, "mtime"), preserveMtime, preserveMtime))
	for name, mode := range map[string]os.FileMode{"mode-600": 0o600, "mode-640": 0o640, "mode-755": 0o755, "mode-444": 0o444} {
		must(os.WriteFile(filepath.Join(root, name), []byte(name), 0o600))
		must(os.Chmod(filepath.Join(root, name), mode))
	}
	must(os.WriteFile(filepath.Join(root, "setuid"), []byte("s"), 0o755))
	must(unix.Chmod(filepath.Join(root, "setuid"), 0o4755))
	must(os.WriteFile(filepath.Join(root, "owner"), []byte("o"), 0o644))
	must(os.Lchown(filepath.Join(root, "owner"), 1234, 5678))
	must(os.WriteFile(filepath.Join(root, "xattr"), []byte("x"), 0o644))
	must(unix.Setxattr(filepath.Join(root, "xattr"), "user.sealfs.probe", []byte("value"), 0))
	must(os.Symlink("data", filepath.Join(root, "symlink-relative")))
	must(os.Symlink("/nonexistent/absolute", filepath.Join(root, "symlink-absolute")))
	must(os.Symlink("nowhere/dangling", filepath.Join(root, "symlink-dangling")))
	ts := []unix.Timespec{unix.NsecToTimespec(preserveMtime.UnixNano()), unix.NsecToTimespec(preserveMtime.UnixNano())}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "symlink-relative"), ts, unix.AT_SYMLINK_NOFOLLOW))
	must(os.WriteFile(filepath.Join(root, "hardlink-1"), []byte("h"), 0o644))
	must(os.Link(filepath.Join(root, "hardlink-1"), filepath.Join(root, "hardlink-2")))
	must(os.Mkdir(filepath.Join(root, "empty-dir"), 0o755))
	must(os.Mkdir(filepath.Join(root, "dir-mode-750"), 0o750))
	must(os.WriteFile(filepath.Join(root, "dir-mode-750", "f"), []byte("f"), 0o644))
	must(os.Chmod(filepath.Join(root, "dir-mode-750"), 0o750))
	must(os.Mkdir(filepath.Join(root, "dir-mtime"), 0o755))
	must(os.WriteFile(filepath.Join(root, "dir-mtime", "f"), []byte("f"), 0o644))
	must(os.Chtimes(filepath.Join(root, "dir-mtime"), preserveDirMtime, preserveDirMtime))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	f, err := os.Create(filepath.Join(root, "sparse"))
	must(err)
	must(f.Truncate(8 << 20))
	_, err = f.WriteAt([]byte("end"), 8<<20-3)
	must(err)
	must(f.Close())
}

func lstatT(root, name string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	err := syscall.Lstat(filepath.Join(root, name), &st)
	return &st, err
}

var preserveProbes = []preserveProbe{
	{"file bytes (1 MiB, 0 bytes)", func(r string) string {
		a, err1 := os.ReadFile(filepath.Join(r, "data"))
		b, err2 := os.ReadFile(filepath.Join(r, "zero-bytes"))
		if err1 != nil || err2 != nil {
			return fmt.Sprint(err1, err2)
		}
		return fmt.Sprintf("%x/%d", sha(a), len(b))
	}},
	{"names of 255 bytes (file, directory)", func(r string) string {
		a, err := os.ReadFile(filepath.Join(r, strings.Repeat("D", 255), preserveLong))
		b, err2 := os.ReadFile(filepath.Join(r, preserveLong))
		if err != nil || err2 != nil {
			return "missing"
		}
		return string(a) + "/" + string(b)
	}},
	{"file mtime, to the second", func(r string) string { return mtime(r, "mtime", time.Second) }},
	{"file mtime, nanoseconds", func(r string) string { return mtime(r, "mtime", 1) }},
	{"file modes (600, 640, 755, 444)", func(r string) string {
		var out []string
		for _, n := range []string{"mode-600", "mode-640", "mode-755", "mode-444"} {
			st, err := lstatT(r, n)
			if err != nil {
				return "missing"
			}
			out = append(out, fmt.Sprintf("%o", st.Mode&0o7777))
		}
		return strings.Join(out, " ")
	}},
	{"setuid bit", func(r string) string {
		st, err := lstatT(r, "setuid")
		if err != nil {
			return "missing"
		}
		return fmt.Sprintf("%o", st.Mode&0o7777)
	}},
	{"owner and group (1234:5678)", func(r string) string {
		st, err := lstatT(r, "owner")
		if err != nil {
			return "missing"
		}
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}},
	{"extended attributes (user.*)", func(r string) string {
		v := make([]byte, 64)
		n, err := unix.Getxattr(filepath.Join(r, "xattr"), "user.sealfs.probe", v)
		if err != nil {
			return "none"
		}
		return string(v[:n])
	}},
	{"symlinks (relative, absolute, dangling), as symlinks", func(r string) string {
		var out []string
		for _, n := range []string{"symlink-relative", "symlink-absolute", "symlink-dangling"} {
			target, err := os.Readlink(filepath.Join(r, n))
			if err != nil {
				fi, lerr := os.Lstat(filepath.Join(r, n))
				if lerr != nil {
					out = append(out, "missing")
				} else {
					out = append(out, "not a symlink: "+fi.Mode().String())
				}
				continue
			}
			out = append(out, target)
		}
		return strings.Join(out, " ")
	}},
	{"symlink mtime", func(r string) string { return mtime(r, "symlink-relative", time.Second) }},
	{"hard links (one inode)", func(r string) string {
		a, err1 := lstatT(r, "hardlink-1")
		b, err2 := lstatT(r, "hardlink-2")
		if err1 != nil || err2 != nil {
			return "missing"
		}
		if a.Ino == b.Ino {
			return "one inode"
		}
		return "two files"
	}},
	{"empty directory", func(r string) string {
		if fi, err := os.Lstat(filepath.Join(r, "empty-dir")); err != nil || !fi.IsDir() {
			return "missing"
		}
		return "present"
	}},
	{"directory mode (750)", func(r string) string {
		st, err := lstatT(r, "dir-mode-750")
		if err != nil {
			return "missing"
		}
		return fmt.Sprintf("%o", st.Mode&0o7777)
	}},
	{"directory mtime", func(r string) string { return mtime(r, "dir-mtime", time.Second) }},
	{"FIFO", func(r string) string {
		fi, err := os.Lstat(filepath.Join(r, "fifo"))
		if err != nil {
			return "missing"
		}
		return fi.Mode().Type().String()
	}},
	{"sparse file (8 MiB, one block written)", func(r string) string {
		st, err := lstatT(r, "sparse")
		if err != nil {
			return "missing"
		}
		if st.Blocks*512 < 1<<20 {
			return "sparse"
		}
		return "allocated"
	}},
}

func sha(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:8]
}

func mtime(root, name string, unit time.Duration) string {
	st, err := lstatT(root, name)
	if err != nil {
		return "missing"
	}
	return time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC().Truncate(unit).Format(time.RFC3339Nano)
}

// preserveRow is one line of a measurement.
type preserveRow struct {
	what, src, dst string
	kept           bool
}

func measurePreserve(src, dst string) []preserveRow {
	var rows []preserveRow
	for _, p := range preserveProbes {
		a, b := p.probe(src), p.probe(dst)
		rows = append(rows, preserveRow{p.what, a, b, a == b})
	}
	return rows
}

// checkPreserve logs the measurement as a table and fails for every
// property whose outcome differs from want (what → kept).
func checkPreserve(t testing.TB, service string, rows []preserveRow, want map[string]bool) {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s:\n| property | source | copy | kept |\n|---|---|---|---|\n", service)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %v |\n", r.what, r.src, r.dst, r.kept)
	}
	t.Log(b.String())
	for _, r := range rows {
		w, ok := want[r.what]
		if !ok {
			t.Errorf("%s: no expectation for %q", service, r.what)
			continue
		}
		if r.kept != w {
			t.Errorf("%s: %q kept = %v, docs/sync.md says %v (source %q, copy %q): update both", service, r.what, r.kept, w, r.src, r.dst)
		}
	}
}
