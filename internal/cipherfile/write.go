package cipherfile

import (
	"fmt"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
)

// WriteAt writes p at off. A write past the end fills the gap with encrypted
// zero blocks. Blocks the write covers only partly are read, authenticated
// and re-sealed (a block failing authentication fails the write before
// anything is written); whole blocks are sealed straight from p.
func (f *File) WriteAt(p []byte, off int64) (_ int, err error) {
	if off < 0 || off > maxSize-int64(len(p)) {
		return 0, fmt.Errorf("cipherfile: write of %d bytes at offset %d: %w", len(p), off, syscall.EFBIG)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.settleOnError(&err)
	if err := f.checkWritable(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if f.damaged {
		return 0, f.damagedErr()
	}
	newSize := max(f.size, off+int64(len(p)))
	if err := f.reserve(newSize); err != nil {
		return 0, err
	}
	if err := f.apply(p, off, newSize); err != nil {
		return 0, err
	}
	return len(p), nil
}

// edit describes one change: p lands at off, and the file grows to newSize;
// every byte that is neither in p nor below oldSize becomes zero.
type edit struct {
	p       []byte
	off     int64
	oldSize int64
	newSize int64
	olds    [2]oldBlock // pre-read blocks whose old bytes survive the edit
}

type oldBlock struct {
	idx   int64
	plain []byte
}

// needsOld reports whether block i keeps some of its old bytes.
func (e *edit) needsOld(i int64) bool {
	lo, hi := i*bs, min((i+1)*bs, e.oldSize)
	if lo >= hi {
		return false
	}
	end := e.off + int64(len(e.p))
	return e.off > lo || end < hi
}

// fill builds the new plaintext of block i in dst (len = its new length).
// old, if non-nil, is the block's old plaintext; it may alias dst.
func (e *edit) fill(dst []byte, i int64, old []byte) {
	s := i * bs
	n := int64(len(dst))
	oldEnd := min(max(e.oldSize-s, 0), n)
	ps := min(max(e.off-s, 0), n)
	pe := min(max(e.off+int64(len(e.p))-s, 0), n)
	if old != nil {
		copy(dst[:oldEnd], old[:oldEnd])
	}
	if ps < pe {
		if oldEnd < ps {
			clear(dst[oldEnd:ps])
		}
		clear(dst[max(pe, oldEnd):])
		copy(dst[ps:pe], e.p[s+ps-e.off:])
	} else {
		clear(dst[oldEnd:])
	}
}

// apply performs an edit. Blocks before the new last one are sealed non-final
// and written in batches; the new last block becomes the tail. When the file
// grows past the old last block, that block is rewritten as non-final. Old
// contents needed by partial blocks are read before anything is written.
func (f *File) apply(p []byte, off, newSize int64) error {
	e := edit{p: p, off: off, oldSize: f.size, newSize: newSize}
	oldLast, newLast := lastBlock(e.oldSize), lastBlock(newSize)
	first := min(off, e.oldSize) / bs
	if newLast > oldLast {
		first = min(first, oldLast)
	}
	lastTouched := newLast
	if newSize == e.oldSize {
		lastTouched = (off + int64(len(p)) - 1) / bs
	}
	bufs, err := f.preRead(&e, first, lastTouched)
	defer func() {
		for _, b := range bufs {
			putBlock(b)
		}
	}()
	if err != nil {
		return err
	}
	if err := f.writeBlocks(&e, first, min(lastTouched, newLast-1)); err != nil {
		return err
	}
	if lastTouched == newLast {
		if f.tail == nil {
			f.tail = f.newTail()
		}
		var old []byte
		if newLast == oldLast && e.needsOld(newLast) {
			old = e.oldPlain(newLast)
		}
		f.tail = f.tail[:plainLen(newLast, newSize)]
		e.fill(f.tail, newLast, old)
		f.tailValid, f.tailDirty = true, true
	}
	f.size = newSize
	return nil
}

// preRead loads the (at most two) edge blocks whose old bytes survive the
// edit, unless the tail already holds them. The returned buffers go back to
// the pool once the edit is done.
func (f *File) preRead(e *edit, first, last int64) ([]*[]byte, error) {
	var bufs []*[]byte
	for k, i := range [2]int64{first, last} {
		e.olds[k].idx = -1
		if (k == 1 && i == first) || !e.needsOld(i) {
			continue
		}
		if i == lastBlock(e.oldSize) && f.tailValid {
			e.olds[k] = oldBlock{i, f.tail}
			continue
		}
		bp := getBlock()
		bufs = append(bufs, bp)
		plain, err := f.loadBlock(bp, i)
		if err != nil {
			return bufs, fmt.Errorf("cipherfile: writing %s needs block %d: %w", f.Path(), i, err)
		}
		e.olds[k] = oldBlock{i, plain}
	}
	return bufs, nil
}

func (e *edit) oldPlain(i int64) []byte {
	for _, o := range e.olds {
		if o.idx == i {
			return o.plain
		}
	}
	return nil
}

// writeBlocks seals blocks first..last (all full and non-final) in parallel
// into pooled batch buffers and writes each batch with one pwrite, behind the
// caller's back (behind.go).
func (f *File) writeBlocks(e *edit, first, last int64) error {
	if first > last {
		return nil
	}
	for i0 := first; i0 <= last; i0 += batchBlocks {
		bt := getBatch()
		nb := int(min(last-i0+1, batchBlocks))
		buf := bt.buf[:nb*cbs]
		parallel(nb, func(lo, hi int) {
			for b := lo; b < hi; b++ {
				bt.errs[b] = f.sealInto(buf[b*cbs:b*cbs:(b+1)*cbs], e, i0+int64(b))
			}
		})
		for _, err := range bt.errs[:nb] {
			if err != nil {
				putBatch(bt)
				return err
			}
		}
		before := f.stats.bytesWritten
		if err := f.submit(bt, buf, i0); err != nil {
			if i0 == first && f.stats.bytesWritten == before && f.failed == nil {
				return err // nothing reached the disk: the File is unchanged
			}
			return f.fail(err)
		}
	}
	return nil
}

// sealInto seals the new contents of full block i into slot (len 0, cap
// CipherBlockSize). A block p covers entirely is sealed straight from p;
// any other is assembled in place first.
func (f *File) sealInto(slot []byte, e *edit, i int64) error {
	s := i * bs
	var plain []byte
	if e.off <= s && e.off+int64(len(e.p)) >= s+bs {
		plain = e.p[s-e.off : s-e.off+bs]
	} else {
		plain = slot[crypto.NonceSize : crypto.NonceSize+bs]
		var old []byte
		if e.needsOld(i) {
			if old = e.oldPlain(i); old == nil {
				return fmt.Errorf("cipherfile: internal error: block %d of %s was not pre-read", i, f.Path())
			}
		}
		e.fill(plain, i, old)
	}
	out, err := f.fc.SealBlock(slot, plain, uint64(i), false)
	if err != nil {
		return err
	}
	if len(out) != cbs || &out[0] != &slot[:1][0] {
		return fmt.Errorf("cipherfile: internal error: block %d sealed to %d bytes outside its slot", i, len(out))
	}
	return nil
}
