package syncnames

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseConflictRealWorld builds each service's conflict copy of real
// cipher names the way that service does (see the sources in conflict.go)
// and checks that the first candidate that decrypts is the original, with
// the marker's fields read out.
func TestParseConflictRealWorld(t *testing.T) {
	v := newVault(t)
	x, _ := v.stored(t, "report.pdf")             // 43 characters
	y, _ := v.stored(t, strings.Repeat("y", 100)) // 150 characters
	ln, lnEnc := v.stored(t, strings.Repeat("L", 200))
	h := strings.TrimPrefix(ln, "sealfs.ln.")
	encOf := map[string]string{ln: lnEnc}

	cases := []struct {
		stored string
		plain  string
		mark   Mark // Text is checked to be the inserted marker
	}{
		// Syncthing: before filepath.Ext; a cipher name has none.
		{x + ".sync-conflict-20261202-130124-CAVCEQA", "report.pdf",
			Mark{Service: Syncthing, Date: "2026-12-02", Time: "130124", Who: "CAVCEQA"}},
		{y + ".sync-conflict-20261202-130124-CAVCEQA", strings.Repeat("y", 100),
			Mark{Service: Syncthing, Date: "2026-12-02", Time: "130124", Who: "CAVCEQA"}},
		// ... and for a long-name entry filepath.Ext is ".<hash>".
		{"sealfs.ln.sync-conflict-20261202-130124-CAVCEQA." + h, strings.Repeat("L", 200),
			Mark{Service: Syncthing, Date: "2026-12-02", Time: "130124", Who: "CAVCEQA"}},
		// Dropbox (help center wording; older clients: no name, or the computer's).
		{x + " (conflicted copy 2026-12-02)", "report.pdf", Mark{Service: Dropbox, Date: "2026-12-02"}},
		{x + " (Alice's conflicted copy 2026-12-02)", "report.pdf", Mark{Service: Dropbox, Date: "2026-12-02", Who: "Alice"}},
		{x + " (Miguel Mota's conflicted copy 2014-06-17)", "report.pdf",
			Mark{Service: Dropbox, Date: "2014-06-17", Who: "Miguel Mota"}},
		{x + " (Pastor's Mac's conflicted copy 2026-07-25)", "report.pdf",
			Mark{Service: Dropbox, Date: "2026-07-25", Who: "Pastor's Mac"}},
		{x + " (imacfhe.local's conflicted copy 2023-04-16)", "report.pdf",
			Mark{Service: Dropbox, Date: "2023-04-16", Who: "imacfhe.local"}},
		{"sealfs.ln (imacfhe.local's conflicted copy 2023-04-16)." + h, strings.Repeat("L", 200),
			Mark{Service: Dropbox, Date: "2023-04-16", Who: "imacfhe.local"}},
		{x + " (Alice’s conflicted copy 2026-12-02 (1))", "report.pdf",
			Mark{Service: Dropbox, Date: "2026-12-02", Who: "Alice", Counter: "1"}},
		{x + " (Case Conflict)", "report.pdf", Mark{Service: Dropbox, Label: "case conflict"}},
		{x + " (Case Conflict 1)", "report.pdf", Mark{Service: Dropbox, Label: "case conflict", Counter: "1"}},
		{x + " (Selective Sync Conflict)", "report.pdf", Mark{Service: Dropbox, Label: "selective sync conflict"}},
		{x + " (conflicting copy 2)", "report.pdf", Mark{Service: Dropbox, Label: "conflicting copy", Counter: "2"}},
		{"sealfs.ln (Bob's conflicted copy 2026-12-02)." + h, strings.Repeat("L", 200),
			Mark{Service: Dropbox, Date: "2026-12-02", Who: "Bob"}},
		// Nextcloud / ownCloud ≥ 2.5, with and without the user's display name.
		{x + " (conflicted copy 2026-12-02 120000)", "report.pdf",
			Mark{Service: Nextcloud, Date: "2026-12-02", Time: "120000"}},
		{x + " (conflicted copy Alice Smith 2026-12-02 120000)", "report.pdf",
			Mark{Service: Nextcloud, Date: "2026-12-02", Time: "120000", Who: "Alice Smith"}},
		{x + " (case clash from 2026-12-02 120000)", "report.pdf",
			Mark{Service: Nextcloud, Label: "case clash", Date: "2026-12-02", Time: "120000"}},
		// ownCloud before 2.5.
		{x + "_conflict-20261202-120000", "report.pdf", Mark{Service: Nextcloud, Date: "2026-12-02", Time: "120000"}},
		{x + "_conflict_alice-20261202-120000", "report.pdf",
			Mark{Service: Nextcloud, Date: "2026-12-02", Time: "120000", Who: "alice"}},
		// Google Drive's duplicate names, before the extension or at the end.
		{x + " (1)", "report.pdf", Mark{Service: GoogleDrive, Counter: "1"}},
		{"sealfs.ln (2)." + h, strings.Repeat("L", 200), Mark{Service: GoogleDrive, Counter: "2"}},
		{ln + " (3)", strings.Repeat("L", 200), Mark{Service: GoogleDrive, Counter: "3"}},
		// OneDrive: the computer's name; the abraunegg client's forms.
		{x + "-DESKTOP-7QK2L9M", "report.pdf", Mark{Service: OneDrive, Who: "DESKTOP-7QK2L9M"}},
		{x + "-Neo", "report.pdf", Mark{Service: OneDrive, Who: "Neo"}},
		{x + "-predator-safeBackup-0001", "report.pdf", Mark{Service: OneDrive, Who: "predator", Counter: "0001"}},
		// 43 + 21 = 64 letters: the copy has a cipher name's shape itself.
		{x + "-pred-safeBackup-0001", "report.pdf", Mark{Service: OneDrive, Who: "pred", Counter: "0001"}},
		{"sealfs.ln-LAPTOP." + h, strings.Repeat("L", 200), Mark{Service: OneDrive, Who: "LAPTOP"}},
		// Seafile.
		{x + " (SFConflict alice@example.com 2026-12-02-13-01-24)", "report.pdf",
			Mark{Service: Seafile, Who: "alice@example.com", Date: "2026-12-02", Time: "130124"}},
		// Resilio Sync (name clashes).
		{x + ".Conflict", "report.pdf", Mark{Service: Resilio}},
		{x + ".Conflict2", "report.pdf", Mark{Service: Resilio, Counter: "2"}},
		{x + ".Conflict 3", "report.pdf", Mark{Service: Resilio, Counter: "3"}},
		// rclone bisync.
		{x + "..path1", "report.pdf", Mark{Service: Rclone, Label: "path1"}},
		{x + ".conflict2", "report.pdf", Mark{Service: Rclone, Counter: "2"}},
		// A localised or unknown marker still finds its original.
		{x + " (In Konflikt stehende Kopie von Alice 2026-12-02)", "report.pdf",
			Mark{Service: Unknown, Label: "In Konflikt stehende Kopie von Alice 2026-12-02"}},
	}
	for _, tc := range cases {
		plain, c, ok := v.resolve(tc.stored, encOf)
		if !ok || plain != tc.plain {
			t.Errorf("%s: resolved to %q, %v; candidates %+v", tc.stored, plain, ok, ParseConflict(tc.stored))
			continue
		}
		if len(c.Marks) != 1 {
			t.Errorf("%s: marks %+v", tc.stored, c.Marks)
			continue
		}
		m := c.Marks[0]
		if !strings.Contains(tc.stored, m.Text) || len(tc.stored)-len(m.Text) != len(c.Original) {
			t.Errorf("%s: marker text %q does not account for %s", tc.stored, m.Text, c.Original)
		}
		m.Text = ""
		if m != tc.mark {
			t.Errorf("%s: mark %+v, want %+v", tc.stored, m, tc.mark)
		}
		if first := ParseConflict(tc.stored)[0]; first.Original != c.Original {
			t.Errorf("%s: the original is not the first candidate (%s)", tc.stored, first.Original)
		}
	}
}

func TestParseConflictMetadata(t *testing.T) {
	v := newVault(t)
	ln, _ := v.stored(t, strings.Repeat("L", 200))
	h := strings.TrimPrefix(ln, "sealfs.ln.")
	for stored, want := range map[string]Conflict{
		"sealfs.sync-conflict-20261202-130124-CAVCEQA.vault":           {Original: "sealfs.vault", Kind: VaultHeader},
		"sealfs.sync-conflict-20261202-130124-CAVCEQA.dirid":           {Original: "sealfs.dirid", Kind: DirID},
		ln + ".sync-conflict-20261202-130124-CAVCEQA.name":             {Original: ln + ".name", Kind: LongNameSide},
		"sealfs.ln." + h + " (conflicted copy 2026-12-02 120000).name": {Original: ln + ".name", Kind: LongNameSide},
		"sealfs (Alice's conflicted copy 2026-12-02).vault":            {Original: "sealfs.vault", Kind: VaultHeader},
		"sealfs.dirid (1)": {Original: "sealfs.dirid", Kind: DirID},
	} {
		cs := ParseConflict(stored)
		if len(cs) == 0 || cs[0].Original != want.Original || cs[0].Kind != want.Kind {
			t.Errorf("%s: %+v, want %s (%v)", stored, cs, want.Original, want.Kind)
		}
	}
}

// TestParseConflictNested: a conflict copy of a conflict copy (Dropbox and
// Nextcloud make them; Syncthing deletes the older copy instead).
func TestParseConflictNested(t *testing.T) {
	v := newVault(t)
	x, _ := v.stored(t, "report.pdf")
	stored := x + " (Alice's conflicted copy 2026-12-02) (Bob's conflicted copy 2026-12-03)"
	plain, c, ok := v.resolve(stored, nil)
	if !ok || plain != "report.pdf" || len(c.Marks) != 2 {
		t.Fatalf("%+v %v %v", c, plain, ok)
	}
	if c.Marks[0].Who != "Alice" || c.Marks[1].Who != "Bob" || c.Service() != Dropbox {
		t.Errorf("marks %+v, want Alice's first", c.Marks)
	}
	stored = x + " (Alice's conflicted copy 2026-12-02) (1)"
	if _, c, _ := v.resolve(stored, nil); len(c.Marks) != 2 || c.Marks[0].Who != "Alice" || c.Service() != GoogleDrive {
		t.Errorf("%s: marks %+v", stored, c.Marks)
	}
	if got := ParseConflict(x + " (1) (2) (3) (4)"); len(got) != 0 {
		t.Errorf("four markers deep: %+v (only %d are followed)", got, maxNesting)
	}
}

// TestParseConflictOneDriveAmbiguity: with a '-' inside the cipher name at
// a valid length, "X-HOST" has two readings; both are candidates and only
// the original decrypts.
func TestParseConflictOneDriveAmbiguity(t *testing.T) {
	v := newVault(t)
	// A 64-letter cipher name with '-' at index 43: its 43-letter prefix
	// also has a cipher-name shape when canonical.
	plain, enc := v.withDash(t, 20, func(e string) bool {
		return len(e) == 64 && e[43] == '-' && IsStored(e[:43])
	})
	stored := enc + "-LAPTOP"
	cs := ParseConflict(stored)
	var originals []string
	for _, c := range cs {
		originals = append(originals, c.Original)
	}
	if !reflect.DeepEqual(originals, []string{enc, enc[:43]}) {
		t.Fatalf("candidates %q, want the longer reading first, then the shorter", originals)
	}
	got, c, ok := v.resolve(stored, nil)
	if !ok || got != plain || c.Marks[0].Who != "LAPTOP" {
		t.Errorf("resolved %q %+v", got, c)
	}
}

func TestParseConflictRejects(t *testing.T) {
	v := newVault(t)
	x, _ := v.stored(t, "report.pdf")
	if !IsStored(x + "-pred-safeBackup-0001") {
		t.Error("the shape-alike OneDrive copy in TestParseConflictRealWorld lost its point")
	}
	for _, s := range []string{
		x, "sealfs.vault", "sealfs.ln." + strings.Repeat("A", 43), // no marker in them
		x[:40] + " (1)", x + "A (1)", "report (conflicted copy 2026-12-02).pdf", ".stfolder", "",
		x + ".sync-conflict-2026120-130124-CAVCEQA", x + ".sync-conflict-20261202-130124-CAVCEQAB",
		x + " ()", x + " (1", x + ".conflict", strings.Repeat("A", 300) + " (1)",
	} {
		if cs := ParseConflict(s); len(cs) != 0 {
			t.Errorf("ParseConflict(%q) = %+v", s, cs)
		}
	}
}

func TestParseConflictBounded(t *testing.T) {
	// A name made to match as many schemes as possible still gives at
	// most maxCandidates, each a sealfs shape shorter than the input.
	var b strings.Builder
	b.WriteString(strings.Repeat("A", 43))
	for b.Len() < 240 {
		b.WriteString("-A (1)")
	}
	s := b.String()
	cs := ParseConflict(s)
	if len(cs) > maxCandidates {
		t.Errorf("%d candidates", len(cs))
	}
	for _, c := range cs {
		if !IsStored(c.Original) || len(c.Original) >= len(s) {
			t.Errorf("candidate %q", c.Original)
		}
	}
}
