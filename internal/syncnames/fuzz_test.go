package syncnames

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

var fuzzSeeds = []string{
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I.sync-conflict-20261202-130124-CAVCEQA",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I (Alice's conflicted copy 2026-12-02 (1))",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I (conflicted copy Alice Smith 2026-12-02 120000)",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I-DESKTOP-7QK2L9M",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I-host-safeBackup-0001",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I_conflict_bob-20261202-120000",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I (SFConflict a@b.c 2026-12-02-13-01-24)",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I.Conflict 3",
	"M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I..path2",
	"sealfs.ln.sync-conflict-20261202-130124-CAVCEQA.4hCqTU3Mq8p0PAsq6G7Xb9yb6dNXO3ZRfKUkTplTCCg",
	"sealfs (1).vault",
	"sealfs.ln.4hCqTU3Mq8p0PAsq6G7Xb9yb6dNXO3ZRfKUkTplTCCg (1).name",
	"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA (1) (2) (3)",
	".syncthing.M9zJyzT8JK4j6ITxIUQSW7iZUekVbFbsg7c2dBY_C2I.tmp",
	"report (conflict 2026-12-02 130124 CAVCEQA).pdf",
	"", ".stfolder", " (", " ()", "(((", "-", "é (1)",
}

// FuzzParseConflict: any directory entry, however hostile, parses without
// panicking into at most maxCandidates candidates, each a sealfs shape
// shorter than the input whose display names are valid; housekeeping and
// sealfs shapes never overlap.
func FuzzParseConflict(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		cs := ParseConflict(stored)
		if len(cs) > maxCandidates {
			t.Fatalf("%d candidates", len(cs))
		}
		if IsStored(stored) && Housekeeping(stored) {
			t.Fatalf("sealfs shape %q taken for housekeeping", stored)
		}
		if p, ok := InProgress(stored); ok && (!Housekeeping(stored) || p.Of != "" && !IsStored(p.Of)) {
			t.Fatalf("InProgress(%q) = %+v", stored, p)
		}
		seen := map[string]bool{}
		for _, c := range cs {
			if c.Kind == NotSealfs || Shape(c.Original) != c.Kind || len(c.Original) >= len(stored) || len(c.Marks) == 0 {
				t.Fatalf("%q: bad candidate %+v", stored, c)
			}
			if seen[c.Original] {
				t.Fatalf("%q: candidate %q twice", stored, c.Original)
			}
			seen[c.Original] = true
			for _, d := range []string{Display("report.pdf", c), DisplayDir(strings.Repeat("d", 255), c)} {
				checkDisplay(t, d)
			}
		}
	})
}

// FuzzDisplay: for any valid plaintext name and any marker fields, the
// display name is a valid name of at most 255 bytes that IsDisplay
// recognises, parses back to plain (or to a base cut to fit and tagged with
// plain's hash), and differs for different names.
func FuzzDisplay(f *testing.F) {
	f.Add("report.pdf", "report2.pdf", "CAVCEQA", "2026-12-02", false)
	f.Add(strings.Repeat("a", 255), strings.Repeat("a", 254)+"b", "x", "", true)
	f.Add("a (conflict 1).txt", "a.txt", "1", "", false)
	f.Add(".bashrc", "x.tar.gz", "a)b(c#", "\xff", false)
	f.Fuzz(func(t *testing.T, plain, other, who, date string, dir bool) {
		if crypto.ValidName(plain) != nil || crypto.ValidName(other) != nil {
			return
		}
		c := Conflict{Marks: []Mark{{Who: who, Date: date, Label: who + date}}}
		d := display(plain, c, dir, 1)
		checkDisplay(t, d)
		base, detail, ext, _ := ParseDisplay(d)
		if base+" ("+detail+")"+ext != d {
			t.Fatalf("ParseDisplay(%q) does not split it", d)
		}
		if base+ext != plain {
			sum := sha256.Sum256([]byte(plain))
			if !strings.HasSuffix(base, "~"+hex.EncodeToString(sum[:4])) || len(plain)+len(detail)+3 <= 255 {
				t.Fatalf("%q displays as %q, which parses to %q + %q", plain, d, base, ext)
			}
		}
		if other != plain && display(other, c, dir, 1) == d {
			t.Fatalf("%q and %q both display as %q", plain, other, d)
		}
		if d2 := display(plain, c, dir, 2); d2 == d || !IsDisplay(d2) {
			t.Fatalf("second choice %q", d2)
		}
	})
}

// checkDisplay: a display name is a valid plaintext name the mount can
// recognise. (Housekeeping rules apply to stored names only: a plaintext
// "._x (conflict 1)" is a user's name like any other.)
func checkDisplay(t *testing.T, d string) {
	t.Helper()
	if crypto.ValidName(d) != nil || !IsDisplay(d) || IsStored(d) {
		t.Fatalf("display name %q: valid %v, IsDisplay %v", d, crypto.ValidName(d), IsDisplay(d))
	}
}
