package offline

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// Words for reports.

func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

// namesOf is "the name of its only entry decrypts" or "the names of its N
// entries decrypt", with verb given in the plural.
func namesOf(n int, verb string) string {
	if n == 1 {
		return "the name of its only entry " + map[string]string{"decrypt": "decrypts", "were": "was"}[verb]
	}
	return fmt.Sprintf("the names of its %d entries %s", n, verb)
}

// describeConflict says who made a conflict copy and when, from its name.
func describeConflict(c syncnames.Conflict) string {
	if len(c.Marks) == 0 {
		return "a sync service's copy"
	}
	m := c.Marks[len(c.Marks)-1]
	s := "made by " + string(c.Service())
	if c.Service() == syncnames.Unknown {
		s = "marked " + fmt.Sprintf("%q", m.Label)
	}
	if m.Date != "" {
		s += " on " + m.Date
	}
	if len(m.Time) == 6 {
		s += " at " + m.Time[:2] + ":" + m.Time[2:4] + ":" + m.Time[4:]
	}
	if m.Who != "" {
		s += fmt.Sprintf(", %q", m.Who)
	}
	if len(c.Marks) > 1 {
		s += ", a copy of a copy"
	}
	return s
}

// describeID names a directory ID for a report: the directory whose
// sealfs.dirid holds it, or the local record.
func (w *walker) describeID(id crypto.DirID) string {
	if chain, ok := w.ids.where[id]; ok {
		return "the ID of " + w.plainOf(chain)
	}
	return "the ID of a directory that no longer exists in the vault (removed on another device; " +
		"this machine's record of directory IDs knows it)"
}

// plainOf is the plaintext path of the cipher directory at chain (stored
// names from the root), as far as its names decrypt; the cipher path from
// there on.
func (w *walker) plainOf(chain []string) string {
	fd, err := unix.Dup(w.ids.root)
	if err != nil {
		return strings.Join(chain, "/")
	}
	defer func() { unix.Close(fd) }()
	id := crypto.RootDirID
	var parts []string
	for i, stored := range chain {
		side := func(name string) ([]byte, error) { return safefile.ReadFileAt(fd, name, maxLongNameFile) }
		e := dirent.Classify(w.keys, id, stored, side)
		var name string
		switch e.Kind {
		case dirent.Plain:
			name = e.Plain
		case dirent.ConflictCopy:
			name = syncnames.DisplayDir(e.Plain, e.Conflict)
		default:
			return fmt.Sprintf("%q (cipher directory %s)", strings.Join(parts, "/"), strings.Join(chain[i:], "/"))
		}
		parts = append(parts, name)
		sub, err := safefile.OpenDirRead(fd, stored)
		if err != nil {
			break
		}
		unix.Close(fd)
		fd = sub
		next := w.keys.DeriveDirID(id, e.Plain)
		if b, err := safefile.ReadFileAt(fd, crypto.DirIDFile, 2+crypto.DirIDSize); err == nil {
			if own, err := crypto.ParseDirID(b); err == nil {
				next = own
			}
		}
		id = next
	}
	return fmt.Sprintf("%q", strings.Join(parts, "/"))
}
