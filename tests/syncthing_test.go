package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/internal/syncnames"
	"golang.org/x/sys/unix"
)

// Names shaped like a vault's entries, so what Syncthing does to them is
// what it will do to a cipher folder: a regular cipher name (43 base64url
// letters), a long-name entry and the vault header.
const (
	stCipherName = "M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I"
	stLongName   = "sealfs.ln.4hCqTU3Mq8p0PAsq6G7Xb9yb6dNXO3ZRfKUkTplTCCg"
)

// TestSyncthingTwoDevices proves the harness against real Syncthing: files,
// directories, symlinks, renames and deletes propagate both ways, and a file
// changed on both devices while they are apart comes back as a winner and a
// conflict copy on both, named as internal/syncnames expects.
func TestSyncthingTwoDevices(t *testing.T) {
	p := startSyncthingPair(t, syncthingOptions{})
	t.Logf("syncthing %s; A %s, B %s", syncthingVersion(t), p.A.shortID(), p.B.shortID())
	for _, d := range []*syncthingDevice{p.A, p.B} {
		if fi, err := os.Stat(filepath.Join(d.dir, ".stfolder")); err != nil || !fi.IsDir() {
			t.Errorf("%s: .stfolder is not a directory: %v", d.name, err)
		}
	}
	a, b := p.A.dir, p.B.dir

	// A creates; B receives.
	writeAt(t, filepath.Join(a, "f1"), "one", time.Time{})
	mkdirs(t, filepath.Join(a, "d", "sub"))
	writeAt(t, filepath.Join(a, "d", "sub", "f2"), "two", time.Time{})
	mkdirs(t, filepath.Join(a, "empty"))
	if err := os.Symlink("d/sub/f2", filepath.Join(a, "link")); err != nil {
		t.Fatal(err)
	}
	p.waitInSync(t)
	wantContent(t, b, map[string]string{"f1": "one", "d/sub/f2": "two"})
	wantDir(t, filepath.Join(b, "empty"))
	if target, err := os.Readlink(filepath.Join(b, "link")); err != nil || target != "d/sub/f2" {
		t.Errorf("B: link -> %q, %v", target, err)
	}

	// B changes and creates; A receives.
	writeAt(t, filepath.Join(b, "f1"), "one, edited on B", time.Time{})
	writeAt(t, filepath.Join(b, "g"), "new on B", time.Time{})
	p.waitInSync(t)
	wantContent(t, a, map[string]string{"f1": "one, edited on B", "g": "new on B"})

	// A renames a directory and a file.
	rename(t, filepath.Join(a, "d"), filepath.Join(a, "d2"))
	rename(t, filepath.Join(a, "f1"), filepath.Join(a, "f1r"))
	p.waitInSync(t)
	wantContent(t, b, map[string]string{"f1r": "one, edited on B", "d2/sub/f2": "two"})
	wantAbsent(t, b, "d", "f1")

	// B deletes a file and a directory.
	if err := os.Remove(filepath.Join(b, "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(b, "empty")); err != nil {
		t.Fatal(err)
	}
	p.waitInSync(t)
	wantAbsent(t, a, "g", "empty")

	// While the devices are apart, both change the same entries.
	names := []string{stCipherName, stLongName, "sealfs.vault"}
	for _, n := range names {
		writeAt(t, filepath.Join(a, n), "base", time.Time{})
	}
	symlink(t, "t0", filepath.Join(a, "sym"))
	writeAt(t, filepath.Join(a, "delme"), "base", time.Time{})
	mkdirs(t, filepath.Join(a, "ren"))
	writeAt(t, filepath.Join(a, "ren", "old"), "old", time.Time{})
	p.waitInSync(t)
	p.disconnect(t)
	now := time.Now().Truncate(time.Second)
	older, newer := now.Add(-100*time.Second), now.Add(-50*time.Second)
	for _, n := range names { // B's versions are newer
		writeAt(t, filepath.Join(a, n), "from A", older)
		writeAt(t, filepath.Join(b, n), "from B", newer)
	}
	for _, side := range []struct {
		dir, target string
		mtime       time.Time
	}{{a, "tA", older}, {b, "tB", newer}} {
		os.Remove(filepath.Join(side.dir, "sym"))
		symlink(t, side.target, filepath.Join(side.dir, "sym"))
		lutimes(t, filepath.Join(side.dir, "sym"), side.mtime)
	}
	if err := os.Remove(filepath.Join(a, "delme")); err != nil { // deleted on A, changed on B
		t.Fatal(err)
	}
	writeAt(t, filepath.Join(b, "delme"), "changed on B", newer)
	rename(t, filepath.Join(a, "ren"), filepath.Join(a, "ren2")) // renamed on A, written into on B
	writeAt(t, filepath.Join(b, "ren", "new"), "new on B", time.Time{})
	for _, side := range []struct{ dir, file string }{{a, "a"}, {b, "b"}} { // made on both
		mkdirs(t, filepath.Join(side.dir, "both"))
		writeAt(t, filepath.Join(side.dir, "both", side.file), side.file, time.Time{})
	}
	p.A.scan(t)
	p.B.scan(t)
	p.reconnect(t)
	p.waitInSync(t)

	stamp := regexp.MustCompile(`\.sync-conflict-(\d{8}-\d{6})-[A-Z2-7]{7}`)
	for _, d := range []*syncthingDevice{p.A, p.B} {
		for _, n := range names {
			if got := readString(t, filepath.Join(d.dir, n)); got != "from B" {
				t.Errorf("%s: %s = %q, want the newer version", d.name, n, got)
			}
		}
		var copies []string
		for _, e := range syncthingListDir(t, d.dir) {
			if strings.Contains(e, ".sync-conflict-") {
				copies = append(copies, e)
			}
		}
		sort.Strings(copies)
		if len(copies) != len(names) {
			t.Errorf("%s: conflict copies %q, want one per file (none for the symlink); dir %q", d.name, copies,
				syncthingListDir(t, d.dir))
		}
		for _, c := range copies {
			if got := readString(t, filepath.Join(d.dir, c)); got != "from A" {
				t.Errorf("%s: %s = %q, want the older version", d.name, c, got)
			}
			cs := syncnames.ParseConflict(c)
			if len(cs) == 0 || cs[0].Service() != syncnames.Syncthing || !stamp.MatchString(cs[0].Marks[0].Text) {
				t.Errorf("%s: syncnames does not read Syncthing's copy %s: %+v", d.name, c, cs)
				continue
			}
			m := cs[0].Marks[0]
			when, err := time.ParseInLocation("20060102-150405", stamp.FindStringSubmatch(c)[1], time.Local)
			if err != nil || when.Before(now.Add(-time.Second)) || when.After(time.Now()) {
				t.Errorf("%s: %s: the stamp is not the time of the conflict (%v, %v)", d.name, c, when, err)
			}
			// Measured with 1.19.2: the device named is the one that made
			// the winning version (folder_sendrecv.go passes the incoming
			// file's ModifiedBy), not the one whose version the copy keeps.
			if m.Who != p.B.shortID() {
				t.Errorf("%s: %s names device %s, want the winner B %s (A is %s)", d.name, c, m.Who, p.B.shortID(), p.A.shortID())
			}
			t.Logf("%s: %s, a copy of %s", d.name, c, cs[0].Original)
		}

		// Symlinks are not checked for conflicts: one side wins, no copy.
		target, err := os.Readlink(filepath.Join(d.dir, "sym"))
		t.Logf("%s: symlink changed on both sides -> %q (%v), no copy kept", d.name, target, err)
		if other, _ := os.Readlink(filepath.Join(p.B.dir, "sym")); err != nil || target != other {
			t.Errorf("%s: the symlink did not converge: %q vs B's %q", d.name, target, other)
		}
		// A change beats a delete.
		if got := readString(t, filepath.Join(d.dir, "delme")); got != "changed on B" {
			t.Errorf("%s: deleted on A, changed on B: %q", d.name, got)
		}
		// Renamed on A while B wrote into it: the old name comes back
		// holding only B's new file; the renamed one has the rest.
		wantContent(t, d.dir, map[string]string{"ren2/old": "old", "ren/new": "new on B", "both/a": "a", "both/b": "b"})
		wantAbsent(t, d.dir, "ren/old", "ren2/new")
	}
}

func symlink(t testing.TB, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// lutimes sets a symlink's own times.
func lutimes(t testing.TB, path string, when time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t testing.TB, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func mkdirs(t testing.TB, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func rename(t testing.TB, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func readString(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
	}
	return string(b)
}

func wantContent(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s/%s = %q, %v; want %q", dir, name, got, err, want)
		}
	}
}

func wantDir(t testing.TB, path string) {
	t.Helper()
	if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
		t.Errorf("%s is not a directory: %v", path, err)
	}
}

func wantAbsent(t testing.TB, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s/%s still there (%v)", dir, n, err)
		}
	}
}

// TestSyncthingPreserves measures what Syncthing keeps of a tree made on A
// when it arrives on B: docs/sync.md's Syncthing column.
func TestSyncthingPreserves(t *testing.T) {
	p := startSyncthingPair(t, syncthingOptions{})
	makePreserveFixture(t, p.A.dir)
	p.waitInSync(t)
	version := syncthingVersion(t)
	// Measured with 1.19.2. Syncthing applies the 0777 permission bits and
	// mtimes of files; it does not sync owners (no syncOwnership before
	// 1.22), xattrs (no syncXattrs before 1.22), the setuid/setgid/sticky
	// bits, the mtimes of directories and symlinks, hard links (each name
	// becomes its own file) or FIFOs (skipped when scanning).
	checkPreserve(t, "Syncthing "+version, measurePreserve(p.A.dir, p.B.dir), map[string]bool{
		"file bytes (1 MiB, 0 bytes)":                          true,
		"names of 255 bytes (file, directory)":                 true,
		"file mtime, to the second":                            true,
		"file mtime, nanoseconds":                              true,
		"file modes (600, 640, 755, 444)":                      true,
		"setuid bit":                                           false,
		"owner and group (1234:5678)":                          false,
		"extended attributes (user.*)":                         p.xattrs,
		"symlinks (relative, absolute, dangling), as symlinks": true,
		"symlink mtime":                                        false,
		"hard links (one inode)":                               false,
		"empty directory":                                      true,
		"directory mode (750)":                                 true,
		"directory mtime":                                      false,
		"FIFO":                                                 false,
		"sparse file (8 MiB, one block written)":               true,
	})
	t.Logf("xattr sync supported by this version: %v", p.xattrs)
}
