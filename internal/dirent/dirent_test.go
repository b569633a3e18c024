package dirent

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

type fixture struct {
	keys  *crypto.Keys
	id    crypto.DirID
	sides map[string][]byte
}

func newFixture(t testing.TB) *fixture {
	m, err := crypto.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.DeriveKeys(m)
	m.Wipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return &fixture{keys: k, id: crypto.DirID{1, 2, 3}, sides: map[string][]byte{}}
}

// stored encrypts plain in the fixture's directory, writing a side file for
// a long name.
func (f *fixture) stored(t testing.TB, plain string) string {
	enc, err := f.keys.EncryptName(f.id, plain)
	if err != nil {
		t.Fatal(err)
	}
	s, long := crypto.StoredName(enc)
	if long {
		f.sides[s+crypto.LongNameSuffix] = []byte(enc)
	}
	return s
}

func (f *fixture) side(name string) ([]byte, error) {
	b, ok := f.sides[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return b, nil
}

func (f *fixture) classify(stored string) Entry { return Classify(f.keys, f.id, stored, f.side) }

func TestClassify(t *testing.T) {
	f := newFixture(t)
	short := f.stored(t, "report.pdf")
	long := f.stored(t, strings.Repeat("long name ", 20)+".txt")
	if !strings.HasPrefix(long, "sealfs.ln.") {
		t.Fatalf("long name stored as %q", long)
	}
	for _, c := range []struct {
		stored string
		kind   Kind
		plain  string
	}{
		{short, Plain, "report.pdf"},
		{long, Plain, strings.Repeat("long name ", 20) + ".txt"},
		{short + ".sync-conflict-20261202-130124-CAVCEQA", ConflictCopy, "report.pdf"},
		{short + " (conflicted copy 2026-12-02)", ConflictCopy, "report.pdf"},
		{short + " (Alice's conflicted copy 2026-12-02)", ConflictCopy, "report.pdf"},
		{short + " (conflicted copy 2026-12-02 120000)", ConflictCopy, "report.pdf"},
		{short + " (1)", ConflictCopy, "report.pdf"},
		{"sealfs.ln.sync-conflict-20261202-130124-CAVCEQA." + strings.TrimPrefix(long, "sealfs.ln."), ConflictCopy, strings.Repeat("long name ", 20) + ".txt"},
		{long + " (conflicted copy 2026-12-02)", ConflictCopy, strings.Repeat("long name ", 20) + ".txt"},
		{crypto.DirIDFile, Metadata, ""},
		{long + crypto.LongNameSuffix, Metadata, ""},
		{crypto.HeaderFileName, Metadata, ""},
		{"sealfs.sync-conflict-20261202-130124-CAVCEQA.vault", MetadataCopy, ""},
		{".stfolder", Housekeeping, ""},
		{".syncthing." + short + ".tmp", Housekeeping, ""},
		{"desktop.ini", Housekeeping, ""},
		{"notes.txt", Undecryptable, ""},
		{strings.Repeat("A", 43), Undecryptable, ""},
	} {
		e := f.classify(c.stored)
		if e.Kind != c.kind || e.Plain != c.plain {
			t.Errorf("%q: %v %q (err %v), want %v %q", c.stored, e.Kind, e.Plain, e.Err, c.kind, c.plain)
		}
		if e.Kind == Undecryptable && e.Err == nil {
			t.Errorf("%q: undecryptable without a reason", c.stored)
		}
	}
	// A name of another directory does not decrypt here, nor its copy.
	other := &fixture{keys: f.keys, id: crypto.DirID{9}, sides: f.sides}
	if e := other.classify(short); e.Kind != Undecryptable || !errors.Is(e.Err, crypto.ErrNameAuth) {
		t.Errorf("a name moved from another directory: %v %v", e.Kind, e.Err)
	}
	if e := other.classify(short + " (1)"); e.Kind != Undecryptable {
		t.Errorf("a copy of a name of another directory: %v", e.Kind)
	}
	// A long name whose side file has not arrived.
	delete(f.sides, long+crypto.LongNameSuffix)
	if e := f.classify(long); e.Kind != Undecryptable || !errors.Is(e.Err, ErrSideFile) {
		t.Errorf("long name without side file: %v %v", e.Kind, e.Err)
	}
}

func TestNameAssignsDisplayNames(t *testing.T) {
	f := newFixture(t)
	a := f.stored(t, "report.pdf")
	real := f.stored(t, "report (conflict 2026-12-02 130124 CAVCEQA).pdf")
	d := f.stored(t, "photos")
	var ents []Entry
	for _, s := range []string{a, a + ".sync-conflict-20261202-130124-CAVCEQA", real, d, d + " (1)", a + " (1)"} {
		e := f.classify(s)
		e.Dir = strings.HasPrefix(s, d)
		ents = append(ents, e)
	}
	Name(ents)
	want := []string{"report.pdf", "report (conflict 2026-12-02 130124 CAVCEQA #2).pdf",
		"report (conflict 2026-12-02 130124 CAVCEQA).pdf", "photos", "photos (conflict 1)", "report (conflict 1).pdf"}
	for i, e := range ents {
		if e.Name != want[i] {
			t.Errorf("%d %q: named %q, want %q", i, e.Stored, e.Name, want[i])
		}
	}
}

// FuzzClassify: any stored name and side file content classify without
// panicking; whatever decrypts re-encrypts to what was stored.
func FuzzClassify(f *testing.F) {
	fx := newFixture(f)
	short := fx.stored(f, "a.txt")
	long := fx.stored(f, strings.Repeat("x", 200))
	f.Add(short, []byte(nil))
	f.Add(long, fx.sides[long+crypto.LongNameSuffix])
	f.Add(short+" (conflicted copy 2026-12-02)", []byte(nil))
	f.Add("sealfs.ln.sync-conflict-20261202-130124-CAVCEQA."+strings.TrimPrefix(long, "sealfs.ln."), fx.sides[long+crypto.LongNameSuffix])
	f.Add(".stfolder", []byte("x"))
	f.Fuzz(func(t *testing.T, stored string, side []byte) {
		e := Classify(fx.keys, fx.id, stored, func(string) ([]byte, error) { return side, nil })
		switch e.Kind {
		case Plain, ConflictCopy:
			orig := stored
			if e.Kind == ConflictCopy {
				orig = e.Conflict.Original
				if len(orig) >= len(stored) {
					t.Fatalf("copy %q of a longer name %q", stored, orig)
				}
			}
			enc, err := fx.keys.EncryptName(fx.id, e.Plain)
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := crypto.StoredName(enc); s != orig {
				t.Fatalf("%q decrypted to %q, which encrypts to %q", orig, e.Plain, s)
			}
		case Undecryptable:
			if e.Err == nil {
				t.Fatal("no reason")
			}
		}
		ents := []Entry{e}
		Name(ents)
	})
}

// An entry of another directory keeps its name unless a real entry has it;
// then it is shown like a copy, and neither is hidden.
func TestNameForeignEntries(t *testing.T) {
	f := newFixture(t)
	here := f.classify(f.stored(t, "report.pdf"))
	other := &fixture{keys: f.keys, id: crypto.DirID{9}, sides: f.sides}
	var foreign []Entry
	for _, n := range []string{"report.pdf", "new.txt", "photos"} {
		e := Classify(f.keys, other.id, other.stored(t, n), f.side)
		if e.Kind != Plain {
			t.Fatalf("%s: %v", n, e.Kind)
		}
		e.Foreign = true
		e.Dir = n == "photos"
		foreign = append(foreign, e)
	}
	ents := append([]Entry{here}, foreign...)
	Name(ents)
	want := []string{"report.pdf", "report (conflict other directory).pdf", "new.txt", "photos"}
	for i, e := range ents {
		if e.Name != want[i] {
			t.Errorf("%d: named %q, want %q", i, e.Name, want[i])
		}
	}
	if ents[1].Conflict.Original != ents[1].Stored {
		t.Errorf("renamed foreign entry's conflict reading: %+v", ents[1].Conflict)
	}
}
