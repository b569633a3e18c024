package offline

import (
	"errors"
	"fmt"
	"io/fs"

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
//
// What a directory shows is decided as the mount decides it (listing.go,
// internal/dirent): the sync services' files are skipped, their conflict
// copies shown under display names, names of another directory's ID found.

// Entry is one object of the vault met during a walk. Dir and Name locate it
// for fd-relative calls; Dir and Fd are open only during the visit (and, for
// a directory, until its leave).
type Entry struct {
	CipherPath string       // cipher folder path, for reports only
	PlainPath  string       // path inside the vault as the mount shows it, "/" separated, no leading slash; "" for the root
	Dir        int          // the parent cipher directory, open for reading
	Name       string       // the stored name in Dir
	Stat       unix.Stat_t  // lstat of the cipher object; for a directory, fstat of Fd
	Fd         int          // a directory's own descriptor, open for reading; -1 for other types
	DirID      crypto.DirID // a directory's ID

	// chain is the stored names from the root to the entry (repair plans
	// find it again by them).
	chain []string
	// A directory's ID when its sealfs.dirid is missing or unreadable is
	// derived from these: the ID its name decrypted under and its
	// plaintext name (a copy's original's).
	deriveParent crypto.DirID
	deriveName   string
	idErr        error // why a directory's ID is not from its sealfs.dirid (nil when it is)
}

// Type is the S_IFMT bits of the cipher object.
func (e *Entry) Type() uint32 { return e.Stat.Mode & unix.S_IFMT }

// problem reports err about e.
func (e *Entry) problem(err error) Problem { return errProblem(err, e.CipherPath, e.PlainPath) }

// walker visits every entry below a cipher directory, depth first. Problems
// go to the report; visit sees every entry the plaintext view shows
// (fs.SkipDir for a directory: do not descend); leave, if set, sees each
// directory visit accepted, after its children.
type walker struct {
	keys  *crypto.Keys
	r     *Report
	visit func(e *Entry) error
	leave func(e *Entry)
	ids   *idIndex
	// extract: entries that cannot be restored are marked NotRestored.
	extract bool
	// plan: propose repairs (fsck).
	plan bool
	// rootPath is the cipher folder's path, for reports.
	rootPath string
	// retries counts name decryptions spent on other directories' IDs
	// (maxRetries); retriesOut is set once the budget ran out.
	retries    int
	retriesOut bool
}

func newWalker(keys *crypto.Keys, r *Report, root int, record string) *walker {
	return &walker{keys: keys, r: r, ids: newIDIndex(keys, root, record)}
}

func (w *walker) report(p Problem) { w.r.Problems = append(w.r.Problems, p) }

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

// dirCtx is a cipher directory being listed.
type dirCtx struct {
	fd     int
	cipher string // its cipher path, for reports
	plain  string // its plaintext path
	id     crypto.DirID
	idErr  error    // nil: id is from its sealfs.dirid (or it is the root)
	chain  []string // stored names from the root
}

// walkRoot walks the whole vault from the root open at fd.
func (w *walker) walkRoot(fd int, cipherDir string) error {
	w.rootPath = cipherDir
	return w.walkDir(&dirCtx{fd: fd, cipher: cipherDir, id: crypto.RootDirID})
}

// walkDir lists the cipher directory d and visits each entry shown.
func (w *walker) walkDir(d *dirCtx) error {
	for _, it := range w.list(d) {
		e := &Entry{CipherPath: d.cipher + "/" + it.Stored, PlainPath: joinPlain(d.plain, it.Name), Dir: d.fd,
			Name: it.Stored, Fd: -1, chain: append(append([]string(nil), d.chain...), it.Stored),
			deriveParent: it.id, deriveName: it.Plain}
		if err := w.entry(e); err != nil {
			return err
		}
	}
	return nil
}

// entry visits the object e names (Dir, Name, paths and derivation set),
// and for a directory descends into it.
func (w *walker) entry(e *Entry) error {
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
	e.DirID, e.idErr = w.dirID(fd, e)
	if err := w.visit(e); errors.Is(err, fs.SkipDir) {
		return nil
	} else if err != nil {
		return err
	}
	if err := w.walkDir(&dirCtx{fd: fd, cipher: e.CipherPath, plain: e.PlainPath, id: e.DirID, idErr: e.idErr,
		chain: e.chain}); err != nil {
		return err
	}
	if w.leave != nil {
		w.leave(e)
	}
	return nil
}

// dirID reads the ID of the directory e open at fd. When its dirid file is
// missing (a partial sync, a sync race) or unreadable, the ID derived from
// the ID its name decrypted under and its name is used, as the mount does;
// a missing file is judged with the directory's listing (listing.go), an
// unreadable one reported here.
func (w *walker) dirID(fd int, e *Entry) (crypto.DirID, error) {
	b, err := safefile.ReadFileAt(fd, crypto.DirIDFile, 2+crypto.DirIDSize)
	if err == nil {
		id, perr := crypto.ParseDirID(b)
		if perr == nil {
			return id, nil
		}
		err = perr
	}
	if !errors.Is(err, fs.ErrNotExist) {
		p := errProblem(err, e.CipherPath+"/"+crypto.DirIDFile, e.PlainPath)
		p.Detail = fmt.Sprintf("directory ID unreadable (%v); using the ID derived from its name", err)
		w.report(p)
	}
	return w.keys.DeriveDirID(e.deriveParent, e.deriveName), err
}

func joinPlain(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// maxLongNameFile is the largest side file crypto.ParseLongNameFile accepts.
const maxLongNameFile = 4096
