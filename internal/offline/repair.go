package offline

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// fsck --repair: what Check plans and Repair applies. Only what is
// mechanical, each repair proven by the vault itself:
//
//   - restore a missing sealfs.dirid with the ID its directory's entries'
//     names authenticate under (AES-SIV names authenticate the ID: a wrong
//     ID fails every name), when they agree on one;
//   - adopt an entry whose name was encrypted under another directory's ID:
//     re-encrypt its name under its directory's own ID (renamed in place,
//     never over another entry);
//   - remove sealfs metadata nothing needs: a header temp file, a long-name
//     side file without its entry or a conflict copy needing it, a sync
//     service's redundant copy of a side file or an ID file.
//
// Each repair is checked again against the folder as it is when applied,
// done by directory descriptor and name following no symlink, made durable
// (the file and its directory fsynced) and verified after.

type fixAction uint8

const (
	fixRestoreDirID fixAction = iota + 1
	fixAdopt
	fixRemove
)

// fix is one planned repair in the directory at chain.
type fix struct {
	action    fixAction
	chain     []string // the directory's stored names from the root
	cipherDir string   // its cipher path, for messages
	name      string   // fixAdopt, fixRemove: the stored name acted on
	what      string   // fixRemove: what is removed
	// keep, if set, says why a removal is no longer justified (the folder
	// changed since the check).
	keep  func(dfd int) error
	id    crypto.DirID // fixRestoreDirID: the ID to write; fixAdopt: the ID the name decrypts under
	dirID crypto.DirID // fixAdopt: the directory's own ID
	plain string       // fixAdopt: the plaintext name it keeps
	err   error
	done  bool
}

func (f *fix) describe() string {
	switch f.action {
	case fixRestoreDirID:
		return "write sealfs.dirid with the ID its entries' names prove"
	case fixAdopt:
		return fmt.Sprintf("re-encrypt its name under this directory's ID (keeping the name %q)", f.plain)
	}
	return "remove the " + f.what
}

// propose reports p with f as its repair (fsck; extract plans none).
func (w *walker) propose(p Problem, f *fix) {
	if w.plan {
		w.r.fixes = append(w.r.fixes, f)
		p.fix = len(w.r.fixes)
		p.Repair = f.describe()
	}
	w.report(p)
}

// Repair applies the repairs CheckWith planned in r to the cipher folder,
// in the order they were found (a directory's ID before the adoptions into
// it), and marks r's problems Repaired, or gives their RepairError. It
// returns an error only when the folder cannot be opened.
func Repair(keys *crypto.Keys, cipherDir string, r *Report) error {
	if len(r.fixes) == 0 {
		return nil
	}
	root, err := openRoot(cipherDir)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for _, f := range ordered(r.fixes) {
		if f.done {
			continue
		}
		f.err = apply(keys, root, f)
		f.done = f.err == nil
	}
	for i := range r.Problems {
		p := &r.Problems[i]
		if p.fix == 0 {
			continue
		}
		if f := r.fixes[p.fix-1]; f.done {
			p.Repaired, p.RepairError = true, ""
		} else {
			p.RepairError = f.err.Error()
		}
	}
	return nil
}

// ordered is the order repairs are applied in: every ID file first (an
// adoption needs its directory's, and a directory is adopted only with its
// own), then removals, then adoptions, the deepest first, since adopting a
// directory renames it under the names that find the repairs below it.
func ordered(fixes []*fix) []*fix {
	out := append([]*fix(nil), fixes...)
	rank := func(f *fix) int {
		switch f.action {
		case fixRestoreDirID:
			return 0
		case fixRemove:
			return 1
		}
		return 2
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		return a.action == fixAdopt && len(a.chain) > len(b.chain)
	})
	return out
}

func apply(keys *crypto.Keys, root int, f *fix) error {
	dfd, err := openChain(root, f.chain)
	if err != nil {
		return fmt.Errorf("opening %s: %w", f.cipherDir, err)
	}
	defer unix.Close(dfd)
	switch f.action {
	case fixRestoreDirID:
		return restoreDirID(keys, dfd, f)
	case fixAdopt:
		return adopt(keys, dfd, f)
	}
	return remove(dfd, f)
}

// openChain opens the directory at the stored names chain below root,
// one component at a time, refusing anything but a directory.
func openChain(root int, chain []string) (int, error) {
	cur, err := safefile.OpenDirRead(root, "")
	if err != nil {
		return -1, err
	}
	for _, name := range chain {
		next, err := safefile.OpenDirRead(cur, name)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// restoreDirID writes the directory's ID file, if it is still missing and
// an entry's name still authenticates under the ID.
func restoreDirID(keys *crypto.Keys, dfd int, f *fix) error {
	ents, err := listDir(dfd)
	if err != nil {
		return err
	}
	side := func(name string) ([]byte, error) { return safefile.ReadFileAt(dfd, name, maxLongNameFile) }
	proven := false
	for _, d := range ents {
		if e := dirent.Classify(keys, f.id, d.Name, side); e.Kind == dirent.Plain || e.Kind == dirent.ConflictCopy {
			proven = true
			break
		}
	}
	if !proven {
		return errors.New("no entry's name authenticates under that ID any more (the folder changed); run fsck again")
	}
	if err := writeNew(dfd, crypto.DirIDFile, crypto.MarshalDirID(f.id), 0o444); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return errors.New("sealfs.dirid has arrived meanwhile; run fsck again")
		}
		return err
	}
	b, err := safefile.ReadFileAt(dfd, crypto.DirIDFile, 2+crypto.DirIDSize)
	if err != nil {
		return fmt.Errorf("reading back sealfs.dirid: %w", err)
	}
	if got, err := crypto.ParseDirID(b); err != nil || got != f.id {
		return fmt.Errorf("sealfs.dirid reads back wrong (%x, %v)", got, err)
	}
	return nil
}

// adopt re-encrypts the name of an entry of another directory's ID under
// the directory's own.
func adopt(keys *crypto.Keys, dfd int, f *fix) error {
	b, err := safefile.ReadFileAt(dfd, crypto.DirIDFile, 2+crypto.DirIDSize)
	var own crypto.DirID
	if err == nil {
		own, err = crypto.ParseDirID(b)
	}
	if len(f.chain) == 0 {
		own, err = crypto.RootDirID, nil
	}
	if err != nil || own != f.dirID {
		return fmt.Errorf("the directory's ID is not the one planned (%v); run fsck again", err)
	}
	side := func(name string) ([]byte, error) { return safefile.ReadFileAt(dfd, name, maxLongNameFile) }
	if e := dirent.Classify(keys, f.id, f.name, side); e.Kind != dirent.Plain && e.Kind != dirent.ConflictCopy {
		return errors.New("its name no longer decrypts under the other directory's ID (the folder changed); run fsck again")
	}
	// A directory's entries are under its own ID file, or under the ID
	// derived from its name, which the rename would change.
	if st, err := safefile.Lstat(dfd, f.name); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && !hasDirID(dfd, f.name) {
		return errors.New("it is a directory without its own sealfs.dirid; run fsck --repair again")
	}
	enc, err := keys.EncryptName(own, f.plain)
	if err != nil {
		return err
	}
	stored, long := crypto.StoredName(enc)
	if _, err := safefile.Lstat(dfd, stored); err == nil {
		return fmt.Errorf("an entry named %q is there now; rename one of them from the mount", f.plain)
	}
	madeSide := false
	if long {
		err := writeNew(dfd, stored+crypto.LongNameSuffix, []byte(enc), 0o644)
		switch {
		case err == nil:
			madeSide = true
		case errors.Is(err, fs.ErrExist):
			if b, rerr := side(stored + crypto.LongNameSuffix); rerr != nil || !bytes.Equal(b, []byte(enc)) {
				return fmt.Errorf("a different side file %s is in the way", stored+crypto.LongNameSuffix)
			}
		default:
			return err
		}
	}
	if err := renameNoReplace(dfd, f.name, stored); err != nil {
		if madeSide {
			unix.Unlinkat(dfd, stored+crypto.LongNameSuffix, 0)
		}
		return fmt.Errorf("renaming %s to %s: %w", f.name, stored, err)
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}
	// Its old side file goes unless a conflict copy still needs it.
	if syncnames.Shape(f.name) == syncnames.LongName && !needsSide(dfd, f.name) {
		if err := unix.Unlinkat(dfd, f.name+crypto.LongNameSuffix, 0); err == nil {
			unix.Fsync(dfd)
		}
	}
	if e := dirent.Classify(keys, own, stored, side); e.Kind != dirent.Plain || e.Plain != f.plain {
		return fmt.Errorf("the new name does not read back (%v)", e.Err)
	}
	return nil
}

// needsSide reports whether an entry of the directory other than the long
// name stored itself is a conflict copy of it (and so reads its name from
// stored's side file).
func needsSide(dfd int, stored string) bool {
	ents, err := listDir(dfd)
	if err != nil {
		return true
	}
	for _, d := range ents {
		if d.Name == stored {
			return true
		}
		for _, c := range syncnames.ParseConflict(d.Name) {
			if c.Original == stored {
				return true
			}
		}
	}
	return false
}

// keepSide is the removal check of an orphan side file: its entry or a
// conflict copy needing it may have arrived since.
func keepSide(entry string) func(int) error {
	return func(dfd int) error {
		if needsSide(dfd, entry) {
			return errors.New("its entry, or a conflict copy of it, is there now")
		}
		return nil
	}
}

// keepUnless is the removal check of a redundant copy: cond must still
// hold.
func keepUnless(cond func(dfd int) bool, why string) func(int) error {
	return func(dfd int) error {
		if !cond(dfd) {
			return errors.New(why)
		}
		return nil
	}
}

// listDir lists the directory open at dfd from its start, through a new
// open file description (dfd's offset is not moved).
func listDir(dfd int) ([]safefile.Dirent, error) {
	fd, err := safefile.OpenDirRead(dfd, "")
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return safefile.ReadDir(fd)
}

// remove unlinks a file nothing needs, if that still holds.
func remove(dfd int, f *fix) error {
	if f.keep != nil {
		if err := f.keep(dfd); err != nil {
			return err
		}
	}
	st, err := safefile.Lstat(dfd, f.name)
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%s is a directory now", f.name)
	}
	if err := unix.Unlinkat(dfd, f.name, 0); err != nil {
		return &fs.PathError{Op: "unlink", Path: f.name, Err: err}
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("fsync of the directory: %w", err)
	}
	if _, err := safefile.Lstat(dfd, f.name); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is still there (%v)", f.name, err)
	}
	return nil
}

// writeNew creates name in dfd (never over anything, never through a
// symlink) with content b and makes it durable: the file and then the
// directory fsynced.
func writeNew(dfd int, name string, b []byte, mode uint32) error {
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return &fs.PathError{Op: "create", Path: name, Err: err}
	}
	err = writeFull(fd, b)
	if err == nil {
		err = unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Fsync(dfd)
	}
	if err != nil {
		unix.Unlinkat(dfd, name, 0)
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	return nil
}

// renameNoReplace renames from to to in dfd, never over an existing entry.
// Where the file system has no RENAME_NOREPLACE, an lstat checks first.
func renameNoReplace(dfd int, from, to string) error {
	err := unix.Renameat2(dfd, from, dfd, to, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	if _, lerr := safefile.Lstat(dfd, to); !errors.Is(lerr, fs.ErrNotExist) {
		return unix.EEXIST
	}
	return unix.Renameat(dfd, from, dfd, to)
}
