package crypto

import (
	"errors"
	"fmt"
	"io"
)

// EncryptStream writes the complete cipher file for the plaintext read from
// r: header, then blocks, the last one marked final. Used by tests, test
// vector generation and tools that write whole files at once.
func (k *Keys) EncryptStream(w io.Writer, r io.Reader) (int64, error) {
	h, err := NewFileHeader()
	if err != nil {
		return 0, err
	}
	fc, err := k.FileCipher(h)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(h.Marshal()); err != nil {
		return 0, fmt.Errorf("writing header: %w", err)
	}
	// Read one block ahead so we know which block is the last.
	cur := make([]byte, BlockSize)
	next := make([]byte, BlockSize)
	out := make([]byte, 0, CipherBlockSize)
	n, err := io.ReadFull(r, cur)
	var total int64
	for idx := uint64(0); ; idx++ {
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return total, fmt.Errorf("reading plaintext: %w", err)
		}
		final := err != nil // short read: this is the last block
		var m int
		var nerr error
		if !final {
			m, nerr = io.ReadFull(r, next)
			if m == 0 && errors.Is(nerr, io.EOF) {
				final = true
			}
		}
		out, err = fc.SealBlock(out[:0], cur[:n], idx, final)
		if err != nil {
			return total, err
		}
		if _, err := w.Write(out); err != nil {
			return total, fmt.Errorf("writing block %d: %w", idx, err)
		}
		total += int64(n)
		if final {
			return total, nil
		}
		cur, next = next, cur
		n, err = m, nerr
	}
}

// DecryptReader streams the plaintext of a cipher file. Every block is
// authenticated before any of its bytes are returned; a file that ends early
// (at a block boundary or inside a block) or carries trailing bytes fails with
// ErrTruncated or ErrAuth. Errors name the block index.
type DecryptReader struct {
	r     io.Reader
	fc    *FileCipher
	idx   uint64
	cur   []byte // stored block read ahead
	next  []byte
	plain []byte
	pos   int
	done  bool
	err   error
}

// NewDecryptReader reads and checks the header of the cipher file in r.
func (k *Keys) NewDecryptReader(r io.Reader) (*DecryptReader, error) {
	hb := make([]byte, FileHeaderSize)
	n, err := io.ReadFull(r, hb)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading file header: %w", err)
	}
	h, err := ParseFileHeader(hb[:n])
	if err != nil {
		return nil, err
	}
	fc, err := k.FileCipher(h)
	if err != nil {
		return nil, err
	}
	d := &DecryptReader{r: r, fc: fc, cur: make([]byte, CipherBlockSize), next: make([]byte, CipherBlockSize)}
	d.cur, d.err = readBlock(r, d.cur)
	if d.err == nil && len(d.cur) == 0 {
		d.err = fmt.Errorf("%w: no blocks after the header", ErrTruncated)
	}
	return d, nil
}

// readBlock reads up to one stored block into buf; a short result means EOF.
func readBlock(r io.Reader, buf []byte) ([]byte, error) {
	n, err := io.ReadFull(r, buf[:CipherBlockSize])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading cipher block: %w", err)
	}
	return buf[:n], nil
}

func (d *DecryptReader) Read(p []byte) (int, error) {
	for d.pos == len(d.plain) {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			return 0, io.EOF
		}
		if err := d.advance(); err != nil {
			d.err = err
			return 0, err
		}
	}
	n := copy(p, d.plain[d.pos:])
	d.pos += n
	return n, nil
}

// advance opens the read-ahead block; whether it is final is known from
// whether another block follows it.
func (d *DecryptReader) advance() error {
	final := len(d.cur) < CipherBlockSize
	if !final {
		var err error
		d.next, err = readBlock(d.r, d.next[:cap(d.next)])
		if err != nil {
			return err
		}
		final = len(d.next) == 0
		if len(d.next) == BlockOverhead {
			// An empty last block follows only an empty file (format.md
			// §4.2); after a full block the size maps to no plaintext.
			return fmt.Errorf("%w: empty last block %d after a full one", ErrTruncated, d.idx+1)
		}
	}
	var err error
	d.plain, err = d.fc.OpenBlock(d.plain[:0], d.cur, d.idx, final)
	if err != nil {
		return err
	}
	d.pos = 0
	d.idx++
	if final {
		d.done = true
		return nil
	}
	d.cur, d.next = d.next, d.cur[:cap(d.cur)]
	return nil
}
