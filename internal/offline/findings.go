package offline

import (
	"errors"
	"fmt"

	"github.com/sealfs/sealfs/crypto"
)

// What a cipher file's reading found, by class. The heuristics (docs/sync.md
// §6):
//
//   - 0 bytes: a placeholder for a file not downloaded yet (a real cipher
//     file has at least 52 bytes), or a file cut to nothing: a sync in
//     progress.
//   - The file got shorter while it was read: it is being written now (a
//     sync client, a mount elsewhere): a sync in progress.
//   - It ends early and every byte present is intact: cut inside its header,
//     inside its last block (a size no complete file has), or at a block
//     boundary (the new last block authenticates as a non-final one); or
//     only its last block fails and that block is partial, which is what a
//     block being appended looks like when the machine stops mid-write: a
//     crash leftover (or a download cut short; an attacker can cut a file
//     too, and nothing tells the two apart, but either way the bytes before
//     the cut are the file's own).
//   - Anything else that fails (a block in the middle, a full last block, a
//     header of another format): damage or tampering.

// placeholder is the finding for an empty cipher file; extract does not
// restore it.
func placeholder(e *Entry, extract bool) Problem {
	return Problem{Class: ClassSync, Kind: KindTruncated, CipherPath: e.CipherPath, PlainPath: e.PlainPath,
		NotRestored: extract,
		Detail: fmt.Sprintf("empty cipher file (0 bytes; a real one has at least %d): a placeholder for a file the "+
			"sync service has not downloaded yet, or a file cut to nothing", crypto.FileHeaderSize+crypto.BlockOverhead)}
}

// fileProblems turns what decrypter.file found in the cipher file e of size
// bytes into findings. zeroed, when set, says what became of a bad block
// (extract: "written as zeros").
func fileProblems(e *Entry, size int64, bad []BadBlock, err error, zeroed string) []Problem {
	var out []Problem
	crash := crashLeftover(size, bad, err)
	for _, b := range bad {
		p := Problem{Class: ClassDamage, Kind: classify(b.Err), CipherPath: e.CipherPath, PlainPath: e.PlainPath}
		if zeroed != "" {
			p.Detail = fmt.Sprintf("block %d %s: %v", b.Index, zeroed, b.Err)
		} else {
			p.Detail = fmt.Sprintf("block %d (plaintext bytes %d–%d): %v", b.Index, b.Index*crypto.BlockSize,
				(b.Index+1)*crypto.BlockSize-1, b.Err)
		}
		if crash {
			p.Class = ClassCrash
			if errors.Is(b.Err, crypto.ErrTruncated) {
				p.Detail += "; every block before the cut is intact: the end of a write that did not finish " +
					"(sealfs or the machine stopped), or a transfer cut short"
			} else {
				p.Detail += "; only the last block fails, and it is partial: most likely a write cut short by a " +
					"crash (if none happened, the file was changed)"
			}
		}
		out = append(out, p)
	}
	if err != nil {
		p := e.problem(err)
		switch {
		case errors.Is(err, errShrunk):
			p.Class = ClassSync
			p.Detail += "; run fsck again when the sync service is idle"
		case crash && size < crypto.FileHeaderSize:
			p.Class = ClassCrash
			p.Detail += "; it ends inside its header: a file being created when sealfs or the machine stopped, " +
				"or a transfer cut short"
		case crash:
			p.Class = ClassCrash
			p.Detail += "; every block before the cut is intact: the end of a write that did not finish " +
				"(sealfs or the machine stopped), or a transfer cut short"
		}
		out = append(out, p)
	}
	return out
}

// crashLeftover reports whether the findings in a file of size bytes are
// those of a write cut short: the file ends early with every byte present
// intact, or only its last block, a partial one, fails.
func crashLeftover(size int64, bad []BadBlock, err error) bool {
	switch {
	case err != nil:
		return len(bad) == 0 && errors.Is(err, crypto.ErrTruncated) && !errors.Is(err, errShrunk)
	case len(bad) != 1:
		return false
	}
	plain, perr := crypto.PlainSize(size)
	if perr != nil {
		return false
	}
	last := crypto.NumBlocks(plain) - 1
	if bad[0].Index != last {
		return false
	}
	return errors.Is(bad[0].Err, crypto.ErrTruncated) || size-crypto.BlockOffset(last) < crypto.CipherBlockSize
}
