package offline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
)

// Entry is one object of the vault met during a walk.
type Entry struct {
	CipherPath string      // absolute path in the cipher folder
	PlainPath  string      // path inside the vault, "/" separated, no leading slash; "" for the root
	Info       fs.FileInfo // lstat of the cipher object
	DirID      crypto.DirID
}

// Problem kinds, from the point of view of someone deciding what to restore.
const (
	KindTampered     = "tampered"     // authentication failed: bytes were changed or moved
	KindTruncated    = "truncated"    // the object ends where it cannot (cut short, or partly synced)
	KindUnrecognised = "unrecognised" // not something sealfs writes (foreign file, conflict copy, newer format)
	KindMissing      = "missing"      // metadata sealfs needs is absent (dirid, long-name side file)
	// KindDestination: extract found something in the way in DEST (an entry
	// that exists, a symlink where a directory goes); the vault is fine.
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

// classify maps an error from the crypto layer to a problem kind.
func classify(err error) string {
	var ve *crypto.VersionError
	switch {
	case errors.Is(err, errDestination), errors.Is(err, fs.ErrExist):
		return KindDestination
	case errors.Is(err, crypto.ErrTruncated):
		return KindTruncated
	case errors.Is(err, crypto.ErrFormat), errors.As(err, &ve):
		return KindUnrecognised
	case errors.Is(err, os.ErrNotExist):
		return KindMissing
	}
	return KindTampered
}

// walker visits every entry below a cipher directory. Problems with names and
// directory metadata are passed to report; visit sees every entry whose name
// decrypted.
type walker struct {
	keys   *crypto.Keys
	report func(Problem)
	visit  func(e Entry) error
}

// dirID reads a directory's ID, falling back to the ID derived from its
// parent and name when the dirid file is missing (a partial sync), as the
// FUSE layer does; the fallback is reported.
func (w *walker) dirID(cipherPath, plainPath string, parent crypto.DirID, name string) (crypto.DirID, bool) {
	b, err := readMeta(filepath.Join(cipherPath, crypto.DirIDFile), 2+crypto.DirIDSize)
	if err == nil {
		id, perr := crypto.ParseDirID(b)
		if perr == nil {
			return id, true
		}
		err = perr
	}
	w.report(Problem{Kind: classify(err), CipherPath: filepath.Join(cipherPath, crypto.DirIDFile), PlainPath: plainPath,
		Detail: fmt.Sprintf("directory ID unreadable (%v); using the ID derived from its name", err)})
	return w.keys.DeriveDirID(parent, name), true
}

// walkDir lists one cipher directory, decrypts its names and recurses.
func (w *walker) walkDir(cipherDir, plainDir string, id crypto.DirID) error {
	ents, err := os.ReadDir(cipherDir)
	if err != nil {
		w.report(Problem{Kind: KindMissing, CipherPath: cipherDir, PlainPath: plainDir, Detail: err.Error()})
		return nil
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for _, e := range ents {
		stored := e.Name()
		cpath := filepath.Join(cipherDir, stored)
		if strings.HasPrefix(stored, "sealfs.") && !crypto.IsLongName(stored) {
			w.checkMeta(cipherDir, stored, names)
			continue
		}
		name, err := w.decryptName(cipherDir, stored, id)
		if err != nil {
			w.report(Problem{Kind: classify(err), CipherPath: cpath, Detail: describeNameError(stored, err)})
			continue
		}
		info, err := os.Lstat(cpath)
		if err != nil {
			w.report(Problem{Kind: KindMissing, CipherPath: cpath, Detail: err.Error()})
			continue
		}
		ppath := joinPlain(plainDir, name)
		ent := Entry{CipherPath: cpath, PlainPath: ppath, Info: info}
		if info.IsDir() {
			ent.DirID, _ = w.dirID(cpath, ppath, id, name)
		}
		if err := w.visit(ent); err != nil {
			if errors.Is(err, fs.SkipDir) {
				continue
			}
			return err
		}
		if info.IsDir() {
			if err := w.walkDir(cpath, ppath, ent.DirID); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPlain(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (w *walker) decryptName(cipherDir, stored string, id crypto.DirID) (string, error) {
	enc := stored
	if crypto.IsLongName(stored) {
		side, err := readMeta(filepath.Join(cipherDir, stored+crypto.LongNameSuffix), maxLongNameFile)
		if err != nil {
			return "", fmt.Errorf("long-name side file: %w", err)
		}
		if enc, err = crypto.ParseLongNameFile(stored, side); err != nil {
			return "", err
		}
	}
	return w.keys.DecryptName(id, enc)
}

// checkMeta reports sealfs.* entries that are neither known metadata nor the
// side file of an existing long-name entry.
func (w *walker) checkMeta(cipherDir, stored string, names map[string]bool) {
	switch {
	case stored == crypto.DirIDFile, stored == crypto.HeaderFileName, strings.HasPrefix(stored, crypto.HeaderFileName+".tmp-"):
		return
	case strings.HasSuffix(stored, crypto.LongNameSuffix):
		if names[strings.TrimSuffix(stored, crypto.LongNameSuffix)] {
			return
		}
		w.report(Problem{Kind: KindUnrecognised, CipherPath: filepath.Join(cipherDir, stored),
			Detail: "long-name side file without its entry (left over, or the entry did not sync)"})
		return
	}
	w.report(Problem{Kind: KindUnrecognised, CipherPath: filepath.Join(cipherDir, stored), Detail: "unknown sealfs metadata file"})
}

// conflictMarkers are what sync services append to a conflict copy's name
// (Dropbox, Nextcloud/ownCloud, Syncthing, Google Drive).
var conflictMarkers = []string{" (conflicted copy", " (Conflicted copy", "_conflict-", ".sync-conflict-", " (1)", " (2)", " (3)"}

func describeNameError(stored string, err error) string {
	for _, m := range conflictMarkers {
		if i := strings.Index(stored, m); i > 0 {
			return fmt.Sprintf("name does not decrypt (%v); it looks like a sync service's conflict copy of cipher name %s", err, stored[:i])
		}
	}
	return fmt.Sprintf("name does not decrypt: %v", err)
}

// maxLongNameFile is the largest side file crypto.ParseLongNameFile accepts.
const maxLongNameFile = 4096

// readMeta reads a small sealfs metadata file from the untrusted cipher
// folder: a FIFO (open would block), a device or a symlink to one
// (/dev/zero never ends) is refused, and at most max+1 bytes are read, so
// an oversized file still fails its parser.
func readMeta(path string, max int64) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max+1))
}

// openRegular opens path for reading, refusing anything but a regular file
// without blocking on a FIFO.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%w: %s is not a regular file (%v)", crypto.ErrFormat, path, fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
