package dirent

import (
	"bytes"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

func TestParseIDRecord(t *testing.T) {
	a, b := crypto.DirID{1}, crypto.DirID{2, 3}
	rec := append(append(append(append([]byte{}, a[:]...), crypto.RootDirID[:]...), b[:]...), a[:]...)
	rec = append(rec, 7, 7, 7) // an append cut short
	got := ParseIDRecord(rec)
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("ParseIDRecord = %x, want %x %x", got, a, b)
	}
	if got := ParseIDRecord(nil); len(got) != 0 {
		t.Errorf("empty record: %x", got)
	}
}

// FuzzParseIDRecord: any bytes parse without panicking into distinct,
// non-root IDs, each of which the record holds at a 16-byte boundary.
func FuzzParseIDRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{1}, 33))
	f.Add(make([]byte, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids := ParseIDRecord(b)
		if len(ids) > len(b)/crypto.DirIDSize {
			t.Fatalf("%d IDs from %d bytes", len(ids), len(b))
		}
		seen := map[crypto.DirID]bool{}
		for _, id := range ids {
			if id == crypto.RootDirID || seen[id] {
				t.Fatalf("root or duplicate ID %x", id)
			}
			seen[id] = true
			found := false
			for i := 0; i+crypto.DirIDSize <= len(b) && !found; i += crypto.DirIDSize {
				found = bytes.Equal(b[i:i+crypto.DirIDSize], id[:])
			}
			if !found {
				t.Fatalf("ID %x not in the record", id)
			}
		}
	})
}
