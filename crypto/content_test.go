package crypto

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestSizesRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, BlockSize - 1, BlockSize, BlockSize + 1, 3 * BlockSize, 5<<30 + 7} {
		c := CipherSize(n)
		p, err := PlainSize(c)
		if err != nil || p != n {
			t.Errorf("PlainSize(CipherSize(%d)=%d) = %d, %v", n, c, p, err)
		}
	}
	// Worked examples from docs/format.md §4.4.
	if got := CipherSize(0); got != 52 {
		t.Errorf("empty file: %d bytes, want 52", got)
	}
	if got := CipherSize(1); got != 53 {
		t.Errorf("1-byte file: %d bytes, want 53", got)
	}
	for _, c := range []int64{0, 1, FileHeaderSize, FileHeaderSize + BlockOverhead - 1, FileHeaderSize + CipherBlockSize + BlockOverhead} {
		if _, err := PlainSize(c); !errors.Is(err, ErrTruncated) {
			t.Errorf("PlainSize(%d) = %v, want ErrTruncated", c, err)
		}
	}
}

func TestContentRoundTrip(t *testing.T) {
	k := testKeys(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 100, BlockSize - 1, BlockSize, BlockSize + 1, 2 * BlockSize, 3*BlockSize + 17} {
		plain := randBytes(r, n)
		c := encrypt(t, k, plain)
		if int64(len(c)) != CipherSize(int64(n)) {
			t.Errorf("n=%d: cipher size %d, want %d", n, len(c), CipherSize(int64(n)))
		}
		got, err := decrypt(k, c)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("n=%d: round trip failed: %v", n, err)
		}
	}
}

func TestContentRandomized(t *testing.T) {
	k := testKeys(t)
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := 0; i < 200; i++ {
		plain := randBytes(r, r.IntN(4*BlockSize))
		got, err := decrypt(k, encrypt(t, k, plain))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("len %d: %v", len(plain), err)
		}
	}
}

// Equal plaintexts never give equal ciphertexts (random file ID and nonces).
func TestContentRandomizedOutput(t *testing.T) {
	k := testKeys(t)
	a, b := encrypt(t, k, []byte("same")), encrypt(t, k, []byte("same"))
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of the same plaintext are equal")
	}
}

// openAll opens every block of c separately and returns the indexes that
// fail, or nil if the header itself does not parse.
func openAll(t *testing.T, k *Keys, c []byte, nblocks int) (failed []int, headerErr error) {
	t.Helper()
	h, err := ParseFileHeader(c)
	if err != nil {
		return nil, err
	}
	fc, err := k.FileCipher(h)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < nblocks; i++ {
		start := BlockOffset(int64(i))
		end := min(start+CipherBlockSize, int64(len(c)))
		if _, err := fc.OpenBlock(nil, c[start:end], uint64(i), i == nblocks-1); err != nil {
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("block %d: %v, want ErrAuth", i, err)
			}
			failed = append(failed, i)
		}
	}
	return failed, nil
}

// TestEveryByteFlip: flipping any byte of a block fails exactly that block;
// flipping a file ID byte fails all of them; other header bytes are format
// errors.
func TestEveryByteFlip(t *testing.T) {
	k := testKeys(t)
	r := rand.New(rand.NewPCG(3, 4))
	plain := randBytes(r, 2*BlockSize+500)
	c := encrypt(t, k, plain)
	nb := int(NumBlocks(int64(len(plain))))
	for pos := range c {
		c[pos] ^= 0x01
		failed, herr := openAll(t, k, c, nb)
		c[pos] ^= 0x01
		switch {
		case pos < 8:
			if herr == nil {
				t.Fatalf("flip at header byte %d not detected", pos)
			}
		case pos < FileHeaderSize:
			if herr != nil || len(failed) != nb {
				t.Fatalf("flip in file ID byte %d: failed=%v err=%v, want all blocks", pos, failed, herr)
			}
		default:
			want := int((int64(pos) - FileHeaderSize) / CipherBlockSize)
			if herr != nil || len(failed) != 1 || failed[0] != want {
				t.Fatalf("flip at %d: failed blocks %v, want [%d]", pos, failed, want)
			}
		}
	}
}

func TestBlockSwapsAndTransplants(t *testing.T) {
	k := testKeys(t)
	r := rand.New(rand.NewPCG(5, 6))
	plain := randBytes(r, 3*BlockSize)
	a, b := encrypt(t, k, plain), encrypt(t, k, plain)
	blk := func(c []byte, i int64) []byte { return c[BlockOffset(i) : BlockOffset(i)+CipherBlockSize] }

	swapped := bytes.Clone(a)
	copy(blk(swapped, 0), blk(a, 1))
	copy(blk(swapped, 1), blk(a, 0))
	if _, err := decrypt(k, swapped); !errors.Is(err, ErrAuth) {
		t.Errorf("swapped blocks: %v, want ErrAuth", err)
	}
	moved := bytes.Clone(a)
	copy(blk(moved, 1), blk(b, 1)) // same index, same plaintext, other file
	if _, err := decrypt(k, moved); !errors.Is(err, ErrAuth) {
		t.Errorf("block from another file: %v, want ErrAuth", err)
	}
	// The other file's header on our blocks: every block fails.
	hdr := bytes.Clone(a)
	copy(hdr, b[:FileHeaderSize])
	if _, err := decrypt(k, hdr); !errors.Is(err, ErrAuth) {
		t.Errorf("header from another file: %v, want ErrAuth", err)
	}
}

func TestTruncationAndAppend(t *testing.T) {
	k := testKeys(t)
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 10, BlockSize, 3 * BlockSize, 3*BlockSize + 9} {
		plain := randBytes(r, n)
		c := encrypt(t, k, plain)
		// Cut at every block boundary, at the header, and to nothing.
		cuts := []int{0, 5, FileHeaderSize}
		for i := int64(1); BlockOffset(i) < int64(len(c)); i++ {
			cuts = append(cuts, int(BlockOffset(i)))
		}
		for _, cut := range cuts {
			if _, err := decrypt(k, c[:cut]); err == nil {
				t.Errorf("n=%d: truncation to %d bytes not detected", n, cut)
			}
		}
		for _, extra := range [][]byte{{0}, make([]byte, BlockOverhead), randBytes(r, CipherBlockSize)} {
			if _, err := decrypt(k, append(bytes.Clone(c), extra...)); err == nil {
				t.Errorf("n=%d: %d appended bytes not detected", n, len(extra))
			}
		}
	}
}

func TestFileHeaderErrors(t *testing.T) {
	h, _ := NewFileHeader()
	b := h.Marshal()
	if got, err := ParseFileHeader(b); err != nil || got != h {
		t.Fatalf("round trip: %v", err)
	}
	b[5] = 9
	var ve *VersionError
	if _, err := ParseFileHeader(b); !errors.As(err, &ve) || ve.Have != 9 {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := ParseFileHeader(nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty: %v", err)
	}
}

func TestSealBlockRejectsShortNonFinal(t *testing.T) {
	k := testKeys(t)
	h, _ := NewFileHeader()
	fc, _ := k.FileCipher(h)
	if _, err := fc.SealBlock(nil, make([]byte, 10), 0, false); err == nil {
		t.Fatal("short non-final block accepted")
	}
}

// format.md §4.2: decoders MUST reject an empty last block after a full one
// (PlainSize does); the streaming decoder must agree, even when the empty
// block carries a valid tag.
func TestDecryptReaderRejectsEmptyFinalAfterFull(t *testing.T) {
	k := testKeys(t)
	h, _ := NewFileHeader()
	fc, err := k.FileCipher(h)
	if err != nil {
		t.Fatal(err)
	}
	c := h.Marshal()
	if c, err = fc.SealBlock(c, make([]byte, BlockSize), 0, false); err != nil {
		t.Fatal(err)
	}
	if c, err = fc.SealBlock(c, nil, 1, true); err != nil {
		t.Fatal(err)
	}
	if _, perr := PlainSize(int64(len(c))); perr == nil {
		t.Fatal("PlainSize accepts the size; the test premise is wrong")
	}
	if _, err := decrypt(k, c); !errors.Is(err, ErrTruncated) {
		t.Fatalf("empty final block after a full one: got %v, want ErrTruncated", err)
	}
}
