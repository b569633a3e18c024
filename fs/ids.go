package fs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// idIndex knows the directory IDs of the vault, for names that do not
// decrypt under their own directory's ID (listing.go): every ID this mount
// read, those of all dirid files a walk of the cipher folder finds (only
// when such names appear, at most every idScanEvery), and those this
// machine read in earlier mounts (Options.IDRecord). The last matter after
// a directory was removed on one device while another wrote into it: the
// sync brings the directory back with the new files and without its ID
// file, which no longer exists anywhere in the vault, but both devices read
// it before. Directory IDs are no secret (each dirid file holds one in the
// clear), so the record leaks nothing the cipher folder does not.
type idIndex struct {
	walkMu  sync.Mutex // one walk of the vault at a time
	mu      sync.Mutex
	seen    map[crypto.DirID]bool
	scanned time.Time
	// record is the local file of IDs read in earlier mounts ("": none);
	// loaded once, at the first need; pending IDs are appended to it in
	// batches and at unmount.
	record  string
	loaded  bool
	pending []crypto.DirID
	full    bool // the record reached idRecordMax; no more appends
}

const (
	idScanEvery   = 10 * time.Second
	idScanMax     = 200000             // directories walked at most
	idScanDepth   = 4096               // and no deeper (each level is an open descriptor)
	idRecordBatch = 256                // IDs appended to the record at once
	idRecordMax   = dirent.MaxIDRecord // record size at most: a million directories
	dirIDSz       = crypto.DirIDSize
)

func (x *idIndex) add(id crypto.DirID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.seen == nil {
		x.seen = map[crypto.DirID]bool{}
	}
	if x.seen[id] {
		return
	}
	x.seen[id] = true
	if x.record != "" && !x.full {
		x.pending = append(x.pending, id)
		if len(x.pending) >= idRecordBatch {
			x.flushLocked()
		}
	}
}

// candidates returns every known directory ID, walking the vault first if
// the last walk is older than idScanEvery.
func (x *idIndex) candidates(r *root) []crypto.DirID {
	x.mu.Lock()
	if !x.loaded {
		x.loadLocked()
	}
	stale := time.Since(x.scanned) > idScanEvery
	x.mu.Unlock()
	if stale {
		found := r.walkDirIDs()
		for _, id := range found {
			x.add(id)
		}
		x.mu.Lock()
		x.scanned = time.Now()
		x.mu.Unlock()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]crypto.DirID, 0, len(x.seen))
	for id := range x.seen {
		out = append(out, id)
	}
	return out
}

// loadLocked reads the record of earlier mounts into seen. A record that
// cannot be read costs only the IDs it held.
func (x *idIndex) loadLocked() {
	x.loaded = true
	if x.record == "" {
		return
	}
	f, err := os.Open(x.record)
	if err != nil {
		return
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, idRecordMax+1))
	if err != nil {
		return
	}
	if len(b) > idRecordMax {
		x.full = true
	}
	if x.seen == nil {
		x.seen = map[crypto.DirID]bool{}
	}
	for _, id := range dirent.ParseIDRecord(b) {
		x.seen[id] = true
	}
}

// flush appends the pending IDs to the record (at unmount).
func (x *idIndex) flush() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.flushLocked()
}

func (x *idIndex) flushLocked() {
	if len(x.pending) == 0 || x.record == "" {
		return
	}
	buf := make([]byte, 0, len(x.pending)*dirIDSz)
	for _, id := range x.pending {
		buf = append(buf, id[:]...)
	}
	x.pending = x.pending[:0]
	if err := os.MkdirAll(filepath.Dir(x.record), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(x.record, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size()+int64(len(buf)) > idRecordMax {
		x.full = true
		return
	}
	_, err = f.Write(buf)
	if errors.Is(err, unix.ENOSPC) {
		x.full = true
	}
}

// walkDirIDs reads the dirid file of every directory below the cipher root,
// fd-relative, following no symlink. Depth first, so only the directories
// on the current path are open (a breadth-first queue held thousands of
// descriptors and ran out of them); one walk at a time.
func (r *root) walkDirIDs() []crypto.DirID {
	r.ids.walkMu.Lock()
	defer r.ids.walkMu.Unlock()
	var ids []crypto.DirID
	walked := 0
	var walk func(dfd, depth int)
	walk = func(dfd, depth int) {
		walked++
		readID := func(name string) {
			if b, err := safefile.ReadFileAt(dfd, name, maxMetaFile); err == nil {
				if id, err := crypto.ParseDirID(b); err == nil {
					ids = append(ids, id)
				}
			}
		}
		readID(crypto.DirIDFile)
		if depth >= idScanDepth {
			return
		}
		rfd, err := safefile.OpenDirRead(dfd, "")
		if err != nil {
			return
		}
		ents, err := safefile.ReadDir(rfd)
		unix.Close(rfd)
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.Type == unix.S_IFREG && isDirIDCopy(e.Name) {
				readID(e.Name) // a sync service's copy of an ID file
			}
		}
		for _, e := range ents {
			if e.Type != unix.S_IFDIR || walked >= idScanMax {
				continue
			}
			cfd, err := safefile.OpenDir(dfd, e.Name)
			if err != nil {
				continue
			}
			walk(cfd, depth+1)
			unix.Close(cfd)
		}
	}
	walk(r.rootRef.fd, 0)
	return ids
}

// isDirIDCopy reports whether name is a sync service's conflict copy of a
// sealfs.dirid file (whose ID may be another device's for that directory).
func isDirIDCopy(name string) bool {
	if !strings.Contains(name, "dirid") {
		return false
	}
	for _, c := range syncnames.ParseConflict(name) {
		if c.Original == crypto.DirIDFile {
			return true
		}
	}
	return false
}
