package offline

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// ExtractOptions control Extract.
type ExtractOptions struct {
	Keys      *crypto.Keys
	CipherDir string
	Dest      string // created if missing; existing entries are not overwritten (unless Overwrite), nor symlinks in it followed
	Path      string // plaintext sub-path to extract ("" = everything); lands at Dest/Path
	Progress  func(cipherBytes int64)
	// Overwrite replaces a file, symlink or special file already in Dest
	// where an entry goes (the entry itself is removed, never what a
	// symlink points to); directories are merged. Without it such entries
	// are left alone and reported (KindDestination).
	Overwrite bool
}

// Extract decrypts the vault (or Path) into Dest, preserving modes, owners
// (when run as root), nanosecond times, user.* xattrs, symlinks, FIFOs and
// hard links. Damaged blocks are written as zeros so the rest of the file is
// salvaged; every problem is in the returned report, and the caller should
// treat a non-empty report as failure.
func Extract(o ExtractOptions) (*Report, error) {
	r := &Report{Problems: []Problem{}}
	report := func(p Problem) { r.Problems = append(r.Problems, p) }
	start, startDir, err := resolve(o.Keys, o.CipherDir, o.Path)
	if err != nil {
		return r, err
	}
	if err := os.MkdirAll(o.Dest, 0o700); err != nil {
		return r, fmt.Errorf("creating %s: %w", o.Dest, err)
	}
	x := &extractor{o: o, r: r, report: report, links: map[uint64]string{}}
	w := &walker{keys: o.Keys, report: report, visit: x.visit}
	if start != nil { // a single entry, possibly a directory
		if err := mkdirsUnder(o.Dest, path.Dir(start.PlainPath)); err != nil {
			report(Problem{Kind: classify(err), CipherPath: start.CipherPath, PlainPath: start.PlainPath, Detail: err.Error()})
			return r, nil
		}
		if err := x.visit(*start); errors.Is(err, fs.SkipDir) {
			return r, nil
		} else if err != nil {
			return r, err
		}
		if start.Info.IsDir() {
			if err := w.walkDir(start.CipherPath, start.PlainPath, start.DirID); err != nil {
				return r, err
			}
		}
	} else if err := w.walkDir(startDir, "", crypto.RootDirID); err != nil {
		return r, err
	}
	// Directory metadata last, deepest first, so creating children does not
	// bump the times we restore.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		x.applyMeta(d.src, d.dst, d.info)
	}
	return r, nil
}

// resolve finds the cipher entry for a plaintext path by encrypting each
// component under its parent's directory ID, the way the mount looks names up.
func resolve(keys *crypto.Keys, cipherDir, plain string) (*Entry, string, error) {
	plain = strings.Trim(filepath.ToSlash(filepath.Clean("/"+plain)), "/")
	if plain == "" {
		return nil, cipherDir, nil
	}
	w := &walker{keys: keys, report: func(Problem) {}}
	cur, id := cipherDir, crypto.RootDirID
	var e Entry
	for i, name := range strings.Split(plain, "/") {
		enc, err := keys.EncryptName(id, name)
		if err != nil {
			return nil, "", err
		}
		stored, _ := crypto.StoredName(enc)
		cpath := filepath.Join(cur, stored)
		info, err := os.Lstat(cpath)
		if err != nil {
			return nil, "", fmt.Errorf("%s is not in the vault: %w", strings.Join(strings.Split(plain, "/")[:i+1], "/"), err)
		}
		e = Entry{CipherPath: cpath, PlainPath: joinPlain(e.PlainPath, name), Info: info}
		if info.IsDir() {
			e.DirID, _ = w.dirID(cpath, e.PlainPath, id, name)
			cur, id = cpath, e.DirID
		}
	}
	return &e, "", nil
}

type extractor struct {
	o      ExtractOptions
	r      *Report
	report func(Problem)
	links  map[uint64]string // cipher inode → first extracted path, for hard links
	dirs   []pendingDir
}

type pendingDir struct {
	src, dst string
	info     fs.FileInfo
}

func (x *extractor) visit(e Entry) error {
	dst := filepath.Join(x.o.Dest, filepath.FromSlash(e.PlainPath))
	st, _ := e.Info.Sys().(*syscall.Stat_t)
	problem := func(err error) {
		x.report(Problem{Kind: classify(err), CipherPath: e.CipherPath, PlainPath: e.PlainPath, Detail: err.Error()})
	}
	mode := e.Info.Mode()
	switch {
	case mode.IsDir():
		x.r.Dirs++
		if err := x.place(dst, func() error { return realDir(dst) }); err != nil {
			problem(err)
			return fs.SkipDir
		}
		x.dirs = append(x.dirs, pendingDir{e.CipherPath, dst, e.Info})
		return nil
	case st != nil && st.Nlink > 1 && !mode.IsDir():
		if first, ok := x.links[st.Ino]; ok {
			if err := x.place(dst, func() error { return os.Link(first, dst) }); err != nil {
				problem(err)
			}
			return nil
		}
		x.links[st.Ino] = dst
	}
	switch {
	case mode&fs.ModeSymlink != 0:
		x.r.Symlinks++
		t, err := os.Readlink(e.CipherPath)
		if err == nil {
			t, err = x.o.Keys.DecryptSymlink(t)
		}
		if err == nil {
			err = x.place(dst, func() error { return os.Symlink(t, dst) })
		}
		if err != nil {
			problem(err)
			return nil
		}
	case mode.IsRegular():
		x.r.Files++
		if err := x.file(e, dst); err != nil {
			problem(err)
			return nil
		}
	case mode&fs.ModeNamedPipe != 0:
		x.r.Other++
		if err := x.place(dst, func() error { return unix.Mkfifo(dst, 0o600) }); err != nil {
			problem(err)
			return nil
		}
	default:
		x.r.Other++
		problem(fmt.Errorf("%w: unsupported file type %v", crypto.ErrFormat, mode.Type()))
		return nil
	}
	x.applyMeta(e.CipherPath, dst, e.Info)
	return nil
}

// place runs create, which makes the entry dst. With Overwrite, a
// non-directory already at dst is removed (itself, not a symlink's target)
// and create runs once more.
func (x *extractor) place(dst string, create func() error) error {
	err := create()
	if err == nil || !x.o.Overwrite || !(errors.Is(err, fs.ErrExist) || errors.Is(err, errDestination)) {
		return err
	}
	if fi, lerr := os.Lstat(dst); lerr != nil || fi.IsDir() {
		return err
	}
	if rerr := os.Remove(dst); rerr != nil {
		return errors.Join(err, rerr)
	}
	return create()
}

func (x *extractor) file(e Entry, dst string) error {
	var f *os.File
	err := x.place(dst, func() (err error) {
		f, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		return err
	})
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	_, bad, derr := decryptFile(x.o.Keys, e.CipherPath, func(p []byte) error {
		_, err := bw.Write(p)
		return err
	}, func(n int64) {
		x.r.Blocks++
		x.r.CipherBytes += n
		if x.o.Progress != nil {
			x.o.Progress(n)
		}
	})
	for _, b := range bad {
		x.report(Problem{Kind: classify(b.Err), CipherPath: e.CipherPath, PlainPath: e.PlainPath,
			Detail: fmt.Sprintf("block %d written as zeros: %v", b.Index, b.Err)})
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return derr
}

// applyMeta restores owner (as root), mode, user xattrs and times, in the
// order that keeps each from undoing the previous (chown clears setuid bits;
// times last).
func (x *extractor) applyMeta(src, dst string, info fs.FileInfo) {
	st, _ := info.Sys().(*syscall.Stat_t)
	if st == nil {
		return
	}
	var errs []error
	if os.Geteuid() == 0 {
		errs = append(errs, os.Lchown(dst, int(st.Uid), int(st.Gid)))
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		errs = append(errs, chmodNoFollow(dst, st.Mode&07777))
	}
	errs = append(errs, x.copyXattrs(src, dst))
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	errs = append(errs, unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW))
	if err := errors.Join(errs...); err != nil {
		x.report(Problem{Kind: KindMissing, CipherPath: src, PlainPath: dst, Detail: "restoring metadata: " + err.Error()})
	}
}

// errDestination marks an entry that DEST refused: what is already there
// is in the way (KindDestination).
var errDestination = errors.New("in the way in the destination")

// realDir makes dst a directory: created (0700 until its metadata is
// restored) if missing, kept if it already is a real directory. Anything
// else already at dst is refused, a symlink above all, even to a directory:
// extracting through it would write the vault's files (and modes) outside
// DEST.
func realDir(dst string) error {
	err := os.Mkdir(dst, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dst)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		kind := "a file"
		if fi.Mode()&fs.ModeSymlink != 0 {
			kind = "a symlink"
		} else if !fi.Mode().IsRegular() {
			kind = "a " + fi.Mode().Type().String() + " special file"
		}
		return fmt.Errorf("%w: %s exists and is %s, not a directory; not extracting into it", errDestination, dst, kind)
	}
	return nil
}

// mkdirsUnder makes each component of the slash-separated rel a real
// directory under dest (realDir), so that no symlink already in DEST
// redirects a sub-path's extraction. dest itself is the user's choice and
// may be reached through symlinks.
func mkdirsUnder(dest, rel string) error {
	cur := dest
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." {
			continue
		}
		cur = filepath.Join(cur, c)
		if err := realDir(cur); err != nil {
			return err
		}
	}
	return nil
}

// chmodNoFollow sets the mode of path itself: a symlink swapped in at path
// fails (ELOOP) instead of passing the mode on to its target, which
// chmod(2) would do. (fchmodat's AT_SYMLINK_NOFOLLOW is not supported by
// Linux before fchmodat2.) O_NONBLOCK keeps a FIFO's open from waiting for
// a writer.
func chmodNoFollow(path string, mode uint32) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "chmod", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, mode); err != nil {
		return &fs.PathError{Op: "chmod", Path: path, Err: err}
	}
	return nil
}

func (x *extractor) copyXattrs(src, dst string) error {
	names, err := listXattrs(src)
	if err != nil {
		return nil
	}
	for _, n := range names {
		if !strings.HasPrefix(n, crypto.StoredXattrPrefix) {
			continue
		}
		plainName, err := x.o.Keys.DecryptXattrName(n)
		if err != nil {
			return fmt.Errorf("xattr name: %w", err)
		}
		v, err := getXattr(src, n)
		if err != nil {
			return err
		}
		if v, err = x.o.Keys.DecryptXattrValue(n, v); err != nil {
			return fmt.Errorf("xattr %s: %w", plainName, err)
		}
		if err := unix.Lsetxattr(dst, plainName, v, 0); err != nil {
			return fmt.Errorf("xattr %s: %w", plainName, err)
		}
	}
	return nil
}
