package syncnames

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func mark(m Mark) Conflict { return Conflict{Marks: []Mark{m}} }

func TestDisplay(t *testing.T) {
	st := mark(Mark{Service: Syncthing, Date: "2026-12-02", Time: "130124", Who: "CAVCEQA"})
	for _, tc := range []struct {
		plain string
		c     Conflict
		dir   bool
		want  string
	}{
		{"report.pdf", st, false, "report (conflict 2026-12-02 130124 CAVCEQA).pdf"},
		{"report.pdf", st, true, "report.pdf (conflict 2026-12-02 130124 CAVCEQA)"},
		{"Makefile", st, false, "Makefile (conflict 2026-12-02 130124 CAVCEQA)"},
		{".bashrc", st, false, ".bashrc (conflict 2026-12-02 130124 CAVCEQA)"},
		{"archive.tar.gz", st, false, "archive.tar (conflict 2026-12-02 130124 CAVCEQA).gz"},
		{"notes.v2 final", st, false, "notes.v2 final (conflict 2026-12-02 130124 CAVCEQA)"},
		{"x.averyveryverylongext", st, false, "x.averyveryverylongext (conflict 2026-12-02 130124 CAVCEQA)"},
		{"report.pdf", mark(Mark{Service: Dropbox, Date: "2026-12-02", Who: "Alice"}), false, "report (conflict 2026-12-02 Alice).pdf"},
		{"report.pdf", mark(Mark{Service: Nextcloud, Date: "2026-12-02", Time: "120000", Who: "Alice Smith"}), false,
			"report (conflict 2026-12-02 120000 Alice Smith).pdf"},
		{"photos", mark(Mark{Service: GoogleDrive, Counter: "1"}), true, "photos (conflict 1)"},
		{"report.pdf", mark(Mark{Service: OneDrive, Who: "LAPTOP-7"}), false, "report (conflict LAPTOP-7).pdf"},
		{"report.pdf", mark(Mark{Service: Dropbox, Label: "case conflict", Counter: "1"}), false, "report (conflict case conflict 1).pdf"},
		{"report.pdf", Conflict{}, false, "report (conflict).pdf"},
		// Fields from a hostile name are made harmless.
		{"report.pdf", mark(Mark{Who: "a/b\x00c)(#;\\\x01\xff  d\n"}), false, "report (conflict a_b_c_______ d).pdf"},
		{"report.pdf", mark(Mark{Who: strings.Repeat("é", 30)}), false, "report (conflict " + strings.Repeat("é", 20) + ").pdf"},
		{"report.pdf", Conflict{Marks: []Mark{{Date: "2026-12-02", Who: "Alice"}, {Counter: "1"}}}, false,
			"report (conflict 2026-12-02 Alice; 1).pdf"},
	} {
		got := display(tc.plain, tc.c, tc.dir, 1)
		if got != tc.want {
			t.Errorf("display(%q) = %q, want %q", tc.plain, got, tc.want)
		}
		if tc.dir && got != DisplayDir(tc.plain, tc.c) || !tc.dir && got != Display(tc.plain, tc.c) {
			t.Errorf("Display/DisplayDir disagree with display for %q", tc.plain)
		}
		base, _, ext, ok := ParseDisplay(got)
		if !ok || base+ext != tc.plain && !tc.dir || tc.dir && base != tc.plain {
			t.Errorf("ParseDisplay(%q) = %q, %q, %v", got, base, ext, ok)
		}
	}
}

func TestDisplayLongNames(t *testing.T) {
	st := mark(Mark{Service: Syncthing, Date: "2026-12-02", Time: "130124", Who: "CAVCEQA"})
	long := mark(Mark{Service: Unknown, Label: strings.Repeat("w", 200)})
	seen := map[bool]map[string]string{false: {}, true: {}}
	for _, plain := range []string{
		strings.Repeat("a", 255), strings.Repeat("a", 250) + ".pdf", strings.Repeat("a", 251) + ".pdf",
		strings.Repeat("é", 127) + "x", strings.Repeat("é", 125) + ".pdf", strings.Repeat("a", 200) + ".tar.gz",
	} {
		for _, c := range []Conflict{st, long} {
			for _, dir := range []bool{false, true} {
				d := display(plain, c, dir, 1)
				if len(d) > 255 || !utf8.ValidString(d) || !IsDisplay(d) {
					t.Errorf("%d bytes, valid UTF-8 %v, IsDisplay %v: %q", len(d), utf8.ValidString(d), IsDisplay(d), d)
				}
				if prev, dup := seen[dir][d]; dup {
					t.Errorf("%q and %q both display as %q", prev, plain, d)
				}
				seen[dir][d] = plain
				if !dir && strings.HasSuffix(plain, ".pdf") && !strings.HasSuffix(d, ").pdf") {
					t.Errorf("extension lost: %q", d)
				}
			}
		}
	}
}

func TestIsDisplay(t *testing.T) {
	for name, want := range map[string]bool{
		"report (conflict 2026-12-02 130124 CAVCEQA).pdf": true,
		"report (conflict).pdf":                           true,
		"photos (conflict 1)":                             true,
		"a (conflict x) b (conflict 1).txt":               true,
		"report (conflict 1 #2).pdf":                      true,
		"report.pdf":                                      false,
		"report (conflicted copy 2026-12-02).pdf":         false,
		"report (conflicts).pdf":                          false,
		" (conflict 1)":                                   false, // no base
		"report (conflict 1).pdf.bak (x)":                 false,
		"report (conflict 1) notes":                       false,
		"report (conflict 1":                              false,
		"report (conflict 1).tar gz":                      false,
	} {
		if IsDisplay(name) != want {
			t.Errorf("IsDisplay(%q) = %v", name, !want)
		}
	}
}

func TestAssign(t *testing.T) {
	st := mark(Mark{Service: Syncthing, Date: "2026-12-02", Time: "130124", Who: "CAVCEQA"})
	gd := mark(Mark{Service: GoogleDrive, Counter: "1"})
	real := map[string]bool{
		"report.pdf": true,
		// A user's file that happens to have a copy's name keeps it.
		"report (conflict 2026-12-02 130124 CAVCEQA).pdf": true,
	}
	copies := []Copy{
		{Stored: "B", Plain: "report.pdf", Conflict: st},
		{Stored: "A", Plain: "report.pdf", Conflict: st}, // same marker: two services, or a planted copy
		{Stored: "C", Plain: "photos", Conflict: gd, Dir: true},
		{Stored: "D", Plain: "photos", Conflict: gd}, // a file copy with the same display as the directory's
	}
	got := Assign(func(n string) bool { return real[n] }, copies)
	want := []string{
		"report (conflict 2026-12-02 130124 CAVCEQA #3).pdf",
		"report (conflict 2026-12-02 130124 CAVCEQA #2).pdf",
		"photos (conflict 1)",
		"photos (conflict 1 #2)",
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("copy %s: %q, want %q", copies[i].Stored, got[i], want[i])
		}
	}
	// The names depend on the directory's content, not on listing order.
	rev := []Copy{copies[3], copies[2], copies[1], copies[0]}
	got2 := Assign(func(n string) bool { return real[n] }, rev)
	for i := range rev {
		if got2[i] != got[3-i] {
			t.Errorf("order changed the names: %q vs %q", got2[i], got[3-i])
		}
	}
	if out := Assign(func(string) bool { return true }, copies[:1]); out[0] != "" {
		t.Errorf("a taken-everything caller got %q", out[0])
	}
}
