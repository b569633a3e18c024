package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// The cipher folder is read the way the mount must read it (issue 13): the
// root is opened once and everything below is reached by a directory
// descriptor and one name, with calls that follow no symlink (internal/
// safefile). A symlink a sync peer put where a directory was is listed as
// the symlink it is and never entered; a FIFO, socket or device where a
// regular file or metadata file belongs is reported and never opened. Cipher
// paths are strings only for reports.

// Entry is one object of the vault met during a walk. Dir and Name locate it
// for fd-relative calls; Dir and Fd are open only during the visit (and, for
// a directory, until its leave).
type Entry struct {
	CipherPath string       // cipher folder path, for reports only
	PlainPath  string       // path inside the vault, "/" separated, no leading slash; "" for the root
	Dir        int          // the parent cipher directory, open for reading
	Name       string       // the stored name in Dir
	Stat       unix.Stat_t  // lstat of the cipher object; for a directory, fstat of Fd
	Fd         int          // a directory's own descriptor, open for reading; -1 for other types
	DirID      crypto.DirID // a directory's ID
}

// Type is the S_IFMT bits of the cipher object.
func (e *Entry) Type() uint32 { return e.Stat.Mode & unix.S_IFMT }

// problem reports err about e.
func (e *Entry) problem(err error) Problem {
	return Problem{Kind: classify(err), CipherPath: e.CipherPath, PlainPath: e.PlainPath, Detail: err.Error()}
}

// walker visits every entry below a cipher directory, depth first. Problems
// with names and directory metadata go to report; visit sees every entry
// whose name decrypted (fs.SkipDir for a directory: do not descend); leave,
// if set, sees each directory visit accepted, after its children.
type walker struct {
	keys   *crypto.Keys
	report func(Problem)
	visit  func(e *Entry) error
	leave  func(e *Entry)
}

// openRoot opens the cipher folder the user named. The path is the user's
// choice and may lead through symlinks; nothing below it is.
func openRoot(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	// Cipher files are opened through an O_PATH handle's /proc/self/fd
	// link (safefile.OpenFile): say so once rather than fail every file.
	if err := unix.Access(safefile.ProcPath(fd), unix.F_OK); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is needed to open cipher files without following symlinks (mount proc on /proc): %w",
			safefile.ProcPath(fd), err)
	}
	return fd, nil
}

// walkDir lists the cipher directory open at fd, decrypts its names and
// visits each entry.
func (w *walker) walkDir(fd int, cipherDir, plainDir string, id crypto.DirID) error {
	ents, err := safefile.ReadDir(fd)
	if err != nil {
		w.report(Problem{Kind: KindMissing, CipherPath: cipherDir, PlainPath: plainDir, Detail: "listing: " + err.Error()})
		return nil
	}
	names := make(map[string]bool, len(ents))
	for _, e := range ents {
		names[e.Name] = true
	}
	for _, d := range ents {
		stored := d.Name
		cpath := cipherDir + "/" + stored
		if strings.HasPrefix(stored, "sealfs.") && !crypto.IsLongName(stored) {
			w.checkMeta(cpath, stored, names)
			continue
		}
		name, err := w.decryptName(fd, stored, id)
		if err != nil {
			w.report(Problem{Kind: classify(err), CipherPath: cpath, Detail: describeNameError(stored, err)})
			continue
		}
		e := &Entry{CipherPath: cpath, PlainPath: joinPlain(plainDir, name), Dir: fd, Name: stored, Fd: -1}
		if err := w.entry(e, id, name); err != nil {
			return err
		}
	}
	return nil
}

// entry visits the object e names (Dir, Name, paths set), and for a
// directory descends into it. parent and name derive the directory ID
// should its dirid file be unreadable.
func (w *walker) entry(e *Entry, parent crypto.DirID, name string) error {
	st, err := safefile.Lstat(e.Dir, e.Name)
	if err != nil {
		w.report(e.problem(err)) // gone since the listing
		return nil
	}
	e.Stat = st
	if e.Type() != unix.S_IFDIR {
		if err := w.visit(e); err != nil && !errors.Is(err, fs.SkipDir) {
			return err
		}
		return nil
	}
	// Swapped for something else since the lstat: OpenDirRead refuses it.
	fd, err := safefile.OpenDirRead(e.Dir, e.Name)
	if err != nil {
		w.report(e.problem(err))
		return nil
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &e.Stat); err != nil {
		w.report(e.problem(err))
		return nil
	}
	e.Fd = fd
	e.DirID = w.dirID(fd, e.CipherPath, e.PlainPath, parent, name)
	if err := w.visit(e); errors.Is(err, fs.SkipDir) {
		return nil
	} else if err != nil {
		return err
	}
	if err := w.walkDir(fd, e.CipherPath, e.PlainPath, e.DirID); err != nil {
		return err
	}
	if w.leave != nil {
		w.leave(e)
	}
	return nil
}

// dirID reads the ID of the directory open at fd, falling back to the ID
// derived from its parent and name when the dirid file is missing or bad (a
// partial sync), as the FUSE layer does; the fallback is reported.
func (w *walker) dirID(fd int, cipherPath, plainPath string, parent crypto.DirID, name string) crypto.DirID {
	b, err := safefile.ReadFileAt(fd, crypto.DirIDFile, 2+crypto.DirIDSize)
	if err == nil {
		id, perr := crypto.ParseDirID(b)
		if perr == nil {
			return id
		}
		err = perr
	}
	w.report(Problem{Kind: classify(err), CipherPath: cipherPath + "/" + crypto.DirIDFile, PlainPath: plainPath,
		Detail: fmt.Sprintf("directory ID unreadable (%v); using the ID derived from its name", err)})
	return w.keys.DeriveDirID(parent, name)
}

func joinPlain(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (w *walker) decryptName(fd int, stored string, id crypto.DirID) (string, error) {
	enc := stored
	if crypto.IsLongName(stored) {
		side, err := safefile.ReadFileAt(fd, stored+crypto.LongNameSuffix, maxLongNameFile)
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
func (w *walker) checkMeta(cpath, stored string, names map[string]bool) {
	switch {
	case stored == crypto.DirIDFile, stored == crypto.HeaderFileName, strings.HasPrefix(stored, crypto.HeaderFileName+".tmp-"):
		return
	case strings.HasSuffix(stored, crypto.LongNameSuffix):
		if names[strings.TrimSuffix(stored, crypto.LongNameSuffix)] {
			return
		}
		w.report(Problem{Kind: KindUnrecognised, CipherPath: cpath,
			Detail: "long-name side file without its entry (left over, or the entry did not sync)"})
		return
	}
	w.report(Problem{Kind: KindUnrecognised, CipherPath: cpath, Detail: "unknown sealfs metadata file"})
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
