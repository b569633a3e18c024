package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/internal/syncnames"
)

// A vault between two devices through real Syncthing (issue 15): what one
// device writes the other shows; a conflict keeps both versions, visible on
// both mounts and in extract; a directory renamed on one device while the
// other wrote into it loses nothing, and fsck --repair makes it whole; a
// directory whose ID file has not arrived refuses new names until it does.

// TestSyncthingVaultRoundTrip: device B joins with `sealfs recover`; files,
// directories, a long name and a symlink written in A's mount appear in B's,
// B's changes in A's; Syncthing's own files (.stfolder, a temp file of a
// transfer) leave fsck at exit 0; extract on B restores the same tree.
func TestSyncthingVaultRoundTrip(t *testing.T) {
	s := newSyncedVault(t, nil)
	s.p.waitInSync(t) // B's new slot reaches A's header
	a, b := s.a, s.b
	long := strings.Repeat("long name ", 20) + ".txt"
	s.withMount(a, func() {
		mkdirs(t, filepath.Join(a.mnt, "docs", "sub"))
		writeAt(t, filepath.Join(a.mnt, "docs", "report.pdf"), "report from A", time.Time{})
		writeAt(t, filepath.Join(a.mnt, "docs", long), "long from A", time.Time{})
		writeAt(t, filepath.Join(a.mnt, "docs", "sub", "deep.txt"), "deep", time.Time{})
		symlink(t, "report.pdf", filepath.Join(a.mnt, "docs", "link"))
	})
	s.p.waitInSync(t)
	want := map[string]string{"docs": "/", "docs/sub": "/", "docs/report.pdf": "report from A",
		"docs/" + long: "long from A", "docs/sub/deep.txt": "deep", "docs/link": "-> report.pdf"}
	s.withMount(b, func() {
		sameTree(t, "B's mount after A wrote", plainTree(t, b.mnt), want)
		writeAt(t, filepath.Join(b.mnt, "docs", "report.pdf"), "report edited on B", time.Time{})
		writeAt(t, filepath.Join(b.mnt, "docs", "from-b.txt"), "written on B", time.Time{})
		rename(t, filepath.Join(b.mnt, "docs", "sub"), filepath.Join(b.mnt, "docs", "sub2"))
	})
	s.p.waitInSync(t)
	want["docs/report.pdf"], want["docs/from-b.txt"] = "report edited on B", "written on B"
	delete(want, "docs/sub")
	delete(want, "docs/sub/deep.txt")
	want["docs/sub2"], want["docs/sub2/deep.txt"] = "/", "deep"
	s.withMount(a, func() { sameTree(t, "A's mount after B wrote", plainTree(t, a.mnt), want) })

	// A transfer in flight, as Syncthing names its temp file.
	var docsCipher string
	for _, n := range syncthingListDir(t, a.cipher) {
		if syncnames.Shape(n) == syncnames.CipherName {
			docsCipher = n
		}
	}
	writeAt(t, filepath.Join(a.cipher, ".syncthing."+docsCipher+".tmp"), "half a download", time.Time{})
	for _, e := range s.devices() {
		rep := s.fsck(t, e, 0)
		if rep.Files != 4 {
			t.Errorf("%s: fsck checked %d files, want 4", s.name(e), rep.Files)
		}
		if rep.SyncFiles == 0 {
			t.Errorf("%s: .stfolder not counted among the sync service's files", s.name(e))
		}
		for _, p := range rep.Problems {
			if e != a || p.Class != "sync" || p.PlainPath != "docs" || !strings.Contains(p.Detail, "Syncthing") {
				t.Errorf("%s: unexpected finding %+v", s.name(e), p)
			}
		}
	}
	dest := filepath.Join(b.base, "extract")
	b.mustRun("extract", "-q", "--password-file", s.pwB, b.cipher, dest)
	sameTree(t, "extract on B", plainTree(t, dest), want)
}

// TestSyncthingVaultConflict: the same files changed in both devices'
// mounts while they were apart come back as Syncthing's winner and
// conflict copy; both mounts show both versions under the same names,
// fsck notes the copies (exit 0), extract restores both, and a rename in
// the mount resolves the conflict for both devices.
func TestSyncthingVaultConflict(t *testing.T) {
	s := newSyncedVault(t, nil)
	s.p.waitInSync(t)
	a, b := s.a, s.b
	long := strings.Repeat("long name ", 20) + ".txt"
	s.withMount(a, func() {
		mkdirs(t, filepath.Join(a.mnt, "docs"))
		writeAt(t, filepath.Join(a.mnt, "docs", "report.pdf"), "base", time.Time{})
		writeAt(t, filepath.Join(a.mnt, "docs", long), "long base", time.Time{})
	})
	s.p.waitInSync(t)
	s.p.disconnect(t)
	now := time.Now().Truncate(time.Second)
	older, newer := now.Add(-100*time.Second), now.Add(-50*time.Second) // B's versions win
	for _, side := range []struct {
		e     *cliEnv
		who   string
		mtime time.Time
	}{{a, "A", older}, {b, "B", newer}} {
		s.withMount(side.e, func() {
			writeAt(t, filepath.Join(side.e.mnt, "docs", "report.pdf"), "version "+side.who, side.mtime)
			writeAt(t, filepath.Join(side.e.mnt, "docs", long), "long "+side.who, side.mtime)
		})
	}
	s.p.A.scan(t)
	s.p.B.scan(t)
	s.p.reconnect(t)
	s.p.waitInSync(t)

	// Syncthing names the device that made the winning version (measured:
	// TestSyncthingTwoDevices).
	stamp := `\(conflict \d{4}-\d{2}-\d{2} \d{6} ` + s.p.B.shortID() + `\)`
	copyRE := regexp.MustCompile(`^report ` + stamp + `\.pdf$`)
	longRE := regexp.MustCompile(`^` + regexp.QuoteMeta(strings.TrimSuffix(long, ".txt")) + ` ` + stamp + `\.txt$`)
	var want map[string]string
	for _, e := range s.devices() {
		s.withMount(e, func() {
			got := plainTree(t, e.mnt)
			var copyName, longCopy string
			for p := range got {
				switch name := strings.TrimPrefix(p, "docs/"); {
				case copyRE.MatchString(name):
					copyName = name
				case longRE.MatchString(name):
					longCopy = name
				}
			}
			if copyName == "" || longCopy == "" {
				t.Fatalf("%s: the mount does not show both conflict copies: %q", s.name(e), syncthingListDir(t, filepath.Join(e.mnt, "docs")))
			}
			if want == nil {
				want = map[string]string{"docs": "/", "docs/report.pdf": "version B", "docs/" + long: "long B",
					"docs/" + copyName: "version A", "docs/" + longCopy: "long A"}
			}
			sameTree(t, s.name(e)+"'s mount after the conflict", got, want)
		})
		rep := s.fsck(t, e, 0)
		if rep.ConflictCopies != 2 || rep.count("conflict") != 2 || len(rep.Problems) != 2 {
			t.Errorf("%s: fsck: want two conflict notes, got %+v", s.name(e), rep)
		}
		dest := filepath.Join(e.base, "extract-conflict")
		e.mustRun("extract", "-q", "--password-file", s.pw(e), e.cipher, dest)
		sameTree(t, s.name(e)+": extract after the conflict", plainTree(t, dest), want)
	}
	var copyName, longCopy string
	for p := range want {
		if name := strings.TrimPrefix(p, "docs/"); copyRE.MatchString(name) {
			copyName = name
		} else if longRE.MatchString(name) {
			longCopy = name
		}
	}
	r := a.run("fsck", "-q", "--password-file", s.pwA, a.cipher)
	if r.code != 0 || !strings.Contains(r.stdout, "conflict copies (2, notes: not damage):") ||
		!strings.Contains(r.stdout, "docs/report.pdf has a conflict copy shown as docs/"+copyName) {
		t.Errorf("fsck's report of the conflict (exit %d):\n%s", r.code, r.stdout)
	}

	// Resolved on A from the mount: A's report wins after all, B's long
	// name stays.
	s.withMount(a, func() {
		rename(t, filepath.Join(a.mnt, "docs", copyName), filepath.Join(a.mnt, "docs", "report.pdf"))
		if err := os.Remove(filepath.Join(a.mnt, "docs", longCopy)); err != nil {
			t.Fatal(err)
		}
	})
	s.p.waitInSync(t)
	resolved := map[string]string{"docs": "/", "docs/report.pdf": "version A", "docs/" + long: "long B"}
	s.withMount(b, func() { sameTree(t, "B's mount after A resolved", plainTree(t, b.mnt), resolved) })
	if rep := s.fsck(t, b, 0); len(rep.Problems) != 0 {
		t.Errorf("B: fsck after the resolution: %+v", rep.Problems)
	}
}

// TestSyncthingVaultRenameWhileWriting: A renames two directories while B
// writes a file into each. Syncthing brings each directory back under its
// old name holding B's file and no sealfs.dirid. For "first" the ID derived
// from its name still fits; "second" had been renamed before, so only its
// renamed twin's ID does. Both mounts show every file and refuse new names
// in the two; fsck says so (exit 4), --repair is a dry run without --yes,
// --repair --yes fixes it (exit 1), and both devices are clean after.
func TestSyncthingVaultRenameWhileWriting(t *testing.T) {
	s := newSyncedVault(t, nil)
	s.p.waitInSync(t)
	a, b := s.a, s.b
	s.withMount(a, func() {
		for _, d := range []string{"first", "second-orig"} {
			mkdirs(t, filepath.Join(a.mnt, d))
			writeAt(t, filepath.Join(a.mnt, d, "old"), d+" old", time.Time{})
		}
		rename(t, filepath.Join(a.mnt, "second-orig"), filepath.Join(a.mnt, "second"))
	})
	s.p.waitInSync(t)
	s.p.disconnect(t)
	s.withMount(a, func() {
		rename(t, filepath.Join(a.mnt, "first"), filepath.Join(a.mnt, "first-renamed"))
		rename(t, filepath.Join(a.mnt, "second"), filepath.Join(a.mnt, "second-renamed"))
	})
	s.withMount(b, func() {
		writeAt(t, filepath.Join(b.mnt, "first", "new-on-b"), "first, written on B", time.Time{})
		writeAt(t, filepath.Join(b.mnt, "second", "new-on-b"), "second, written on B", time.Time{})
	})
	s.p.A.scan(t)
	s.p.B.scan(t)
	s.p.reconnect(t)
	s.p.waitInSync(t)

	want := map[string]string{"first": "/", "first/new-on-b": "first, written on B", "first-renamed": "/",
		"first-renamed/old": "first old", "second": "/", "second/new-on-b": "second, written on B",
		"second-renamed": "/", "second-renamed/old": "second-orig old"}
	for _, e := range s.devices() {
		s.withMount(e, func() {
			sameTree(t, s.name(e)+"'s mount after the race", plainTree(t, e.mnt), want)
			for _, d := range []string{"first", "second"} {
				err := os.WriteFile(filepath.Join(e.mnt, d, "more"), []byte("x"), 0o644)
				if !errors.Is(err, syscall.EAGAIN) {
					t.Errorf("%s: a new name in %s, whose ID file is missing: %v, want EAGAIN", s.name(e), d, err)
				}
			}
		})
	}
	rep := s.fsck(t, a, 4)
	var second, first bool
	for _, p := range rep.Problems {
		second = second || p.Class == "misplaced" && p.PlainPath == "second" && strings.Contains(p.Detail, `the ID of "second-renamed"`)
		first = first || p.Class == "sync" && p.PlainPath == "first" && p.Repair != ""
	}
	if !first || !second || len(rep.Problems) != 2 {
		t.Fatalf("fsck on A: want a sync note for first and a misplaced finding for second, both repairable: %+v", rep.Problems)
	}
	before := cipherState(t, a.cipher)
	r := a.run("fsck", "-q", "--repair", "--password-file", s.pwA, a.cipher)
	if r.code != 4 || !strings.Contains(r.stdout, "dry run, nothing changed") {
		t.Errorf("fsck --repair without a terminal or --yes: exit %d\n%s", r.code, r.stdout)
	}
	if after := cipherState(t, a.cipher); after != before {
		t.Errorf("the dry run changed the cipher folder:\n%s\nafter:\n%s", before, after)
	}
	rep = s.fsck(t, a, 1, "--repair", "--yes")
	for _, p := range rep.Problems {
		if !p.Repaired {
			t.Errorf("not repaired: %+v", p)
		}
	}
	s.fsck(t, a, 0)
	s.p.waitInSync(t)
	if rep := s.fsck(t, b, 0); len(rep.Problems) != 0 {
		t.Errorf("B after A's repair: %+v", rep.Problems)
	}
	s.withMount(b, func() {
		for _, d := range []string{"first", "second"} {
			writeAt(t, filepath.Join(b.mnt, d, "after-repair"), d+" after the repair", time.Time{})
			want[d+"/after-repair"] = d + " after the repair"
		}
		sameTree(t, "B's mount after the repair", plainTree(t, b.mnt), want)
	})
	s.p.waitInSync(t)
	s.withMount(a, func() { sameTree(t, "A's mount after the repair", plainTree(t, a.mnt), want) })
}

// TestSyncthingVaultPartialSync: B ignores sealfs.dirid files (a Syncthing
// ignore pattern), so it has a directory's entries but not its ID file, as
// when a sync stops half-way. Nothing is lost: entries whose names the
// derived ID proves are shown; those of a renamed directory wait for its ID
// file; new names are refused in both; fsck calls it a sync in progress
// (exit 0). Once the ID files arrive, everything is shown and writable.
func TestSyncthingVaultPartialSync(t *testing.T) {
	s := newSyncedVault(t, func(p *syncthingPair) {
		setIgnores(t, p.B, []string{"sealfs.dirid"})
	})
	a, b := s.a, s.b
	s.withMount(a, func() {
		mkdirs(t, filepath.Join(a.mnt, "plain"))
		writeAt(t, filepath.Join(a.mnt, "plain", "f"), "in plain", time.Time{})
		mkdirs(t, filepath.Join(a.mnt, "was"))
		writeAt(t, filepath.Join(a.mnt, "was", "g"), "in renamed", time.Time{})
		rename(t, filepath.Join(a.mnt, "was"), filepath.Join(a.mnt, "renamed"))
	})
	// B has everything but the ID files: wait until it needs nothing
	// (ignored files are not needed) and holds the two directories.
	s.p.A.scan(t)
	s.p.B.scan(t)
	s.p.waitFor(t, "B has all but the ignored ID files", func() (bool, string) {
		st := s.p.B.status(t)
		n := 0
		for _, name := range syncthingListDir(t, b.cipher) {
			if syncnames.Shape(name) == syncnames.CipherName {
				n += len(syncthingListDir(t, filepath.Join(b.cipher, name)))
			}
		}
		return st.State == "idle" && st.NeedTotalItems == 0 && n == 2, fmt.Sprintf("%+v, %d files in directories", st, n)
	})
	s.withMount(b, func() {
		sameTree(t, "B's mount without the ID files", plainTree(t, b.mnt),
			map[string]string{"plain": "/", "plain/f": "in plain", "renamed": "/"})
		for _, d := range []string{"plain", "renamed"} {
			err := os.WriteFile(filepath.Join(b.mnt, d, "new"), []byte("x"), 0o644)
			if !errors.Is(err, syscall.EAGAIN) {
				t.Errorf("B: a new name in %s before its ID file arrived: %v, want EAGAIN", d, err)
			}
		}
	})
	rep := s.fsck(t, b, 0)
	if rep.count("sync") != 3 || len(rep.Problems) != 3 {
		t.Errorf("fsck on B: want three sync notes (two ID files, one name): %+v", rep.Problems)
	}
	setIgnores(t, s.p.B, nil)
	s.p.waitInSync(t)
	s.withMount(b, func() {
		writeAt(t, filepath.Join(b.mnt, "renamed", "new"), "after the ID file", time.Time{})
		sameTree(t, "B's mount after the ID files arrived", plainTree(t, b.mnt), map[string]string{"plain": "/",
			"plain/f": "in plain", "renamed": "/", "renamed/g": "in renamed", "renamed/new": "after the ID file"})
	})
	if rep := s.fsck(t, b, 0); len(rep.Problems) != 0 {
		t.Errorf("fsck on B after the sync: %+v", rep.Problems)
	}
}

// setIgnores sets the folder's ignore patterns on device d (Syncthing
// rescans it).
func setIgnores(t *testing.T, d *syncthingDevice, patterns []string) {
	t.Helper()
	if patterns == nil {
		patterns = []string{}
	}
	body, err := jsonBody(map[string]any{"ignore": patterns})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.rest("POST", "/rest/db/ignores?folder="+syncthingFolderID, body, nil); err != nil {
		t.Fatalf("syncthing %s: setting ignores: %v", d.name, err)
	}
	d.scan(t)
}

// cipherState describes every object below dir (path, type, size, mtime),
// to show that a dry run changed nothing.
func cipherState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d %d\n", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
