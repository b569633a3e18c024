package offline

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// Every cut point of a cipher file, from its full size down to 0 bytes
// (docs/format.md §4.2), must be reported by fsck and by extract, naming
// the block (or the header) where the file ends; no cut may pass for a
// complete shorter file. Extract must still salvage every block that is
// whole, with its true content. Issue 13, item 2.
//
// fsck runs at every cut; extract, which shares the block reader and costs
// a file creation per round, at every cut within 40 bytes of the header's
// end or a block boundary (where the format's rules change) and every 97th
// byte between.
func TestEveryCutPointIsReported(t *testing.T) {
	plain := make([]byte, 2*crypto.BlockSize+1000) // three blocks, the last partial
	rng := rand.New(rand.NewPCG(13, 13))
	for i := range plain {
		plain[i] = byte(rng.Uint32())
	}
	v := newTestVault(t, "", nil)
	cfile := v.file("f", plain, 0o644)
	full := crypto.CipherSize(int64(len(plain)))
	if st, err := os.Stat(cfile); err != nil || st.Size() != full {
		t.Fatalf("cipher file: %v, %v; want %d bytes", st, err, full)
	}
	f, err := os.OpenFile(cfile, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	step, extractStep := int64(1), int64(97)
	if raceEnabled {
		// The race detector makes each round ~10x slower: sample every
		// region of every block instead.
		step, extractStep = 37, 997
	}
	dest := t.TempDir()
	blockRef := regexp.MustCompile(`block (\d+)|header|empty cipher file`)
	checked, extracted := 0, 0
	// Cutting from the end down: each truncation leaves the prefix of the
	// original file, as a cut sync or a full disk would.
	for size := full; size >= 0; size-- {
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if size != full && size%step != 0 && !nearBoundary(size) {
			continue
		}
		checked++
		r, err := Check(v.keys, v.dir, nil)
		if err != nil {
			t.Fatalf("cut %d: check: %v", size, err)
		}
		if size == full {
			if !r.OK() {
				t.Fatalf("the intact file reported: %v", r.Problems)
			}
			continue
		}
		wantCutReported(t, "fsck", size, r.Problems, blockRef)
		if size%extractStep != 0 && !nearBoundary(size) {
			continue
		}
		extracted++
		out := filepath.Join(dest, strconv.FormatInt(size, 10))
		r, err = Extract(ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: out})
		if err != nil {
			t.Fatalf("cut %d: extract: %v", size, err)
		}
		wantCutReported(t, "extract", size, r.Problems, blockRef)
		// Whatever was written: every block wholly before the cut is
		// there with its true content, and nothing claims more than the
		// cut can hold.
		got, err := os.ReadFile(filepath.Join(out, "f"))
		whole := max(size-crypto.FileHeaderSize, 0) / crypto.CipherBlockSize * crypto.BlockSize
		whole = min(whole, int64(len(plain)))
		if err == nil && (int64(len(got)) < whole || !bytes.Equal(got[:whole], plain[:whole])) {
			t.Errorf("cut %d: extract wrote %d bytes; the first %d (the whole blocks) must be the original", size, len(got), whole)
		}
		if err := os.RemoveAll(out); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow() // one cut's failures are enough to read
		}
	}
	t.Logf("a %d-byte cipher file cut at %d points: all checked with fsck, %d extracted", full, checked, extracted)
}

// nearBoundary is within 40 bytes of the header's end or a block boundary,
// where the format's rules change (29-byte minimum block, final flag).
func nearBoundary(size int64) bool {
	if size < crypto.FileHeaderSize+40 {
		return true
	}
	d := (size - crypto.FileHeaderSize) % crypto.CipherBlockSize
	return d < 40 || d > crypto.CipherBlockSize-40
}

func wantCutReported(t *testing.T, what string, size int64, ps []Problem, blockRef *regexp.Regexp) {
	t.Helper()
	if len(ps) == 0 {
		t.Errorf("%s: a file cut to %d bytes reads as valid", what, size)
		return
	}
	for _, p := range ps {
		if p.PlainPath != "f" {
			t.Errorf("%s: cut %d: a problem not about the cut file: %v", what, size, p)
		}
		if p.Kind != KindTruncated && p.Kind != KindTampered {
			t.Errorf("%s: cut %d: kind %s, want truncated or tampered: %v", what, size, p.Kind, p)
		}
	}
	if !blockRef.MatchString(joinDetails(ps)) {
		t.Errorf("%s: cut %d: no block or header named: %v", what, size, ps)
	}
	// The block named is the one the cut fell in (or, for a cut at a
	// block boundary, the new last block).
	if size >= crypto.FileHeaderSize {
		in := (size - crypto.FileHeaderSize) / crypto.CipherBlockSize
		atBoundary := (size-crypto.FileHeaderSize)%crypto.CipherBlockSize == 0
		want := "block " + strconv.FormatInt(in, 10)
		if atBoundary && in > 0 {
			want = "block " + strconv.FormatInt(in-1, 10)
		}
		if !strings.Contains(joinDetails(ps), want) {
			t.Errorf("%s: cut %d: %q not named: %v", what, size, want, ps)
		}
	}
}

func joinDetails(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Detail + "\n")
	}
	return b.String()
}
