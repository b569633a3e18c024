package crypto

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkBlock measures seal and open per candidate block size; the chosen
// BlockSize and the figures behind it are in docs/format.md §4.3. Sizes other
// than BlockSize are sealed as final blocks, which costs the same.
func BenchmarkBlock(b *testing.B) {
	k := testKeys(b)
	h, _ := NewFileHeader()
	fc, _ := k.FileCipher(h)
	for _, size := range []int{4 << 10, 16 << 10, 32 << 10} {
		plain := make([]byte, size)
		out := make([]byte, 0, size+BlockOverhead)
		b.Run(fmt.Sprintf("seal/%dK", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				out, _ = fc.SealBlock(out[:0], plain, 0, true)
			}
		})
		sealed, _ := fc.SealBlock(nil, plain, 0, true)
		dst := make([]byte, 0, size)
		b.Run(fmt.Sprintf("open/%dK", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := fc.OpenBlock(dst[:0], sealed, 0, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFileCipherSetup(b *testing.B) {
	k := testKeys(b)
	h, _ := NewFileHeader()
	for b.Loop() {
		if _, err := k.FileCipher(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkName(b *testing.B) {
	k := testKeys(b)
	name := "IMG_20260102_030405.jpg"
	enc, _ := k.EncryptName(RootDirID, name)
	b.Run("encrypt", func(b *testing.B) {
		for b.Loop() {
			_, _ = k.EncryptName(RootDirID, name)
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		for b.Loop() {
			_, _ = k.DecryptName(RootDirID, enc)
		}
	})
	long := strings.Repeat("x", 200)
	b.Run("encrypt-long", func(b *testing.B) {
		for b.Loop() {
			e, _ := k.EncryptName(RootDirID, long)
			StoredName(e)
		}
	})
}

// BenchmarkRawGCM is the ceiling: crypto/cipher's AES-256-GCM on a 32 KiB
// block with a fixed nonce and no framing.
func BenchmarkRawGCM(b *testing.B) {
	a, _ := newGCM(make([]byte, KeySize))
	plain := make([]byte, BlockSize)
	nonce := make([]byte, NonceSize)
	out := make([]byte, 0, CipherBlockSize)
	b.SetBytes(BlockSize)
	for b.Loop() {
		out = a.Seal(out[:0], nonce, plain, nil)
	}
}

// BenchmarkDeriveAuthValue is the KDF half of an unlock at the default
// Argon2id cost (the TPM half is tests/BenchmarkUnseal).
func BenchmarkDeriveAuthValue(b *testing.B) {
	p, err := NewKDFParams()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := DeriveAuthValue([]byte("correct horse battery staple"), p); err != nil {
			b.Fatal(err)
		}
	}
}
