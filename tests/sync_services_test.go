package tests

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/offline"
)

// Services without a client here (Dropbox, Nextcloud, Google Drive,
// OneDrive) are tested by planting what their documentation says they
// leave (docs/sync.md §2.2, §3): conflict copies of a file, a long name, a
// directory; their own files; a download in flight. The mount, fsck and
// extract must agree on every name: what the mount lists is what extract
// restores, and the copies fsck notes are the display names the mount
// shows. Entries of another directory's ID in a directory without its ID
// file (a rename on one device while another wrote) are part of the same
// view, before and after fsck --repair restores the ID file.
func TestSyncServicesMountFsckExtractAgree(t *testing.T) {
	m := newMount(t, mountOpts{})
	long := strings.Repeat("long name ", 20) + ".txt"
	for _, d := range []string{"docs", "docs/photos", "moved", "elsewhere"} {
		if err := os.Mkdir(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, m.p("docs", "report.pdf"), []byte("the winner"))
	mustWrite(t, m.p("docs", long), []byte("long winner"))
	mustWrite(t, m.p("docs", "photos", "a.jpg"), []byte("jpeg"))
	if err := os.Symlink("report.pdf", m.p("docs", "link")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("elsewhere", "stray.txt"), []byte("written under elsewhere's ID"))
	rep, lng, lnk := m.cipherOf("docs/report.pdf"), m.cipherOf("docs/"+long), m.cipherOf("docs/link")
	photos, stray, moved := m.cipherOf("docs/photos"), m.cipherOf("elsewhere/stray.txt"), m.cipherOf("moved")
	m.unmount()

	// The losing version of report.pdf, as each service names its copy.
	loser := encryptContent(t, m.keys, "the loser")
	for _, suffix := range []string{
		" (Alice's conflicted copy 2026-12-02)", // Dropbox
		" (conflicted copy 2026-12-02)",         // Dropbox, older clients
		" (conflicted copy 2026-12-02 120000)",  // Nextcloud
		" (case clash from 2026-12-02 120000)",  // Nextcloud, case clash
		" (1)",                                  // Google Drive
		"-LAPTOP",                               // OneDrive
	} {
		mustWrite(t, rep+suffix, loser)
	}
	dir, base := filepath.Split(lng)
	h := strings.TrimPrefix(base, "sealfs.ln.")
	mustWrite(t, filepath.Join(dir, "sealfs.ln (Alice's conflicted copy 2026-12-02)."+h), encryptContent(t, m.keys, "long loser"))
	mustWrite(t, filepath.Join(dir, "sealfs.ln-LAPTOP."+h), encryptContent(t, m.keys, "long loser 2"))
	copyCipher(t, lnk, lnk+" (conflicted copy 2026-12-02 120000)")
	// Google Drive keeps two folders of one name: the second, with its own
	// (identical) ID file and a file, shows as "photos (1)".
	if err := os.Mkdir(photos+" (1)", 0o755); err != nil {
		t.Fatal(err)
	}
	copyCipher(t, filepath.Join(photos, crypto.DirIDFile), filepath.Join(photos+" (1)", crypto.DirIDFile))
	for _, f := range syncthingListDir(t, photos) {
		if f != crypto.DirIDFile {
			mustWrite(t, filepath.Join(photos+" (1)", f), encryptContent(t, m.keys, "other jpeg"))
		}
	}
	// "moved" came back from a sync race without its ID file, holding a
	// file written under the ID of the directory now called "elsewhere".
	rename(t, stray, filepath.Join(moved, filepath.Base(stray)))
	if err := os.Remove(filepath.Join(moved, crypto.DirIDFile)); err != nil {
		t.Fatal(err)
	}
	// The services' own files and a download in flight.
	for _, n := range []string{".dropbox", ".sync_0123abcd.db", ".nextcloudsync.log", "desktop.ini", "Thumbs.db"} {
		mustWrite(t, filepath.Join(m.cipher, n), []byte("x"))
	}
	mustWrite(t, filepath.Join(filepath.Dir(rep), "."+filepath.Base(rep)+".~5e2a"), []byte("half a download"))
	for _, d := range []string{".dropbox.cache", ".tmp.drivedownload"} {
		if err := os.Mkdir(filepath.Join(m.cipher, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	want := map[string]string{
		"docs": "/", "docs/report.pdf": "the winner", "docs/" + long: "long winner", "docs/link": "-> report.pdf",
		"docs/photos": "/", "docs/photos/a.jpg": "jpeg", "elsewhere": "/", "moved": "/",
		"moved/stray.txt": "written under elsewhere's ID",
		"docs/report (conflict 2026-12-02 Alice).pdf":                                   "the loser",
		"docs/report (conflict 2026-12-02).pdf":                                         "the loser",
		"docs/report (conflict 2026-12-02 120000).pdf":                                  "the loser",
		"docs/report (conflict case clash 2026-12-02 120000).pdf":                       "the loser",
		"docs/report (conflict 1).pdf":                                                  "the loser",
		"docs/report (conflict LAPTOP).pdf":                                             "the loser",
		"docs/" + strings.TrimSuffix(long, ".txt") + " (conflict 2026-12-02 Alice).txt": "long loser",
		"docs/" + strings.TrimSuffix(long, ".txt") + " (conflict LAPTOP).txt":           "long loser 2",
		"docs/link (conflict 2026-12-02 120000)":                                        "-> report.pdf",
		"docs/photos (conflict 1)":                                                      "/",
		"docs/photos (conflict 1)/a.jpg":                                                "other jpeg",
	}
	agree := func(stage string, wantMisplaced int) {
		t.Helper()
		m.remount(mountOpts{})
		mounted := plainTree(t, m.mnt)
		m.unmount()
		sameTree(t, stage+": the mount", mounted, want)
		r, err := offline.CheckWith(offline.CheckOptions{Keys: m.keys, CipherDir: m.cipher})
		if err != nil {
			t.Fatal(err)
		}
		var copies []string
		misplaced := 0
		for _, p := range r.Problems {
			switch p.Class {
			case offline.ClassConflict:
				copies = append(copies, p.PlainPath)
			case offline.ClassMisplaced:
				misplaced++
				if p.PlainPath != "moved" || !strings.Contains(p.Detail, `the ID of "elsewhere"`) {
					t.Errorf("%s: fsck: %v", stage, p)
				}
			case offline.ClassSync:
				if !strings.Contains(p.Detail, "Nextcloud") || p.PlainPath != "docs/report.pdf" {
					t.Errorf("%s: fsck: %v", stage, p)
				}
			default:
				t.Errorf("%s: fsck: %v", stage, p)
			}
		}
		var shown []string
		for p := range mounted {
			if strings.Contains(p, "(conflict") && !strings.Contains(p, ")/") {
				shown = append(shown, p)
			}
		}
		sort.Strings(copies)
		sort.Strings(shown)
		if strings.Join(copies, "\n") != strings.Join(shown, "\n") {
			t.Errorf("%s: fsck's conflict copies\n%s\nthe mount's\n%s", stage, strings.Join(copies, "\n"), strings.Join(shown, "\n"))
		}
		if misplaced != wantMisplaced || r.SyncFiles != 7 || r.ConflictCopies != len(shown) {
			t.Errorf("%s: %d misplaced (want %d), %d sync service files (want 7), %d copies:\n%v", stage, misplaced,
				wantMisplaced, r.SyncFiles, r.ConflictCopies, r.Problems)
		}
		dest := filepath.Join(t.TempDir(), "extract")
		xr, err := offline.Extract(offline.ExtractOptions{Keys: m.keys, CipherDir: m.cipher, Dest: dest})
		if err != nil || xr.ExitCode() != offline.ExitClean {
			t.Errorf("%s: extract: %v %v", stage, err, xr.Problems)
		}
		sameTree(t, stage+": extract", plainTree(t, dest), want)
		if wantMisplaced > 0 {
			if err := offline.Repair(m.keys, m.cipher, r); err != nil || r.Repaired() != wantMisplaced || r.ExitCode() != offline.ExitRepaired {
				t.Fatalf("%s: repair: %v, %d repaired, exit %d: %v", stage, err, r.Repaired(), r.ExitCode(), r.Problems)
			}
		}
	}
	agree("planted", 1)
	agree("after fsck --repair", 0)
}

// encryptContent is a cipher file of content under keys.
func encryptContent(t *testing.T, keys *crypto.Keys, content string) []byte {
	t.Helper()
	var b strings.Builder
	if _, err := keys.EncryptStream(&b, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}
