package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// ExtractOptions control Extract.
type ExtractOptions struct {
	Keys      *crypto.Keys
	CipherDir string
	Dest      string // created if missing; existing entries are not overwritten (unless Overwrite), nor symlinks in it followed
	Path      string // plaintext sub-path to extract ("" = everything), as the mount shows it; lands at Dest/Path
	Progress  func(cipherBytes int64)
	// Overwrite replaces a file, symlink or special file already in Dest
	// where an entry goes (the entry itself is removed, never what a
	// symlink points to); directories are merged. Without it such entries
	// are left alone and reported (KindDestination).
	Overwrite bool
	// IDRecord is this machine's record of directory IDs (CheckOptions).
	IDRecord string
}

// Extract decrypts the vault (or Path) into Dest, preserving modes, owners
// (when run as root), nanosecond times, user.* xattrs, symlinks, FIFOs,
// sockets, device nodes (as root) and hard links. What it restores is what
// the mount shows: conflict copies under their display names next to their
// originals, entries of another directory's ID under their names, the sync
// services' own files left out. Damaged blocks are written as zeros so the
// rest of the file is salvaged; every finding is in the returned report
// (Report.ExitCode: notes such as conflict copies do not count, an entry
// not restored does).
//
// Both sides are worked fd-relative: the cipher folder as Check reads it,
// and DEST, which is opened once (the path to it is the user's choice) and
// below which every object is created by its parent's descriptor and name
// with calls that follow no symlink, whoever put the symlink there
// (extract itself included: two entries can decrypt to one plaintext name).
// Metadata is set on the created objects themselves, so nothing outside
// DEST is ever touched.
func Extract(o ExtractOptions) (*Report, error) {
	r := &Report{Problems: []Problem{}, extract: true}
	cipherRoot, err := openRoot(o.CipherDir)
	if err != nil {
		return r, err
	}
	defer unix.Close(cipherRoot)
	x := &extractor{o: o, r: r, d: newDecrypter(o.Keys), root: os.Geteuid() == 0, links: map[devIno]linked{}}
	w := newWalker(o.Keys, r, cipherRoot, o.IDRecord)
	w.visit, w.leave, w.extract = x.visit, x.leave, true
	start, err := resolve(w, cipherRoot, o.CipherDir, o.Path)
	if err != nil {
		return r, err
	}
	if start != nil {
		defer start.close(cipherRoot)
	}
	if err := os.MkdirAll(o.Dest, 0o700); err != nil {
		return r, fmt.Errorf("creating %s: %w", o.Dest, err)
	}
	dest, err := unix.Open(o.Dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return r, &fs.PathError{Op: "open", Path: o.Dest, Err: err}
	}
	x.dest = dest
	defer x.close()
	if start == nil {
		x.dirs = append(x.dirs, destDir{fd: dest})
		err = w.walkRoot(cipherRoot, o.CipherDir)
	} else {
		parent := path.Dir(start.e.PlainPath)
		fd, merr := x.mkdirs(parent)
		if merr != nil {
			x.report(start.e.problem(merr))
			return r, nil
		}
		if parent == "." {
			parent = ""
		}
		x.dirs = append(x.dirs, destDir{fd: fd, plain: parent})
		err = w.entry(&start.e)
	}
	if err != nil {
		return r, err
	}
	x.finish()
	return r, nil
}

// located is the cipher entry of a plaintext path, ready for walker.entry.
type located struct {
	e Entry
}

func (l *located) close(root int) {
	if l.e.Dir != root {
		unix.Close(l.e.Dir)
	}
}

// resolve finds the cipher entry for a plaintext path the way the mount
// looks names up: each component encrypted under its parent's directory ID,
// and where that finds nothing, the parent's listing searched for the
// name it shows (a conflict copy's display name, an entry of another
// directory's ID). Each directory is entered by its descriptor (a symlink,
// file or FIFO where a directory of the path belongs stops it). nil for
// the root.
func resolve(w *walker, root int, cipherDir, plain string) (*located, error) {
	plain = strings.Trim(filepath.ToSlash(filepath.Clean("/"+plain)), "/")
	if plain == "" {
		return nil, nil
	}
	comps := strings.Split(plain, "/")
	w.rootPath = cipherDir
	d := &dirCtx{fd: root, cipher: cipherDir, id: crypto.RootDirID}
	release := func() {
		if d.fd != root {
			unix.Close(d.fd)
		}
	}
	for i, name := range comps {
		e, err := lookup(w, d, name)
		if err == nil && i < len(comps)-1 {
			var fd int
			fd, err = safefile.OpenDirRead(d.fd, e.Name)
			if err == nil {
				e.DirID, e.idErr = w.dirID(fd, e)
				release()
				d = &dirCtx{fd: fd, cipher: e.CipherPath, plain: e.PlainPath, id: e.DirID, idErr: e.idErr, chain: e.chain}
				continue
			}
			err = fmt.Errorf("%s (cipher %s): %w", e.PlainPath, e.CipherPath, err)
		}
		if err != nil {
			release()
			return nil, err
		}
		return &located{e: *e}, nil
	}
	return nil, nil // not reached: comps is not empty
}

// lookup finds name in the directory d as the mount does: encrypted under
// d's ID, or else among the names d's listing shows.
func lookup(w *walker, d *dirCtx, name string) (*Entry, error) {
	pp := joinPlain(d.plain, name)
	e := &Entry{PlainPath: pp, Dir: d.fd, Fd: -1, deriveParent: d.id, deriveName: name}
	enc, err := w.keys.EncryptName(d.id, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pp, err)
	}
	e.Name, _ = crypto.StoredName(enc)
	_, err = safefile.Lstat(d.fd, e.Name)
	if errors.Is(err, fs.ErrNotExist) {
		// A listing's findings are the walk's to report, not a lookup's.
		quiet := *w
		quiet.r, quiet.plan = &Report{}, false
		for _, it := range quiet.list(d) {
			if it.Name == name {
				e.Name, e.deriveParent, e.deriveName = it.Stored, it.id, it.Plain
				_, err = safefile.Lstat(d.fd, e.Name)
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not in the vault: %w", pp, err)
	}
	e.CipherPath = d.cipher + "/" + e.Name
	e.chain = append(append([]string(nil), d.chain...), e.Name)
	return e, nil
}

type extractor struct {
	o     ExtractOptions
	r     *Report
	d     *decrypter
	root  bool // euid 0: owners restored, device nodes made
	dest  int  // DEST itself
	dirs  []destDir
	links map[devIno]linked
	// chmods are directory modes without search permission for the owner,
	// applied last: until then extract may still look up paths through
	// them (hard links).
	chmods []deferredChmod
}

// destDir is a DEST directory being filled; the walk's current one is last.
type destDir struct {
	fd    int
	plain string // its path below DEST, "" for DEST itself
}

type devIno struct{ dev, ino uint64 }

// linked is where the first name of a hard-linked cipher inode was
// extracted, and what was made there.
type linked struct {
	dir, name string // plaintext directory below DEST, and name in it
	made      devIno
}

type deferredChmod struct {
	cipherPath, plain string
	mode              uint32
}

func (x *extractor) report(p Problem) { x.r.Problems = append(x.r.Problems, p) }

// reportErr reports err about e, each error of an errors.Join apart (a
// restore of metadata can fail in DEST and in the vault at once).
func (x *extractor) reportErr(e *Entry, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, err := range j.Unwrap() {
			x.reportErr(e, err)
		}
		return
	}
	if err != nil {
		x.report(e.problem(err))
	}
}

func (x *extractor) close() {
	for _, d := range x.dirs {
		if d.fd != x.dest {
			unix.Close(d.fd)
		}
	}
	x.dirs = nil
	unix.Close(x.dest)
}

func plainName(e *Entry) string { return e.PlainPath[strings.LastIndexByte(e.PlainPath, '/')+1:] }

func (x *extractor) visit(e *Entry) error {
	parent := x.dirs[len(x.dirs)-1]
	name := plainName(e)
	if e.Type() == unix.S_IFDIR {
		x.r.Dirs++
		fd, err := x.mkdir(parent.fd, name, e.PlainPath)
		if err != nil {
			x.report(e.problem(err))
			return fs.SkipDir
		}
		x.dirs = append(x.dirs, destDir{fd: fd, plain: e.PlainPath})
		return nil
	}
	key := devIno{e.Stat.Dev, e.Stat.Ino}
	if e.Stat.Nlink > 1 {
		if l, ok := x.links[key]; ok {
			if err := x.link(l, parent.fd, name); err != nil {
				x.report(e.problem(err))
			}
			return nil
		}
	}
	var err error
	made := true
	switch e.Type() {
	case unix.S_IFLNK:
		x.r.Symlinks++
		err = x.symlink(e, parent.fd, name)
	case unix.S_IFREG:
		x.r.Files++
		made = x.file(e, parent.fd, name)
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFCHR, unix.S_IFBLK:
		x.r.Other++
		err = x.node(e, parent.fd, name)
	default:
		x.r.Other++
		err = fmt.Errorf("%w: unsupported file type %s", crypto.ErrFormat, safefile.TypeName(e.Type()))
	}
	if err != nil {
		x.reportErr(e, err)
		made = false
	}
	if made && e.Stat.Nlink > 1 {
		if st, err := safefile.Lstat(parent.fd, name); err == nil {
			x.links[key] = linked{dir: parent.plain, name: name, made: devIno{st.Dev, st.Ino}}
		}
	}
	return nil
}

// leave restores a directory's metadata once everything in it is made, so
// creating children does not bump the times restored; the walk leaves the
// deepest directories first.
func (x *extractor) leave(e *Entry) {
	d := x.dirs[len(x.dirs)-1]
	x.dirs = x.dirs[:len(x.dirs)-1]
	defer unix.Close(d.fd)
	mode := e.Stat.Mode & 0o7777
	setMode := mode&unix.S_IXUSR != 0
	if !setMode {
		x.chmods = append(x.chmods, deferredChmod{cipherPath: e.CipherPath, plain: d.plain, mode: mode})
	}
	x.reportErr(e, x.metaFd(e, e.Fd, d.fd, setMode))
}

// finish applies the deferred directory modes, deepest first.
func (x *extractor) finish() {
	for _, c := range x.chmods {
		dir, name := path.Split(c.plain)
		fd, err := x.openDest(strings.TrimSuffix(dir, "/"))
		if err == nil {
			err = safefile.Chmod(fd, name, c.mode)
			if fd != x.dest {
				unix.Close(fd)
			}
		}
		if err != nil {
			x.report(Problem{Kind: KindDestination, CipherPath: c.cipherPath, PlainPath: c.plain,
				Detail: fmt.Sprintf("restoring mode %04o: %v", c.mode, err)})
		}
	}
}
