package cipherfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

const tamperSize = 5*bs + 1000 // five full blocks and a short final one

func writeTamperFile(t *testing.T) (*env, []byte) {
	e := newEnv(t)
	f := e.create()
	data := pattern(tamperSize, 3)
	mustWrite(t, f, data, 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return e, data
}

// A flipped byte anywhere in block k (nonce, ciphertext or tag) fails exactly
// the reads touching k, with ErrAuth and one log line naming path and block.
func TestTamperFailsOnlyThatBlock(t *testing.T) {
	e, data := writeTamperFile(t)
	nBlocks := int64(crypto.NumBlocks(tamperSize))
	for k := int64(0); k < nBlocks; k++ {
		clen := int64(plainLen(k, tamperSize)) + crypto.BlockOverhead
		for _, within := range []int64{0, crypto.NonceSize + 5, clen - 1} {
			t.Run(fmt.Sprintf("block%d_byte%d", k, within), func(t *testing.T) {
				e.flipByte(crypto.BlockOffset(k) + within)
				defer e.flipByte(crypto.BlockOffset(k) + within)
				e.logs.reset()
				f := e.open()
				defer f.Close()
				for i := int64(0); i < nBlocks; i++ {
					p := make([]byte, plainLen(i, tamperSize))
					n, err := f.ReadAt(p, i*bs)
					if i == k {
						if !errors.Is(err, crypto.ErrAuth) || n != 0 {
							t.Fatalf("read of tampered block %d: n=%d err=%v, want ErrAuth", i, n, err)
						}
						continue
					}
					if err != nil && err != io.EOF || !bytes.Equal(p[:n], data[i*bs:i*bs+int64(n)]) {
						t.Fatalf("read of intact block %d: n=%d err=%v", i, n, err)
					}
				}
				lines := e.logs.lines()
				if len(lines) != 1 || !strings.Contains(lines[0], e.path) || !strings.Contains(lines[0], fmt.Sprintf("block=%d ", k)) {
					t.Fatalf("want one log line naming %s and block %d, got %q", e.path, k, lines)
				}
				// A read spanning the whole file stops right before block k.
				p := make([]byte, tamperSize)
				n, err := f.ReadAt(p, 0)
				if !errors.Is(err, crypto.ErrAuth) || int64(n) != k*bs || !bytes.Equal(p[:n], data[:n]) {
					t.Fatalf("whole-file read: n=%d err=%v, want %d good bytes then ErrAuth", n, err, k*bs)
				}
			})
		}
	}
}

// A write needing the old bytes of a corrupted block fails and writes
// nothing; overwriting the whole block needs no old bytes and repairs it.
func TestTamperedBlockRefusesPartialWrite(t *testing.T) {
	e, data := writeTamperFile(t)
	e.flipByte(crypto.BlockOffset(2) + 100)
	before, _ := os.ReadFile(e.path)
	f := e.open()
	defer f.Close()
	for _, w := range []struct{ off, n int64 }{{2*bs + 10, 10}, {bs + 100, bs}, {2*bs + 5, bs}} {
		if _, err := f.WriteAt(make([]byte, w.n), w.off); !errors.Is(err, crypto.ErrAuth) {
			t.Fatalf("WriteAt(%d bytes at %d) over a corrupted block: %v, want ErrAuth", w.n, w.off, err)
		}
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(e.path); !bytes.Equal(before, after) {
		t.Fatal("a failed write changed the cipher file")
	}
	if err := f.Truncate(2*bs + 7); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("Truncate into a corrupted block: %v, want ErrAuth", err)
	}
	fresh := pattern(bs, 9)
	mustWrite(t, f, fresh, 2*bs)
	copy(data[2*bs:], fresh)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := e.decryptDisk(); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after overwriting the corrupted block: err %v, equal %v", err, bytes.Equal(got, data))
	}
}

// An all-zero cipher block is not a hole: it fails authentication.
func TestZeroedBlockIsNotAHole(t *testing.T) {
	e, _ := writeTamperFile(t)
	fd, err := os.OpenFile(e.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt(make([]byte, cbs), crypto.BlockOffset(1)); err != nil {
		t.Fatal(err)
	}
	fd.Close()
	f := e.open()
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 10), bs); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("read of a zeroed block: %v, want ErrAuth", err)
	}
}

// Cutting the file at a block boundary leaves a valid-looking size whose last
// block was sealed non-final: detected, and reported as truncation.
func TestCutAtBlockBoundaryDetected(t *testing.T) {
	e, data := writeTamperFile(t)
	for k := crypto.NumBlocks(tamperSize) - 1; k >= 1; k-- {
		if err := os.Truncate(e.path, crypto.BlockOffset(k)); err != nil {
			t.Fatal(err)
		}
		f := e.open()
		if f.Size() != k*bs {
			t.Fatalf("cut after %d blocks: Size %d", k, f.Size())
		}
		if _, err := f.ReadAt(make([]byte, 1), (k-1)*bs); !errors.Is(err, crypto.ErrTruncated) {
			t.Fatalf("cut after %d blocks: last block read: %v, want ErrTruncated", k, err)
		}
		p := make([]byte, (k-1)*bs)
		if n, err := f.ReadAt(p, 0); err != nil || !bytes.Equal(p[:n], data[:len(p)]) {
			t.Fatalf("cut after %d blocks: earlier blocks: %v", k, err)
		}
		f.Close()
		if _, err := e.decryptDisk(); !errors.Is(err, crypto.ErrAuth) {
			t.Fatalf("DecryptReader on a file cut after %d blocks: %v", k, err)
		}
	}
}

// A size no plaintext maps to opens in damaged mode: Size is the intact
// prefix plus one byte (so a reader reaches the damage instead of taking the
// prefix for a complete shorter file), the intact prefix reads, reads past
// it fail with ErrTruncated, writes fail until a Truncate repairs.
func TestDamagedSize(t *testing.T) {
	e, data := writeTamperFile(t)
	for _, extra := range []int64{0, 1, crypto.BlockOverhead - 1, crypto.BlockOverhead} {
		if err := os.Truncate(e.path, crypto.BlockOffset(3)+extra); err != nil {
			t.Fatal(err)
		}
		if extra == 0 {
			continue // a valid size, covered by TestCutAtBlockBoundaryDetected
		}
		f := e.open()
		if f.Size() != 3*bs+1 {
			t.Fatalf("extra %d: Size %d, want %d", extra, f.Size(), 3*bs+1)
		}
		if got := PlainSizeOf(e.cipherSize()); got != 3*bs+1 {
			t.Fatalf("extra %d: PlainSizeOf %d, want %d", extra, got, 3*bs+1)
		}
		p := make([]byte, 4*bs)
		n, err := f.ReadAt(p, 0)
		if n != 3*bs || !errors.Is(err, crypto.ErrTruncated) || !bytes.Equal(p[:n], data[:n]) {
			t.Fatalf("extra %d: read: n=%d err=%v", extra, n, err)
		}
		if _, err := f.ReadAt(p[:1], 3*bs); !errors.Is(err, crypto.ErrTruncated) {
			t.Fatalf("extra %d: read at Size: %v", extra, err)
		}
		if _, err := f.WriteAt([]byte{1}, 0); !errors.Is(err, crypto.ErrTruncated) {
			t.Fatalf("extra %d: write to a damaged file: %v", extra, err)
		}
		if err := f.Truncate(4 * bs); !errors.Is(err, crypto.ErrTruncated) {
			t.Fatalf("extra %d: growing a damaged file: %v", extra, err)
		}
		f.Close()
		if got := e.cipherSize(); got != crypto.BlockOffset(3)+extra {
			t.Fatalf("extra %d: closing a damaged file changed its size to %d", extra, got)
		}
	}
	f := e.open()
	if err := f.Truncate(2*bs + 77); err != nil {
		t.Fatalf("repairing Truncate: %v", err)
	}
	mustWrite(t, f, []byte("more"), 2*bs+77)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, data[:2*bs+77]...), "more"...)
	if got, err := e.decryptDisk(); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after repair: err %v, equal %v", err, bytes.Equal(got, want))
	}
}

func TestBadHeaderFailsOpen(t *testing.T) {
	e, _ := writeTamperFile(t)
	e.flipByte(1)
	fd, err := os.OpenFile(e.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := Open(fd, e.opts()); !errors.Is(err, crypto.ErrFormat) || !strings.Contains(err.Error(), e.path) {
		t.Fatalf("Open with bad magic: %v, want ErrFormat naming the path", err)
	}
}

// A file not flushed before a crash reads as truncated, never as complete.
func TestCrashBeforeFlushReadsTruncated(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	mustWrite(t, f, pattern(3*bs+500, 1), 0)
	crashed, err := os.ReadFile(e.path) // the disk as a crash would leave it
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path, crashed, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.decryptDisk(); err == nil {
		t.Fatal("an unflushed file decrypted as complete")
	}
	g := e.open()
	defer g.Close()
	p := make([]byte, g.Size())
	n, err := g.ReadAt(p, 0)
	if !errors.Is(err, crypto.ErrTruncated) || n != 2*bs {
		t.Fatalf("reading the crashed file: n=%d err=%v, want 2 blocks then ErrTruncated", n, err)
	}
}

// With write-behind (behind.go) the disk may lag a returned write by a batch,
// yet it never shows a complete file between an extending write and the next
// Flush: a crash at any of those moments leaves a file that reads as
// truncated, not an older version that looks whole. Checked after every
// write of a sequential stream, and again after a Flush and more appends.
func TestWriteBehindNeverLooksComplete(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	defer f.Close()
	chunk := pattern(1<<20, 3)
	var off int64
	check := func(when string) {
		t.Helper()
		if got, err := e.decryptDisk(); err == nil {
			t.Fatalf("%s: the disk decrypts as a complete file of %d bytes before Flush", when, len(got))
		}
	}
	for i := range 6 {
		mustWrite(t, f, chunk[:len(chunk)-i*1000], off)
		off += int64(len(chunk) - i*1000)
		check(fmt.Sprintf("write %d", i))
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.decryptDisk(); err != nil {
		t.Fatalf("after Flush: %v", err)
	}
	for i := range 3 {
		mustWrite(t, f, chunk, off)
		off += int64(len(chunk))
		check(fmt.Sprintf("append %d after Flush", i))
	}
}

// TestReadAheadWindow: large reads request the backing file ahead of the
// reader (ahead.go), the window only moves forward and only when most of it
// is used up, and small reads leave it alone.
func TestReadAheadWindow(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	defer f.Close()
	data := pattern(16<<20, 5)
	mustWrite(t, f, data, 0)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	read := func(off int64, n int) int64 {
		t.Helper()
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
			t.Fatalf("read at %d: wrong bytes", off)
		}
		return f.ahead.Load()
	}
	if got := read(0, 4096); got != 0 {
		t.Fatalf("a 4 KiB read moved the window to %d", got)
	}
	want := crypto.BlockOffset(1<<20/bs) + aheadBytes
	if got := read(0, 1<<20); got != want {
		t.Fatalf("after 1 MiB: window at %d, want %d", got, want)
	}
	if got := read(1<<20, 1<<20); got != want {
		t.Fatalf("the second MiB moved the window (%d → %d) though most of it was ahead", want, got)
	}
	if got := read(3<<20, 1<<20); got != crypto.BlockOffset(4<<20/bs)+aheadBytes {
		t.Fatalf("the fourth MiB left the window at %d", got)
	}
	if got := read(0, 1<<20); got < want {
		t.Fatalf("a read behind moved the window back to %d", got)
	}
}
