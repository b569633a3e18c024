package cipherfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// fileID reads the file ID from the cipher file's header.
func (e *env) fileID() []byte {
	e.t.Helper()
	b, err := os.ReadFile(e.path)
	if err != nil || len(b) < crypto.FileHeaderSize {
		e.t.Fatalf("reading header: %v (%d bytes)", err, len(b))
	}
	return b[8:crypto.FileHeaderSize]
}

// Emptying a file gives it a new file ID, so a block of the earlier version
// (which a sync service keeps in its history) no longer authenticates in the
// new one: v2's block 0 followed by v1's block 1 is detected. Truncating an
// already empty file keeps its ID and rewrites nothing.
func TestTruncateToZeroNewFileID(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	v1 := pattern(3*bs, 1)
	mustWrite(t, f, v1, 0)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	id1 := append([]byte{}, e.fileID()...)
	old, _ := os.ReadFile(e.path)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	id2 := append([]byte{}, e.fileID()...)
	if bytes.Equal(id1, id2) {
		t.Fatal("truncate to 0 kept the file ID")
	}
	if e.cipherSize() != crypto.CipherSize(0) {
		t.Fatalf("emptied file is %d bytes", e.cipherSize())
	}
	if err := CheckEmpty(e.keys, f.Fd()); err != nil {
		t.Fatalf("CheckEmpty of an emptied file: %v", err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.fileID(), id2) {
		t.Fatal("truncating an empty file changed its ID again")
	}
	v2 := pattern(3*bs, 2)
	mustWrite(t, f, v2, 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := e.decryptDisk(); err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("v2 does not decrypt: %v", err)
	}
	// Splice: v2's header and block 0, v1's block 1, v2's block 2.
	cur, _ := os.ReadFile(e.path)
	b1 := crypto.BlockOffset(1)
	copy(cur[b1:b1+crypto.CipherBlockSize], old[b1:b1+crypto.CipherBlockSize])
	if err := os.WriteFile(e.path, cur, 0o600); err != nil {
		t.Fatal(err)
	}
	g := e.open()
	defer g.Close()
	p := make([]byte, 3*bs)
	n, err := g.ReadAt(p, 0)
	if !errors.Is(err, crypto.ErrAuth) || n != bs {
		t.Fatalf("spliced file read n=%d err=%v, want ErrAuth after block 0", n, err)
	}
	if _, err := e.decryptDisk(); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("DecryptReader accepted a spliced file: %v", err)
	}
}

// Every cut point of a 3-block file (cipher sizes 0 .. full-1) reads either
// as an error at the damaged block or, when the cut falls in the header, not
// at all: never as a complete shorter file. Size is never the length of a
// plausible shorter file whose every byte reads back without an error. The
// file is cut shorter and shorter in place, so each cut costs a truncate, an
// open and the reads of the last two blocks.
func TestEveryCutPointIsDetected(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	data := pattern(3*bs-100, 5)
	mustWrite(t, f, data, 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	full := e.cipherSize()
	buf := make([]byte, 2*bs)
	step := int64(1)
	if raceEnabled {
		step = 97 // the plain run covers every cut; this one the locking
	}
	for cut := full - 1; cut >= 0; cut -= step {
		if err := os.Truncate(e.path, cut); err != nil {
			t.Fatal(err)
		}
		fd, err := os.OpenFile(e.path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		g, err := Open(fd, e.opts())
		if err != nil {
			fd.Close()
			if cut >= crypto.FileHeaderSize || !errors.Is(err, crypto.ErrTruncated) {
				t.Fatalf("cut %d: open: %v", cut, err)
			}
			continue // the header itself is cut: EIO at open
		}
		size := g.Size()
		want := PlainSizeOf(cut)
		if cut == crypto.CipherSize(0) {
			// An empty file's size: getattr asks CheckEmpty.
			if err := CheckEmpty(e.keys, int(fd.Fd())); !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("cut %d: CheckEmpty: %v, want ErrAuth", cut, err)
			}
			want = DamagedSize(cut)
		}
		if size != want {
			t.Fatalf("cut %d: Size %d, getattr's PlainSizeOf %d", cut, size, want)
		}
		if size == 0 {
			t.Fatalf("cut %d: reads as an empty file", cut)
		}
		// Only the last block can be damaged by a cut: the blocks before
		// it read intact, the read reaching the end fails there.
		from := max(0, (size-1)/bs*bs-bs)
		n, err := g.ReadAt(buf[:size-from], from)
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("cut %d: Size %d read back completely (n=%d, err=%v)", cut, size, n, err)
		}
		if !errors.Is(err, crypto.ErrAuth) && !errors.Is(err, crypto.ErrTruncated) {
			t.Fatalf("cut %d: read error %v, want ErrAuth or ErrTruncated", cut, err)
		}
		if int64(n) < min((size-1)/bs*bs-from, size-from) || !bytes.Equal(buf[:n], data[from:from+int64(n)]) {
			t.Fatalf("cut %d: %d bytes before the damage, want the intact blocks", cut, n)
		}
		g.Close()
	}
}

// A file whose header cannot be read opens, when Emptiable, unreadable but
// truncatable to zero, which starts it afresh.
func TestEmptiableUnreadableHeader(t *testing.T) {
	e := newEnv(t)
	for _, content := range [][]byte{nil, []byte("short"), []byte("not a sealfs cipher file at all, but long enough")} {
		if err := os.WriteFile(e.path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		fd, err := os.OpenFile(e.path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(fd, e.opts()); err == nil {
			t.Fatalf("%q opened without Emptiable", content)
		}
		o := e.opts()
		o.Emptiable = true
		f, err := Open(fd, o)
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, crypto.ErrTruncated) {
			t.Fatalf("%q: read %v", content, err)
		}
		if _, err := f.WriteAt([]byte("x"), 0); err == nil {
			t.Fatalf("%q: write before emptying succeeded", content)
		}
		if err := f.Truncate(0); err != nil {
			t.Fatalf("%q: truncate: %v", content, err)
		}
		mustWrite(t, f, []byte("fresh"), 0)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := e.decryptDisk(); err != nil || string(got) != "fresh" {
			t.Fatalf("%q: after emptying and writing: %q %v", content, got, err)
		}
	}
}
