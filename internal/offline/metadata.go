package offline

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// sealfs metadata in a listing that nothing needs, or that a sync service
// copied: reported, and removed by fsck --repair where that is safe.

// reportSideFiles reports long-name side files that no entry and no
// conflict copy needs.
func (l *listing) reportSideFiles() {
	needed := map[string]bool{}
	for _, it := range l.items {
		if it.Kind != dirent.Plain {
			for _, c := range syncnames.ParseConflict(it.Stored) {
				needed[c.Original] = true
			}
		}
	}
	for _, s := range l.sides {
		entry := strings.TrimSuffix(s, crypto.LongNameSuffix)
		if l.present[entry] || needed[entry] {
			continue
		}
		p := Problem{Class: ClassSync, Kind: KindLeftover, CipherPath: l.cipher(s), PlainDir: l.d.plain,
			Detail: "a long-name side file without its entry: the entry has not arrived yet, or sealfs stopped " +
				"between removing an entry and its side file"}
		if b, err := l.side(s); err == nil {
			if enc, err := crypto.ParseLongNameFile(entry, b); err == nil {
				if name, err := l.w.keys.DecryptName(l.d.id, enc); err == nil {
					p.PlainPath, p.PlainDir = joinPlain(l.d.plain, name), ""
					p.Detail = "the side file of a long name whose entry is not here: the entry has not arrived " +
						"yet, or sealfs stopped between removing an entry and its side file"
				}
			}
		}
		l.w.propose(p, &fix{action: fixRemove, chain: l.d.chain, cipherDir: l.d.cipher, name: s, what: "orphan side file",
			keep: keepSide(entry)})
	}
}

// reportCopies reports the sync services' copies of sealfs metadata.
func (l *listing) reportCopies() {
	d := l.d
	for _, c := range l.copies {
		p := Problem{Class: ClassConflict, Kind: KindConflict, CipherPath: l.cipher(c.Stored), PlainPath: d.plain}
		var f *fix
		remove := &fix{action: fixRemove, chain: d.chain, cipherDir: d.cipher, name: c.Stored, what: "redundant copy"}
		switch c.Conflict.Kind {
		case syncnames.VaultHeader:
			p.Detail = "a conflict copy of the vault header that the unlock did not merge: it does not authenticate " +
				"with this vault's key (another vault's, or changed), or more copies were found than are read"
		case syncnames.DirID:
			f = l.dirIDCopy(c, &p, remove)
		case syncnames.LongNameSide:
			p.Detail = fmt.Sprintf("a %s conflict copy of the long-name side file %s", c.Conflict.Service(), c.Conflict.Original)
			if orig := c.Conflict.Original; l.present[orig] {
				p.Detail += "; sealfs reads the original, so it is redundant"
				f = remove
				f.keep = keepUnless(func(dfd int) bool { _, err := safefile.Lstat(dfd, orig); return err == nil },
					"the original side file is gone; the copy is kept")
			} else {
				p.Detail += ", whose original is missing"
			}
		case syncnames.VaultHeaderTemp:
			p.Class, p.Kind = ClassCrash, KindLeftover
			p.Detail = "a sync service's copy of a vault header temp file"
			f = remove
		default:
			p.Detail = "a sync service's copy of sealfs metadata"
		}
		if f != nil {
			l.w.propose(p, f)
		} else {
			l.w.report(p)
		}
	}
}

// dirIDCopy judges a conflict copy of the directory's ID file: redundant
// when it holds the directory's ID or one no name here uses.
func (l *listing) dirIDCopy(c dirent.Entry, p *Problem, remove *fix) *fix {
	b, err := safefile.ReadFileAt(l.d.fd, c.Stored, 2+crypto.DirIDSize)
	var id crypto.DirID
	if err == nil {
		id, err = crypto.ParseDirID(b)
	}
	if err != nil {
		p.Class, p.Kind = ClassDamage, classify(err)
		p.Detail = "a conflict copy of the directory's ID file, unreadable: " + err.Error()
		return nil
	}
	p.Detail = fmt.Sprintf("a %s conflict copy of the directory's ID file", c.Conflict.Service())
	if l.d.idErr != nil {
		p.Detail += "; the ID file itself is missing or unreadable, so the copy is kept"
		return nil
	}
	same := func(name string) func(int) bool {
		return func(dfd int) bool {
			now, err := safefile.ReadFileAt(dfd, name, 2+crypto.DirIDSize)
			return err == nil && bytes.Equal(now, b)
		}
	}
	remove.keep = keepUnless(same(c.Stored), "the copy changed since the check")
	if id == l.d.id {
		p.Detail += ", holding the same ID: redundant"
		unchanged := same(crypto.DirIDFile)
		remove.keep = keepUnless(func(dfd int) bool { return same(c.Stored)(dfd) && unchanged(dfd) },
			"the ID file or its copy changed since the check")
		return remove
	}
	n := 0
	for _, it := range l.items {
		if it.shown() && it.id == id {
			n++
		}
	}
	if n > 0 {
		p.Detail += fmt.Sprintf(", holding another ID, under which the names of %s here were encrypted (kept until "+
			"they are adopted)", entries(n))
		return nil
	}
	p.Detail += ", holding another ID that no name here uses"
	return remove
}
