package offline

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// Writing into DEST. Every object is made by its parent directory's
// descriptor and its plaintext name (one component: crypto.DecryptName
// refuses '/', NUL, "." and ".."), files with O_EXCL and O_NOFOLLOW,
// directories entered with O_NOFOLLOW, metadata set through the new
// object's own descriptor or with AT_SYMLINK_NOFOLLOW. So a symlink in DEST
// — there before, planted meanwhile, or made by this extraction — is never
// followed, and nothing outside DEST is touched.

// destError is a failure on the DEST side (KindDestination): the vault is
// fine.
type destError struct{ err error }

func (e *destError) Error() string { return "destination: " + e.err.Error() }
func (e *destError) Unwrap() error { return e.err }

func destErr(op, name string, err error) error {
	return &destError{fmt.Errorf("%s %s: %w", op, name, err)}
}

// mkdir makes name in the DEST directory dirfd a directory and opens it:
// created (0700 until its metadata is restored) if missing, kept if it
// already is a real directory. Anything else there is refused, a symlink
// above all, even to a directory: extracting through it would write the
// vault's files (and modes) outside DEST.
func (x *extractor) mkdir(dirfd int, name, plain string) (int, error) {
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil && err != syscall.EEXIST {
		return -1, destErr("mkdir", x.destPath(plain), err)
	}
	fd, err := safefile.OpenDirRead(dirfd, name)
	var te *safefile.TypeError
	if errors.As(err, &te) && x.replace(dirfd, name, syscall.EEXIST) {
		if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
			return -1, destErr("mkdir", x.destPath(plain), err)
		}
		fd, err = safefile.OpenDirRead(dirfd, name)
	}
	if errors.As(err, &te) {
		return -1, fmt.Errorf("%w: %s exists and is a %s, not a directory; not extracting into it",
			errDestination, x.destPath(plain), safefile.TypeName(te.Found))
	}
	if err != nil {
		return -1, destErr("open", x.destPath(plain), err)
	}
	return fd, nil
}

// mkdirs makes each component of the slash-separated rel a real directory
// below DEST (mkdir) and returns the last one's descriptor (DEST's own for
// "" or "."), so that no symlink already in DEST redirects a sub-path's
// extraction.
func (x *extractor) mkdirs(rel string) (int, error) {
	cur, plain := x.dest, ""
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." {
			continue
		}
		plain = joinPlain(plain, c)
		fd, err := x.mkdir(cur, c, plain)
		if cur != x.dest {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// openDest opens the DEST directory at the plaintext path rel, component
// by component, following no symlink; DEST's own descriptor for "". A
// directory still being filled is taken from the walk's stack.
func (x *extractor) openDest(rel string) (int, error) {
	for _, d := range x.dirs {
		if d.plain == rel {
			return unix.Dup(d.fd)
		}
	}
	cur := x.dest
	for _, c := range strings.Split(rel, "/") {
		if c == "" {
			continue
		}
		fd, err := safefile.OpenDir(cur, c)
		if cur != x.dest {
			unix.Close(cur)
		}
		if err != nil {
			return -1, destErr("open", x.destPath(rel), err)
		}
		cur = fd
	}
	return cur, nil
}

func (x *extractor) destPath(plain string) string {
	if plain == "" {
		return x.o.Dest
	}
	return strings.TrimSuffix(x.o.Dest, "/") + "/" + plain
}

// link makes name in dirfd another name of the object extracted first for
// the same cipher inode, if it is still the object extract made there.
func (x *extractor) link(l linked, dirfd int, name string) error {
	odir, err := x.openDest(l.dir)
	if err != nil {
		return err
	}
	if odir != x.dest {
		defer unix.Close(odir)
	}
	first := x.destPath(joinPlain(l.dir, l.name))
	st, err := safefile.Lstat(odir, l.name)
	if err != nil {
		return destErr("hard link to", first, err)
	}
	if (devIno{st.Dev, st.Ino}) != l.made {
		return fmt.Errorf("%w: %s is no longer the file extract made; not linking to it", errDestination, first)
	}
	err = unix.Linkat(odir, l.name, dirfd, name, 0)
	if x.replace(dirfd, name, err) {
		err = unix.Linkat(odir, l.name, dirfd, name, 0)
	}
	if err != nil {
		return destErr("hard link to "+first+" as", name, err)
	}
	return nil
}

func (x *extractor) symlink(e *Entry, dirfd int, name string) error {
	t, err := readSymlink(x.o.Keys, e)
	if err != nil {
		return err
	}
	err = unix.Symlinkat(t, dirfd, name)
	if x.replace(dirfd, name, err) {
		err = unix.Symlinkat(t, dirfd, name)
	}
	if err != nil {
		return destErr("symlink", x.destPath(e.PlainPath), err)
	}
	return x.metaAt(e, dirfd, name)
}

// node makes a FIFO, socket or device node. Devices need root (mknod's
// CAP_MKNOD); without it they are reported, not silently skipped.
func (x *extractor) node(e *Entry, dirfd int, name string) error {
	typ, dev := e.Type(), 0
	if typ == unix.S_IFCHR || typ == unix.S_IFBLK {
		if !x.root {
			return fmt.Errorf("%w: %s %d:%d not made at %s: creating device nodes needs root", errDestination,
				safefile.TypeName(typ), unix.Major(e.Stat.Rdev), unix.Minor(e.Stat.Rdev), x.destPath(e.PlainPath))
		}
		dev = int(e.Stat.Rdev)
	}
	err := unix.Mknodat(dirfd, name, typ|0o600, dev)
	if x.replace(dirfd, name, err) {
		err = unix.Mknodat(dirfd, name, typ|0o600, dev)
	}
	if err != nil {
		return destErr("mknod", x.destPath(e.PlainPath), err)
	}
	return x.metaAt(e, dirfd, name)
}

// file decrypts the cipher file e into a new file name in dirfd; it
// reports its own problems and returns whether the file was made.
func (x *extractor) file(e *Entry, dirfd int, name string) bool {
	src, size, err := openCipherFile(e)
	if err != nil {
		x.report(e.problem(err))
		return false
	}
	defer unix.Close(src)
	if size == 0 {
		// The content is not on this device: nothing to restore.
		x.report(placeholder(e, true))
		return false
	}
	const create = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	dst, err := unix.Openat(dirfd, name, create, 0o600)
	if x.replace(dirfd, name, err) {
		dst, err = unix.Openat(dirfd, name, create, 0o600)
	}
	if err != nil {
		x.report(e.problem(destErr("create", x.destPath(e.PlainPath), err)))
		return false
	}
	_, bad, derr := x.d.file(src, size, func(p []byte) error {
		if err := writeFull(dst, p); err != nil {
			return destErr("write", x.destPath(e.PlainPath), err)
		}
		return nil
	}, func(n int64) {
		x.r.Blocks++
		x.r.CipherBytes += n
		if x.o.Progress != nil {
			x.o.Progress(n)
		}
	})
	for _, p := range fileProblems(e, size, bad, derr, "written as zeros") {
		x.report(p)
	}
	x.reportErr(e, x.metaFd(e, src, dst, true))
	if err := unix.Close(dst); err != nil {
		x.report(e.problem(destErr("write", x.destPath(e.PlainPath), err)))
	}
	return true
}

// replace removes what is at name in dirfd when it is in the way of a new
// entry (err is EEXIST), ExtractOptions.Overwrite is set and it is no
// directory (directories merge). unlinkat removes the entry itself, never
// what a symlink there points to. It reports whether the caller should
// make its entry again.
func (x *extractor) replace(dirfd int, name string, err error) bool {
	if !x.o.Overwrite || !errors.Is(err, syscall.EEXIST) {
		return false
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false
	}
	return unix.Unlinkat(dirfd, name, 0) == nil
}

func writeFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// metaFd restores owner (as root), mode (if setMode), the user xattrs of
// the cipher object open at src, and times on the DEST object open at dst,
// in the order that keeps each from undoing the previous (chown clears
// setuid bits; times last).
func (x *extractor) metaFd(e *Entry, src, dst int, setMode bool) error {
	var errs []error
	where := x.destPath(e.PlainPath)
	if x.root {
		if err := unix.Fchown(dst, int(e.Stat.Uid), int(e.Stat.Gid)); err != nil {
			errs = append(errs, destErr("chown", where, err))
		}
	}
	if setMode {
		if err := unix.Fchmod(dst, e.Stat.Mode&0o7777); err != nil {
			errs = append(errs, destErr("chmod", where, err))
		}
	}
	errs = append(errs, x.copyXattrs(src, dst, where))
	if err := futimens(dst, &[2]unix.Timespec{unix.Timespec(e.Stat.Atim), unix.Timespec(e.Stat.Mtim)}); err != nil {
		errs = append(errs, destErr("utimens", where, err))
	}
	return errors.Join(errs...)
}

// metaAt is metaFd for the objects that cannot be opened to set them
// (symlinks, FIFOs, sockets, devices): by name in dirfd, never following
// a symlink. Symlinks have no mode of their own, nor user xattrs.
func (x *extractor) metaAt(e *Entry, dirfd int, name string) error {
	var errs []error
	where := x.destPath(e.PlainPath)
	if x.root {
		if err := unix.Fchownat(dirfd, name, int(e.Stat.Uid), int(e.Stat.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			errs = append(errs, destErr("chown", where, err))
		}
	}
	if e.Type() != unix.S_IFLNK {
		if err := safefile.Chmod(dirfd, name, e.Stat.Mode&0o7777); err != nil {
			errs = append(errs, destErr("chmod", where, err))
		}
	}
	ts := []unix.Timespec{unix.Timespec(e.Stat.Atim), unix.Timespec(e.Stat.Mtim)}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		errs = append(errs, destErr("utimens", where, err))
	}
	return errors.Join(errs...)
}

// copyXattrs decrypts the sealfs attributes of src onto dst.
func (x *extractor) copyXattrs(src, dst int, where string) error {
	names, err := safefile.Listxattr(src)
	if err != nil {
		return nil // no xattr support on the backing store: nothing stored
	}
	var errs []error
	for _, n := range names {
		if !strings.HasPrefix(n, crypto.StoredXattrPrefix) {
			continue
		}
		name, v, err := decryptXattr(x.o.Keys, src, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("xattr: %w", err))
			continue
		}
		if err := unix.Fsetxattr(dst, name, v, 0); err != nil {
			errs = append(errs, destErr("setxattr "+name+" on", where, err))
		}
	}
	return errors.Join(errs...)
}

// futimens sets the times of the object open at fd: utimensat with a NULL
// path, as the C library's futimens does (x/sys passes a path string).
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
