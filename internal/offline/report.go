package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// Report is the result of Check and Extract.
type Report struct {
	Files       int       `json:"files"`
	Dirs        int       `json:"dirs"`
	Symlinks    int       `json:"symlinks"`
	Other       int       `json:"other"`
	Blocks      int64     `json:"blocks"`
	CipherBytes int64     `json:"cipher_bytes"`
	Problems    []Problem `json:"problems"`
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Problem kinds, from the point of view of someone deciding what to restore.
const (
	KindTampered     = "tampered"     // authentication failed: bytes were changed or moved
	KindTruncated    = "truncated"    // the object ends where it cannot (cut short, or partly synced)
	KindUnrecognised = "unrecognised" // not something sealfs writes (foreign file, conflict copy, wrong file type, newer format)
	KindMissing      = "missing"      // metadata sealfs needs is absent (dirid, long-name side file)
	// KindDestination: extract found something in the way in DEST (an entry
	// that exists, a symlink where a directory goes) or could not create an
	// object there (a device node without root); the vault is fine.
	KindDestination = "destination"
)

// Problem is one damaged or unexpected item.
type Problem struct {
	Kind       string `json:"kind"`
	CipherPath string `json:"cipher_path"`
	PlainPath  string `json:"plain_path,omitempty"`
	Detail     string `json:"detail"`
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s: %s", p.Kind, p.CipherPath)
	if p.PlainPath != "" {
		s += " (" + p.PlainPath + ")"
	}
	return s + ": " + p.Detail
}

// classify maps an error to a problem kind.
func classify(err error) string {
	var ve *crypto.VersionError
	var te *safefile.TypeError
	var de *destError
	switch {
	case errors.As(err, &de), errors.Is(err, errDestination), errors.Is(err, fs.ErrExist):
		return KindDestination
	case errors.As(err, &te):
		// A symlink, FIFO, socket or device where the format puts a
		// directory or a regular file: sealfs never writes that.
		return KindUnrecognised
	case errors.Is(err, crypto.ErrTruncated):
		return KindTruncated
	case errors.Is(err, crypto.ErrFormat), errors.As(err, &ve), errors.Is(err, safefile.ErrTooLarge):
		return KindUnrecognised
	case errors.Is(err, os.ErrNotExist):
		return KindMissing
	}
	return KindTampered
}

// errDestination marks an entry that DEST refused: what is already there
// is in the way (KindDestination).
var errDestination = errors.New("in the way in the destination")
