// Package dirent decides what one entry of a cipher directory is, for every
// reader of the cipher folder (the mount, fsck, extract), so that they agree:
// sealfs metadata, a sync service's own file, an entry whose name decrypts,
// a sync service's conflict copy of such an entry, or something that cannot
// be read. It also names conflict copies in the plaintext view. It does no
// I/O of its own: the caller passes a function that reads a long-name side
// file of the same directory.
package dirent

import (
	"errors"
	"fmt"
	"sort"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// Kind is what an entry is.
type Kind uint8

const (
	// Metadata: sealfs' own files (directory IDs, long-name side files, the
	// vault header and its temp files), never listed.
	Metadata Kind = iota
	// MetadataCopy: a sync service's conflict copy of metadata (of the
	// vault header, a side file, a dirid), never listed; fsck reports it.
	MetadataCopy
	// Housekeeping: a sync service's or desktop's own file, or one in
	// flight (syncnames.Housekeeping), ignored quietly.
	Housekeeping
	// Plain: a name that decrypts under the directory's ID.
	Plain
	// ConflictCopy: a sync service's copy of an entry of this directory;
	// Plain holds the original's plaintext name.
	ConflictCopy
	// Undecryptable: none of the above (changed, moved from another
	// directory, foreign); Err says why.
	Undecryptable
)

var kindNames = [...]string{"metadata", "metadata conflict copy", "sync housekeeping", "entry", "conflict copy", "undecryptable"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", k)
}

// Entry is one classified directory entry.
type Entry struct {
	Stored string // the directory entry's name
	Kind   Kind
	// Plain is the plaintext name (Plain), or the original's (ConflictCopy).
	Plain string
	// Long: named through a long-name side file (for a copy, the
	// original's side file).
	Long bool
	// Conflict is the reading of a copy's name (ConflictCopy, MetadataCopy).
	Conflict syncnames.Conflict
	// Err is why an Undecryptable entry did not decrypt.
	Err error
	// Dir is set by the caller (from the directory listing) before Name:
	// a directory copy's marker goes at the end of its name.
	Dir bool
	// Foreign is set by the caller before Name for an entry that decrypted
	// under another directory's ID (a sync race moved it here): it keeps
	// its name unless a real entry of this directory has it.
	Foreign bool
	// Name is the name in the plaintext view, set by Name: Plain for a
	// Plain entry, a display name for a copy.
	Name string
}

// ReadSide reads the long-name side file name (a sibling of the entry) of at
// most 4096 bytes. Callers read it fd-relative and never through a symlink.
type ReadSide func(name string) ([]byte, error)

// ErrSideFile wraps the failure to resolve a long name through its side file
// (missing: a partial sync; unreadable; or not matching the entry's hash).
var ErrSideFile = errors.New("long-name side file")

// Classify decides what the entry stored in the directory with ID id is.
// A conflict copy costs one name decryption per candidate reading (at most
// 16, syncnames.ParseConflict), and only for names that do not decrypt as
// they are.
func Classify(keys *crypto.Keys, id crypto.DirID, stored string, side ReadSide) Entry {
	e := Entry{Stored: stored}
	shape := syncnames.Shape(stored)
	switch shape {
	case syncnames.LongNameSide, syncnames.DirID, syncnames.VaultHeader, syncnames.VaultHeaderTemp:
		e.Kind = Metadata
		return e
	case syncnames.NotSealfs:
		if syncnames.Housekeeping(stored) {
			e.Kind = Housekeeping
			return e
		}
	}
	var first error
	if shape == syncnames.CipherName || shape == syncnames.LongName {
		plain, long, err := decrypt(keys, id, stored, shape, side)
		if err == nil {
			e.Kind, e.Plain, e.Long = Plain, plain, long
			return e
		}
		first = err
	}
	for _, c := range syncnames.ParseConflict(stored) {
		switch c.Kind {
		case syncnames.CipherName, syncnames.LongName:
			plain, long, err := decrypt(keys, id, c.Original, c.Kind, side)
			if err == nil {
				e.Kind, e.Plain, e.Long, e.Conflict = ConflictCopy, plain, long, c
				return e
			}
		default:
			e.Kind, e.Conflict = MetadataCopy, c
			return e
		}
	}
	e.Kind = Undecryptable
	if first == nil {
		first = fmt.Errorf("%w: not a sealfs name", crypto.ErrNameAuth)
	}
	e.Err = first
	return e
}

// decrypt decrypts a stored name of the given shape under id.
func decrypt(keys *crypto.Keys, id crypto.DirID, stored string, shape syncnames.Kind, side ReadSide) (string, bool, error) {
	enc, long := stored, shape == syncnames.LongName
	if long {
		b, err := side(stored + crypto.LongNameSuffix)
		if err != nil {
			// The reader's error names the file.
			return "", true, fmt.Errorf("%w: %w", ErrSideFile, err)
		}
		if enc, err = crypto.ParseLongNameFile(stored, b); err != nil {
			return "", true, fmt.Errorf("%w %s: %w", ErrSideFile, stored+crypto.LongNameSuffix, err)
		}
	}
	plain, err := keys.DecryptName(id, enc)
	return plain, long, err
}

// Name sets the Name of every Plain and ConflictCopy entry of one directory:
// a Plain entry keeps its name; copies get display names by syncnames.Assign's
// rule (never a real entry's name, deterministic in the stored names).
//
// A Foreign Plain entry keeps its name too unless an entry of this directory
// has it (or an earlier Foreign one, in byte order of the stored names);
// then it is shown like a copy, as "name (conflict other directory).ext",
// so that neither is hidden.
func Name(ents []Entry) {
	taken := map[string]bool{}
	var copies []syncnames.Copy
	var idx []int
	var foreign []int
	for i := range ents {
		switch {
		case ents[i].Kind == Plain && ents[i].Foreign:
			foreign = append(foreign, i)
		case ents[i].Kind == Plain:
			ents[i].Name = ents[i].Plain
			taken[ents[i].Plain] = true
		case ents[i].Kind == ConflictCopy:
			copies = append(copies, syncnames.Copy{Stored: ents[i].Stored, Plain: ents[i].Plain,
				Conflict: ents[i].Conflict, Dir: ents[i].Dir})
			idx = append(idx, i)
		}
	}
	sort.Slice(foreign, func(a, b int) bool { return ents[foreign[a]].Stored < ents[foreign[b]].Stored })
	for _, i := range foreign {
		e := &ents[i]
		if !taken[e.Plain] {
			e.Name = e.Plain
			taken[e.Plain] = true
			continue
		}
		e.Conflict = OtherDirectory(e.Stored)
		copies = append(copies, syncnames.Copy{Stored: e.Stored, Plain: e.Plain, Conflict: e.Conflict, Dir: e.Dir})
		idx = append(idx, i)
	}
	if len(copies) == 0 {
		return
	}
	for j, name := range syncnames.Assign(func(n string) bool { return taken[n] }, copies) {
		ents[idx[j]].Name = name
	}
}

// OtherDirectory is the marker under which a Foreign entry is shown when its
// name is taken: "(conflict other directory)".
func OtherDirectory(stored string) syncnames.Conflict {
	return syncnames.Conflict{Original: stored, Kind: syncnames.Shape(stored),
		Marks: []syncnames.Mark{{Service: syncnames.Unknown, Label: "other directory"}}}
}
