package offline

import (
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// idIndex knows the directory IDs of the vault, for names that do not
// decrypt under their own directory's ID, as the mount does (fs/ids.go):
// the IDs of every sealfs.dirid in the cipher folder (and of the sync
// services' conflict copies of them), then those of the local record of IDs
// this machine's mounts have read ($XDG_STATE_HOME/sealfs/dirids/<vault id
// hex>). The record matters after a directory was removed on one device
// while another wrote into it: its ID then exists nowhere in the vault.
// The vault is walked once, at the first name that needs it.
type idIndex struct {
	keys   *crypto.Keys
	root   int    // the cipher root, open while the walk runs (not owned)
	record string // the record file, "" for none
	loaded bool
	ids    []crypto.DirID
	where  map[crypto.DirID][]string // the stored names from the root of a directory whose dirid holds the ID
	known  map[crypto.DirID]bool
}

const (
	// idScanMax bounds the directories read for their IDs (the mount's
	// bound too).
	idScanMax = 200000
	// idScanDepth bounds the depth walked: one descriptor per level.
	idScanDepth = 256
)

func newIDIndex(keys *crypto.Keys, root int, record string) *idIndex {
	return &idIndex{keys: keys, root: root, record: record}
}

// candidates returns every known directory ID, vault IDs first (in walk
// order), then the record's.
func (x *idIndex) candidates() []crypto.DirID {
	if !x.loaded {
		x.load()
	}
	return x.ids
}

// add adds id, found in the ID file of the directory at chain (stored names
// from the root), or in the record when chain is nil.
func (x *idIndex) add(id crypto.DirID, chain []string) {
	if id == crypto.RootDirID || x.known[id] {
		return
	}
	x.known[id] = true
	if chain != nil {
		x.where[id] = chain
	}
	x.ids = append(x.ids, id)
}

func (x *idIndex) load() {
	x.loaded = true
	x.where, x.known = map[crypto.DirID][]string{}, map[crypto.DirID]bool{}
	// A new open file description: the walk's own has read the root to
	// its end already.
	if fd, err := safefile.OpenDirRead(x.root, ""); err == nil {
		walked := 0
		x.scan(fd, []string{}, &walked)
	}
	for _, id := range readIDRecord(x.record) {
		x.add(id, nil)
	}
}

// scan reads the ID files of the directory open at fd (closed here) and of
// every directory below it, fd-relative, following no symlink.
func (x *idIndex) scan(fd int, chain []string, walked *int) {
	defer unix.Close(fd)
	*walked++
	ents, err := safefile.ReadDir(fd)
	if err != nil {
		return
	}
	for _, d := range ents {
		name := d.Name
		isID := name == crypto.DirIDFile
		if !isID && syncnames.Shape(name) == syncnames.NotSealfs {
			// A conflict copy of the ID file holds an ID too.
			for _, c := range syncnames.ParseConflict(name) {
				isID = isID || c.Kind == syncnames.DirID
			}
		}
		if isID {
			if b, err := safefile.ReadFileAt(fd, name, 2+crypto.DirIDSize); err == nil {
				if id, err := crypto.ParseDirID(b); err == nil {
					x.add(id, chain)
				}
			}
		}
	}
	if len(chain) >= idScanDepth {
		return
	}
	for _, d := range ents {
		if d.Type != unix.S_IFDIR && d.Type != 0 {
			continue
		}
		if *walked >= idScanMax {
			return
		}
		sub, err := safefile.OpenDirRead(fd, d.Name)
		if err != nil {
			continue // not a directory (d_type unknown), or swapped
		}
		x.scan(sub, append(append([]string(nil), chain...), d.Name), walked)
	}
}

// readIDRecord reads the local record of directory IDs; a missing or
// unreadable record costs only the IDs it held. The record is this user's
// file, outside the cipher folder: read as a regular file, not through a
// symlink, and no further than the mount ever writes.
func readIDRecord(path string) []crypto.DirID {
	if path == "" {
		return nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	b := make([]byte, min(st.Size, dirent.MaxIDRecord))
	n, err := preadFull(fd, b, 0)
	if err != nil {
		return nil
	}
	return dirent.ParseIDRecord(b[:n])
}
