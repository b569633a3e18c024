package offline

import (
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// CheckOptions control CheckWith.
type CheckOptions struct {
	Keys      *crypto.Keys
	CipherDir string
	// Progress, if set, is called with the cipher bytes verified so far
	// (for a progress bar sized by TotalBytes).
	Progress func(int64)
	// IDRecord is this machine's record of directory IDs read by its
	// mounts ($XDG_STATE_HOME/sealfs/dirids/<vault id hex>), tried with the
	// vault's own for names that do not decrypt; "" for none.
	IDRecord string
}

// Check verifies every name, directory ID, file header, block, symlink
// target and xattr below cipherDir, as CheckWith without an ID record.
func Check(keys *crypto.Keys, cipherDir string, progress func(int64)) (*Report, error) {
	return CheckWith(CheckOptions{Keys: keys, CipherDir: cipherDir, Progress: progress})
}

// CheckWith verifies the vault, reports what it finds by class, and plans
// the repairs that are mechanical (see Repair); it never writes to the
// cipher folder.
func CheckWith(o CheckOptions) (*Report, error) {
	r := &Report{Problems: []Problem{}}
	root, err := openRoot(o.CipherDir)
	if err != nil {
		return r, err
	}
	defer unix.Close(root)
	c := &checker{keys: o.Keys, r: r, d: newDecrypter(o.Keys), progress: o.Progress}
	w := newWalker(o.Keys, r, root, o.IDRecord)
	w.visit, w.plan = c.visit, true
	err = w.walkRoot(root, o.CipherDir)
	r.ids = w.ids
	return r, err
}

type checker struct {
	keys     *crypto.Keys
	r        *Report
	d        *decrypter
	progress func(int64)
}

func (c *checker) report(p Problem) { c.r.Problems = append(c.r.Problems, p) }

func (c *checker) visit(e *Entry) error {
	switch e.Type() {
	case unix.S_IFDIR:
		c.r.Dirs++
		checkXattrs(c.keys, e, e.Fd, c.report)
	case unix.S_IFLNK:
		c.r.Symlinks++
		if _, err := readSymlink(c.keys, e); err != nil {
			c.report(e.problem(err))
		}
	case unix.S_IFREG:
		c.r.Files++
		c.file(e)
	default:
		// FIFOs, sockets and devices hold no data; nothing opens them.
		c.r.Other++
	}
	return nil
}

func (c *checker) file(e *Entry) {
	fd, size, err := openCipherFile(e)
	if err != nil {
		c.report(e.problem(err))
		return
	}
	defer unix.Close(fd)
	checkXattrs(c.keys, e, fd, c.report)
	if size == 0 {
		c.report(placeholder(e, false))
		return
	}
	_, bad, err := c.d.file(fd, size, nil, func(n int64) {
		c.r.Blocks++
		c.r.CipherBytes += n
		if c.progress != nil {
			c.progress(n)
		}
	})
	for _, p := range fileProblems(e, size, bad, err, "") {
		c.report(p)
	}
}

// openCipherFile opens the regular cipher file e names for reading (a FIFO,
// device or symlink swapped in since the listing is refused, never opened)
// and returns it with its size.
func openCipherFile(e *Entry) (int, int64, error) {
	pfd, st, err := safefile.RegularHandle(e.Dir, e.Name)
	if err != nil {
		return -1, 0, err
	}
	defer unix.Close(pfd)
	fd, err := safefile.Reopen(pfd, unix.O_RDONLY)
	if err != nil {
		return -1, 0, &fs.PathError{Op: "open", Path: e.Name, Err: err}
	}
	return fd, st.Size, nil
}

// readSymlink decrypts the target of the symlink e names.
func readSymlink(keys *crypto.Keys, e *Entry) (string, error) {
	t, err := safefile.ReadlinkAt(e.Dir, e.Name)
	if err != nil {
		return "", err
	}
	p, err := keys.DecryptSymlink(t)
	if err != nil {
		return "", fmt.Errorf("symlink target: %w", err)
	}
	return p, nil
}

// checkXattrs decrypts every sealfs xattr of the cipher object open at fd
// (a directory or a regular file: Linux keeps user.* attributes on nothing
// else).
func checkXattrs(keys *crypto.Keys, e *Entry, fd int, report func(Problem)) {
	names, err := safefile.Listxattr(fd)
	if err != nil {
		return // no xattr support on the backing store: nothing to check
	}
	for _, n := range names {
		if !strings.HasPrefix(n, crypto.StoredXattrPrefix) {
			continue
		}
		if _, _, err := decryptXattr(keys, fd, n); err != nil {
			report(Problem{Kind: classify(err), CipherPath: e.CipherPath, PlainPath: e.PlainPath, Detail: "xattr: " + err.Error()})
		}
	}
}

// decryptXattr reads and decrypts the sealfs attribute stored of fd.
func decryptXattr(keys *crypto.Keys, fd int, stored string) (string, []byte, error) {
	name, err := keys.DecryptXattrName(stored)
	if err != nil {
		return "", nil, err
	}
	v, err := safefile.Getxattr(fd, stored)
	if err != nil {
		return "", nil, err
	}
	if v, err = keys.DecryptXattrValue(stored, v); err != nil {
		return "", nil, fmt.Errorf("%s: %w", name, err)
	}
	return name, v, nil
}

// TotalBytes sums the sizes of the regular files below dir, for sizing a
// progress bar before a Check or Extract. Like them it follows no symlink
// below dir.
func TotalBytes(dir string) int64 {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	return dirBytes(fd)
}

func dirBytes(fd int) int64 {
	ents, err := safefile.ReadDir(fd)
	if err != nil {
		return 0
	}
	var total int64
	for _, d := range ents {
		switch d.Type {
		case unix.S_IFREG, 0: // 0: the file system does not say
			if st, err := safefile.Lstat(fd, d.Name); err == nil {
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFREG:
					total += st.Size
				case unix.S_IFDIR:
					total += subdirBytes(fd, d.Name)
				}
			}
		case unix.S_IFDIR:
			total += subdirBytes(fd, d.Name)
		}
	}
	return total
}

func subdirBytes(fd int, name string) int64 {
	sub, err := safefile.OpenDirRead(fd, name)
	if err != nil {
		return 0
	}
	defer unix.Close(sub)
	return dirBytes(sub)
}
