package offline

import (
	"errors"
	"fmt"
	"io"

	"github.com/sealfs/sealfs/crypto"
)

// BadBlock is a block that did not authenticate.
type BadBlock struct {
	Index int64
	Err   error
}

// decryptFile reads a cipher file block by block, calling out with each
// authenticated plaintext block and with zeros for each block that fails, so
// that a restore salvages everything that is still good. It returns the
// plaintext size, the failed blocks, and a file-level error (unreadable
// header, size that maps to no plaintext). progress gets cipher bytes read.
func decryptFile(keys *crypto.Keys, path string, out func(p []byte) error, progress func(int64)) (int64, []BadBlock, error) {
	f, err := openRegular(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	hb := make([]byte, crypto.FileHeaderSize)
	n, err := io.ReadFull(f, hb)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, nil, fmt.Errorf("reading header: %w", err)
	}
	h, err := crypto.ParseFileHeader(hb[:n])
	if err != nil {
		return 0, nil, err
	}
	fc, err := keys.FileCipher(h)
	if err != nil {
		return 0, nil, err
	}
	size, sizeErr := crypto.PlainSize(st.Size())
	nblocks := crypto.NumBlocks(size)
	if sizeErr != nil {
		// Salvage the whole blocks that are there; the tail is reported.
		body := st.Size() - crypto.FileHeaderSize
		nblocks = max(body/crypto.CipherBlockSize, 0)
		size = nblocks * crypto.BlockSize
	}
	var bad []BadBlock
	buf := make([]byte, crypto.CipherBlockSize)
	plain := make([]byte, 0, crypto.BlockSize)
	for i := int64(0); i < nblocks; i++ {
		want := min(int64(crypto.BlockSize), size-i*crypto.BlockSize)
		stored := buf[:want+crypto.BlockOverhead]
		if _, err := f.ReadAt(stored, crypto.BlockOffset(i)); err != nil {
			return size, bad, fmt.Errorf("reading block %d: %w", i, err)
		}
		final := i == nblocks-1 && sizeErr == nil
		p, err := fc.OpenBlock(plain[:0], stored, uint64(i), final)
		if err != nil {
			bad = append(bad, BadBlock{Index: i, Err: diagnose(fc, stored, i, final, err)})
			p = make([]byte, want)
		}
		if out != nil {
			if err := out(p); err != nil {
				return size, bad, err
			}
		}
		if progress != nil {
			progress(int64(len(stored)))
		}
	}
	return size, bad, sizeErr
}

// diagnose tells truncation and extension apart from tampering: a last block
// that opens when taken as non-final means the file was cut at a block
// boundary; a non-final block that opens as final means bytes were appended
// after the real end.
func diagnose(fc *crypto.FileCipher, stored []byte, i int64, final bool, err error) error {
	if _, e := fc.OpenBlock(nil, stored, uint64(i), !final); e == nil {
		if final {
			return fmt.Errorf("%w: the file was cut after block %d", crypto.ErrTruncated, i)
		}
		return fmt.Errorf("%w: block %d was the last block; data was appended after it", crypto.ErrAuth, i)
	}
	return err
}
