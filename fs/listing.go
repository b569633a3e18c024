package fs

import (
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// What a listing shows (issue 15). A cipher directory synced between devices
// holds more than entries whose names decrypt under its ID:
//
//   - a sync service's own files (.stfolder, .syncthing.*.tmp, desktop.ini…):
//     never shown, never logged (dirent.Housekeeping);
//   - conflict copies (X.sync-conflict-…, "X (conflicted copy …)", …): shown
//     next to the original under a display name, "report (conflict
//     2026-12-02 130124 CAVCEQA).pdf" (syncnames.Assign's rule keeps them
//     apart from real names), readable, renamable and removable, one log
//     line per copy;
//   - entries whose names were encrypted under another directory's ID: a
//     directory renamed on one device while another wrote into it comes back
//     under its old name holding the new files but not its sealfs.dirid (its
//     ID left with the renamed directory). Names that do not decrypt are
//     tried under every directory ID this mount has read and every dirid
//     file in the vault, and shown under their names when one fits.
//
// Entries whose plaintext name does not encrypt to their stored name (copies
// and entries of another ID) are the directory's extras: a lookup, unlink or
// rename of their name uses the stored name recorded at the last listing (or
// at a lookup that had to list the directory).

// extra is an entry whose name does not encrypt to its stored name here.
type extra struct {
	stored string
	enc    string // its full cipher name when it has its own side file
	long   bool   // stored has its own long-name side file
	orig   string // for a conflict copy: the stored name it copies
	plain  string // for a conflict copy: the original's plaintext name; for a foreign entry its name
	// foreign: the entry's name decrypted under id, another directory's
	// ID; a directory of it without its own ID file derives its ID from
	// that one (fallbackDirID).
	foreign bool
	id      crypto.DirID
}

// listed is one entry a listing shows.
type listed struct {
	name, stored string
	ino          uint64
	typ          uint8
}

// list reads directory n (open for reading at fd, whose names are encrypted
// under id) and returns what the plaintext view shows, refreshing n's
// extras.
func (n *node) list(fd int, id crypto.DirID) ([]listed, error) {
	// Each side file is read once per listing, however many IDs a name is
	// tried under.
	sides := map[string][]byte{}
	side := func(name string) ([]byte, error) {
		if b, ok := sides[name]; ok {
			return b, nil
		}
		b, err := safefile.ReadFileAt(fd, name, maxMetaFile)
		if err == nil {
			sides[name] = b
		}
		return b, err
	}
	var ents []dirent.Entry
	var meta []listed // ino and type, parallel to ents
	var undecryptable []int
	buf := make([]byte, 32<<10)
	for {
		nb, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if nb <= 0 {
			break
		}
		forEachDirent(buf[:nb], func(ino uint64, typ uint8, name string) {
			if name == "." || name == ".." {
				return
			}
			e := dirent.Classify(n.r.keys, id, name, side)
			e.Dir = typ == unix.DT_DIR
			switch e.Kind {
			case dirent.Metadata, dirent.MetadataCopy, dirent.Housekeeping:
				return
			case dirent.Undecryptable:
				undecryptable = append(undecryptable, len(ents))
			}
			ents = append(ents, e)
			meta = append(meta, listed{stored: name, ino: ino, typ: typ})
		})
	}
	foreign := map[int]bool{}
	foreignID := map[int]crypto.DirID{}
	if len(undecryptable) > 0 && !n.idFromFile() {
		n.tryOtherIDs(id, ents, undecryptable, side, foreign, foreignID)
	}
	for i := range foreign {
		ents[i].Foreign = ents[i].Kind == dirent.Plain
	}
	dirent.Name(ents)
	extras := map[string]extra{}
	out := make([]listed, 0, len(ents))
	for i, e := range ents {
		switch {
		case e.Kind == dirent.Undecryptable:
			n.r.log.Warn("name failed authentication; entry not listed (sealfs fsck reports it)",
				"cipher_path", n.logPath(e.Stored), "err", e.Err)
			continue
		case e.Kind == dirent.ConflictCopy:
			extras[e.Name] = extra{stored: e.Stored, orig: e.Conflict.Original, plain: e.Plain}
			n.r.logOnce(n.logPath(e.Stored), "conflict copy made by a sync service; shown next to its original",
				"original", n.logPath(e.Conflict.Original), "service", string(e.Conflict.Service()))
		case foreign[i]:
			// dirent.Name kept its name, or gave it "name (conflict other
			// directory)" when a real entry has it (as fsck and extract do).
			enc := e.Stored
			if e.Long {
				if b, err := side(e.Stored + crypto.LongNameSuffix); err == nil {
					enc = string(b)
				}
			}
			extras[e.Name] = extra{stored: e.Stored, enc: enc, long: e.Long, plain: e.Plain, id: foreignID[i], foreign: true}
		}
		l := meta[i]
		l.name = e.Name
		out = append(out, l)
	}
	n.setExtras(extras)
	return out, nil
}

// tryOtherIDs retries the undecryptable entries ents[idx] under the other
// directory IDs the vault holds, marking those that fit in foreign. Only for
// a directory whose own ID file is missing or unreadable (the caller
// checks): the sync races of issue 15 leave exactly that (a directory
// renamed on one device while another wrote into it comes back under its
// old name without the file), and elsewhere a name of another directory is
// what an attacker's transplant looks like, which stays hidden (guarantee 3
// of the threat model). A name is tried again only when more IDs are known
// than at its last try, so a planted junk name costs one round.
func (n *node) tryOtherIDs(own crypto.DirID, ents []dirent.Entry, idx []int, side dirent.ReadSide, foreign map[int]bool, foreignID map[int]crypto.DirID) {
	cands := n.r.ids.candidates(n.r)
	n.mu.Lock()
	if n.tried == nil {
		n.tried = map[string]int{}
	}
	left := idx[:0]
	for _, i := range idx {
		if n.tried[ents[i].Stored] < len(cands) {
			left = append(left, i)
		}
	}
	n.mu.Unlock()
	idx = left
	for _, cand := range cands {
		if len(idx) == 0 {
			break
		}
		if cand == own {
			continue
		}
		left := idx[:0]
		for _, i := range idx {
			e := dirent.Classify(n.r.keys, cand, ents[i].Stored, side)
			if e.Kind == dirent.Plain || e.Kind == dirent.ConflictCopy {
				e.Dir = ents[i].Dir
				ents[i] = e
				foreign[i], foreignID[i] = true, cand
				n.r.logOnce(n.logPath(e.Stored), "entry encrypted under another directory's ID (a sync race) shown in a directory without its ID file")
				continue
			}
			left = append(left, i)
		}
		idx = left
	}
	n.mu.Lock()
	for _, i := range idx {
		n.tried[ents[i].Stored] = len(cands)
	}
	n.mu.Unlock()
}

func (n *node) setExtras(m map[string]extra) {
	n.mu.Lock()
	n.extras, n.listedAt = m, time.Now()
	n.mu.Unlock()
}

// extra returns the stored place of name if it is one of n's extras.
func (n *node) extra(name string) (extra, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	x, ok := n.extras[name]
	return x, ok
}

// dropExtra forgets name after it was removed or renamed away.
func (n *node) dropExtra(name string) {
	n.mu.Lock()
	delete(n.extras, name)
	n.mu.Unlock()
}

// hasCopyOf reports whether the directory dfd holds a conflict copy of the
// long-name entry stored, which needs stored's side file to be named. It
// reads the directory as it is now (no decryption): a copy may have
// arrived since the last listing.
func hasCopyOf(dfd int, stored string) bool {
	hash := strings.TrimPrefix(stored, crypto.LongNamePrefix)
	names, err := listNames(dfd)
	if err != nil {
		return true // when in doubt, keep the side file
	}
	for _, name := range names {
		if name == stored || name == stored+crypto.LongNameSuffix || !strings.Contains(name, hash) {
			continue
		}
		for _, c := range syncnames.ParseConflict(name) {
			if c.Original == stored {
				return true
			}
		}
	}
	return false
}

// relist lists n to refresh its extras (a lookup of a name that may be one).
func (n *node) relist() {
	id, err := n.getDirID()
	if err != nil {
		return
	}
	fd, err := n.openDirRead()
	if err != nil {
		return
	}
	defer unix.Close(fd)
	n.list(fd, id)
}

// lookupExtra resolves name among n's extras when a plain lookup found
// nothing: from the last listing if it is recent, else by listing now. Only
// names that can be extras cost a listing: conflict display names, and any
// name in a directory whose ID file is missing.
func (n *node) lookupExtra(name string) (extra, bool) {
	if x, ok := n.extra(name); ok {
		return x, true
	}
	n.mu.Lock()
	recent := n.extras != nil && time.Since(n.listedAt) < attrTimeout
	n.mu.Unlock()
	if recent || (!syncnames.IsDisplay(name) && n.idFromFile()) {
		return extra{}, false
	}
	n.relist()
	return n.extra(name)
}

// logOnce logs msg about the cipher path once per mount.
func (r *root) logOnce(path, msg string, args ...any) {
	if _, dup := r.logged.LoadOrStore(path+"\x00"+msg, true); dup {
		return
	}
	r.log.Warn(msg, append([]any{"cipher_path", path}, args...)...)
}

// errIDUnknown refuses a new name in a directory whose ID file is missing
// or unreadable: the name would be encrypted under a guess, and vanish for
// good once the real file arrives from the sync service (issue 15).
const errIDUnknown = syscall.EAGAIN

// writableDir refuses new names in n while its directory ID is not known
// from its sealfs.dirid file.
func (n *node) writableDir() error {
	if n.IsRoot() {
		return nil
	}
	if _, err := n.getDirID(); err != nil {
		return err // the directory itself is gone or unusable
	}
	if n.idFromFile() {
		return nil
	}
	n.r.logOnce(n.logPath(crypto.DirIDFile),
		"new names refused in a directory whose ID file is missing (not synced yet?); they would be encrypted under a guess. "+
			"Wait for the sync, or run sealfs fsck --repair")
	return errIDUnknown
}

// idFromFile reports whether n's directory ID is known from its dirid file
// (the root's is fixed).
func (n *node) idFromFile() bool {
	if n.IsRoot() {
		return true
	}
	if _, err := n.getDirID(); err != nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.haveDirID
}
