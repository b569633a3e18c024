package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// Report is the result of Check and Extract.
type Report struct {
	Files       int   `json:"files"`
	Dirs        int   `json:"dirs"`
	Symlinks    int   `json:"symlinks"`
	Other       int   `json:"other"`
	Blocks      int64 `json:"blocks"`
	CipherBytes int64 `json:"cipher_bytes"`
	// ConflictCopies counts the sync services' conflict copies found (each
	// is also a ClassConflict note, and checked or extracted like any entry).
	ConflictCopies int `json:"conflict_copies"`
	// SyncFiles counts the sync services' own files, ignored quietly
	// (.stfolder, desktop.ini…; files in flight are ClassSync notes).
	SyncFiles int       `json:"sync_service_files"`
	Problems  []Problem `json:"problems"`

	extract bool     // made by Extract: an entry not restored is never a note
	fixes   []*fix   // fsck --repair's plan (repair.go), in walk order
	ids     *idIndex // the candidate directory IDs the plan was made with
}

// Class groups findings by what the user should make of them.
type Class string

const (
	// ClassConflict: a sync service kept two versions of an entry; both are
	// shown, checked and extracted (a note, not damage).
	ClassConflict Class = "conflict"
	// ClassSync: a sync service has not finished: a file in flight, a
	// placeholder, a long name's side file or a directory's ID file
	// missing (a note, not damage; run fsck again when the service is
	// idle).
	ClassSync Class = "sync"
	// ClassCrash: something sealfs was writing when it stopped: a header
	// temp file, a file that ends early with every byte present intact.
	ClassCrash Class = "crash"
	// ClassMisplaced: an entry whose name was encrypted under another
	// directory's ID (a sync race: renamed or removed on one device while
	// another wrote into it); shown under its name, repairable.
	ClassMisplaced Class = "misplaced"
	// ClassDamage: bytes that do not authenticate, objects sealfs never
	// writes, unreadable metadata: damage or tampering.
	ClassDamage Class = "damage"
	// ClassDestination: extract could not write an entry in DEST; the
	// vault is fine.
	ClassDestination Class = "destination"
)

// Title is the heading under which a class is listed.
func (c Class) Title() string {
	switch c {
	case ClassConflict:
		return "conflict copies"
	case ClassSync:
		return "sync in progress"
	case ClassCrash:
		return "crash leftovers"
	case ClassMisplaced:
		return "entries of another directory"
	case ClassDamage:
		return "damage or tampering"
	case ClassDestination:
		return "could not be written in the destination"
	}
	return string(c)
}

// Classes lists the classes in the order reports group them.
var Classes = []Class{ClassDamage, ClassCrash, ClassMisplaced, ClassDestination, ClassSync, ClassConflict}

// Problem kinds, from the point of view of someone deciding what to restore.
const (
	KindTampered     = "tampered"     // authentication failed: bytes were changed or moved
	KindTruncated    = "truncated"    // the object ends where it cannot (cut short, or partly synced)
	KindUnrecognised = "unrecognised" // not something sealfs writes (foreign file, wrong file type, newer format)
	KindMissing      = "missing"      // metadata sealfs needs is absent (dirid, long-name side file)
	// KindDestination: extract found something in the way in DEST (an entry
	// that exists, a symlink where a directory goes) or could not create an
	// object there (a device node without root); the vault is fine.
	KindDestination = "destination"
	KindConflict    = "conflict copy"     // a sync service's copy of an entry, shown under a display name
	KindInFlight    = "in flight"         // a sync service's temp file or placeholder
	KindLeftover    = "leftover"          // sealfs metadata nothing needs any more
	KindMisplaced   = "another directory" // a name encrypted under another directory's ID
)

// Problem is one finding: damage, or a note about the state of the sync.
type Problem struct {
	Class      Class  `json:"class"`
	Kind       string `json:"kind"`
	CipherPath string `json:"cipher_path"`
	// PlainPath is the entry's path in the vault (as the mount shows it,
	// "/"-separated, no leading slash) when its name decrypts; otherwise
	// PlainDir is the path of the directory it is in ("" for the root:
	// see CipherPath then).
	PlainPath string `json:"plain_path,omitempty"`
	PlainDir  string `json:"plain_dir,omitempty"`
	Detail    string `json:"detail"`
	// Repair says what `fsck --repair` does about it ("" if nothing
	// mechanical can); Repaired that it was done, RepairError why not.
	Repair      string `json:"repair,omitempty"`
	Repaired    bool   `json:"repaired,omitempty"`
	RepairError string `json:"repair_error,omitempty"`
	// NotRestored: extract did not restore the entry (a placeholder, a long
	// name whose side file did not arrive), so it counts against extract
	// even in a note class.
	NotRestored bool `json:"not_restored,omitempty"`

	fix int // 1 + index of its planned repair in Report.fixes, 0 for none
}

func (p Problem) String() string {
	s := fmt.Sprintf("%s: %s", p.Kind, p.CipherPath)
	switch {
	case p.PlainPath != "":
		s += " (" + p.PlainPath + ")"
	case p.PlainDir != "":
		s += " (in " + p.PlainDir + "/)"
	}
	return s + ": " + p.Detail
}

// Note reports whether p describes the state of the sync rather than
// damage: conflict copies and a sync in progress (unless extract could not
// restore the entry).
func (p Problem) Note() bool {
	return (p.Class == ClassConflict || p.Class == ClassSync) && !p.NotRestored
}

// Damaged counts the findings that are not notes and were not repaired.
// For extract, entries of another directory's ID count only when they
// were not restored: extract restores them under their names, intact.
func (r *Report) Damaged() int {
	n := 0
	for _, p := range r.Problems {
		if p.Note() || p.Repaired || r.extract && p.Class == ClassMisplaced && !p.NotRestored {
			continue
		}
		n++
	}
	return n
}

// Repaired counts the findings fsck --repair repaired.
func (r *Report) Repaired() int {
	n := 0
	for _, p := range r.Problems {
		if p.Repaired {
			n++
		}
	}
	return n
}

// Repairable counts the findings fsck --repair would repair.
func (r *Report) Repairable() int {
	n := 0
	for _, p := range r.Problems {
		if p.fix != 0 && !p.Repaired {
			n++
		}
	}
	return n
}

// OK reports whether nothing but notes was found (or all was repaired).
func (r *Report) OK() bool { return r.Damaged() == 0 }

// Exit statuses as fsck(8) gives them; the caller adds 8 (could not run)
// and 2 (usage).
const (
	ExitClean    = 0 // no damage found (notes only)
	ExitRepaired = 1 // problems found, all repaired
	ExitProblems = 4 // problems found and left
)

// ExitCode maps the report to fsck(8)'s exit status: 4 while damage is
// left, 1 when something was repaired and nothing is left, else 0.
func (r *Report) ExitCode() int {
	switch {
	case r.Damaged() > 0:
		return ExitProblems
	case r.Repaired() > 0:
		return ExitRepaired
	}
	return ExitClean
}

// classify maps an error to a problem kind.
func classify(err error) string {
	var ve *crypto.VersionError
	var te *safefile.TypeError
	var de *destError
	switch {
	case errors.As(err, &de), errors.Is(err, errDestination), errors.Is(err, fs.ErrExist):
		return KindDestination
	case errors.As(err, &te):
		// A symlink, FIFO, socket or device where the format puts a
		// directory or a regular file: sealfs never writes that.
		return KindUnrecognised
	case errors.Is(err, crypto.ErrTruncated):
		return KindTruncated
	case errors.Is(err, crypto.ErrFormat), errors.As(err, &ve), errors.Is(err, safefile.ErrTooLarge):
		return KindUnrecognised
	case errors.Is(err, os.ErrNotExist):
		return KindMissing
	}
	return KindTampered
}

// classOf is the class of an error's kind where nothing more is known.
func classOf(kind string) Class {
	switch kind {
	case KindDestination:
		return ClassDestination
	case KindConflict:
		return ClassConflict
	case KindInFlight:
		return ClassSync
	case KindMisplaced:
		return ClassMisplaced
	case KindLeftover:
		return ClassCrash
	}
	return ClassDamage
}

// errProblem is the finding err makes about an object.
func errProblem(err error, cipherPath, plainPath string) Problem {
	k := classify(err)
	return Problem{Class: classOf(k), Kind: k, CipherPath: cipherPath, PlainPath: plainPath, Detail: err.Error()}
}

// errDestination marks an entry that DEST refused: what is already there
// is in the way (KindDestination).
var errDestination = errors.New("in the way in the destination")
