package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// What a cipher directory shows, decided as the mount decides it
// (fs/listing.go), with every entry the mount skips or cannot read turned
// into a finding:
//
//   - sealfs metadata: not shown; a header temp file is a crash leftover, a
//     side file without its entry a sync in progress;
//   - a sync service's own file: counted, quietly; one in flight (a temp
//     file, a placeholder) is a sync-in-progress note naming the entry it
//     brings when its name shows it;
//   - a conflict copy: shown under its display name (dirent.Name) and a
//     note; its content is checked or extracted like any entry's;
//   - a name that does not decrypt under the directory's ID is tried under
//     every other directory ID of the vault and the local record (ids.go):
//     shown under its name when one fits, and a finding with a repair;
//   - a directory whose sealfs.dirid is missing: the IDs its entries' names
//     decrypt under prove its ID when they agree (a repair restores it).

// item is one entry of a listing that is not metadata or housekeeping.
type item struct {
	dirent.Entry
	typ uint32       // S_IFMT bits (0: unknown)
	id  crypto.DirID // the ID its name decrypted under
	// hidden: its name decrypts under another directory's ID in a
	// directory that has its own ID file, which is what a transplant looks
	// like; the mount does not show it (guarantee 3 of the threat model).
	hidden bool
}

// shown reports whether the plaintext view shows the item.
func (it *item) shown() bool {
	return !it.hidden && (it.Kind == dirent.Plain || it.Kind == dirent.ConflictCopy)
}

// listing is one directory being judged.
type listing struct {
	w       *walker
	d       *dirCtx
	side    dirent.ReadSide
	present map[string]bool
	items   []item
	sides   []string       // long-name side files
	copies  []dirent.Entry // sync services' copies of metadata
	// adoptID is the ID names of other directories are re-encrypted under
	// (the directory's own, or the one a repair restores); adopt says
	// whether there is one.
	adoptID crypto.DirID
	adopt   bool
	// covered: entries under this ID are accounted for by the directory's
	// own finding (a missing dirid their names prove).
	covered    crypto.DirID
	hasCovered bool
}

// maxRetries bounds the name decryptions spent retrying names under other
// directories' IDs in one walk, so that a folder full of planted names
// cannot make fsck run for hours.
const maxRetries = 1 << 22

// list reads directory d and returns what the plaintext view shows, in the
// order listed, reporting everything else.
func (w *walker) list(d *dirCtx) []item {
	ents, err := safefile.ReadDir(d.fd)
	if err != nil {
		w.report(Problem{Class: ClassDamage, Kind: KindMissing, CipherPath: d.cipher, PlainPath: d.plain,
			Detail: "listing: " + err.Error()})
		return nil
	}
	l := &listing{w: w, d: d, present: make(map[string]bool, len(ents)), side: sideReader(d.fd)}
	for _, de := range ents {
		l.present[de.Name] = true
	}
	for _, de := range ents {
		l.classify(de)
	}
	l.retry()
	l.judgeDirID()
	l.name()
	l.reportItems()
	l.reportSideFiles()
	l.reportCopies()
	shown := l.items[:0]
	for _, it := range l.items {
		if it.shown() {
			shown = append(shown, it)
		}
	}
	return shown
}

func (l *listing) cipher(stored string) string { return l.d.cipher + "/" + stored }

// sideReader reads the long-name side files of the directory open at fd,
// each once per listing: a name retried under every directory ID of the
// vault would otherwise read its side file for each.
func sideReader(fd int) dirent.ReadSide {
	type read struct {
		b   []byte
		err error
	}
	cache := map[string]read{}
	return func(name string) ([]byte, error) {
		r, ok := cache[name]
		if !ok {
			r.b, r.err = safefile.ReadFileAt(fd, name, maxLongNameFile)
			cache[name] = r
		}
		return r.b, r.err
	}
}

func (l *listing) classify(de safefile.Dirent) {
	d, w := l.d, l.w
	e := dirent.Classify(w.keys, d.id, de.Name, l.side)
	typ := de.Type
	if typ == 0 {
		if st, err := safefile.Lstat(d.fd, de.Name); err == nil {
			typ = st.Mode & unix.S_IFMT
		}
	}
	e.Dir = typ == unix.S_IFDIR
	switch e.Kind {
	case dirent.Metadata:
		switch syncnames.Shape(de.Name) {
		case syncnames.LongNameSide:
			l.sides = append(l.sides, de.Name)
		case syncnames.VaultHeaderTemp:
			l.w.propose(Problem{Class: ClassCrash, Kind: KindLeftover, CipherPath: l.cipher(de.Name), PlainDir: d.plain,
				Detail: "the temp file of a vault header update that did not finish (sealfs stopped before renaming it " +
					"over sealfs.vault); the header itself is whole"},
				&fix{action: fixRemove, chain: d.chain, cipherDir: d.cipher, name: de.Name, what: "sealfs temp file"})
		}
		// sealfs.dirid is read by dirID; sealfs.vault by the unlock.
	case dirent.MetadataCopy:
		l.copies = append(l.copies, e)
	case dirent.Housekeeping:
		l.housekeeping(de.Name)
	default:
		l.items = append(l.items, item{Entry: e, typ: typ, id: d.id})
	}
}

// housekeeping counts a sync service's file, or reports one in flight.
func (l *listing) housekeeping(name string) {
	p, ok := syncnames.InProgress(name)
	if !ok {
		l.w.r.SyncFiles++
		return
	}
	prob := Problem{Class: ClassSync, Kind: KindInFlight, CipherPath: l.cipher(name), PlainDir: l.d.plain}
	what := "a file of this directory"
	if p.Of != "" {
		if e := dirent.Classify(l.w.keys, l.d.id, p.Of, l.side); e.Kind == dirent.Plain || e.Kind == dirent.ConflictCopy {
			prob.PlainPath, prob.PlainDir = joinPlain(l.d.plain, e.Plain), ""
			what = prob.PlainPath
		}
	}
	if p.Placeholder {
		prob.Detail = fmt.Sprintf("a %s placeholder: %s is not downloaded to this device", p.Service, what)
		prob.NotRestored = l.w.extract
	} else {
		prob.Detail = fmt.Sprintf("%s's temp file: %s is being transferred (a new version, or a new file); "+
			"it goes when the transfer ends", p.Service, what)
		if p.Service == syncnames.Browser {
			prob.Detail = "a partial download (" + name + "): if it finished, the file is elsewhere"
		}
	}
	l.w.report(prob)
}

// retry tries the names that did not decrypt under every other directory
// ID of the vault. The mount does so only in a directory without its own
// ID file (the sync races of issue 15 leave exactly that); elsewhere a name
// of another directory stays hidden, and fsck only says whose ID it has.
func (l *listing) retry() {
	var idx []int
	for i := range l.items {
		if it := &l.items[i]; it.Kind == dirent.Undecryptable && !errors.Is(it.Err, dirent.ErrSideFile) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	w := l.w
	for _, cand := range w.ids.candidates() {
		if cand == l.d.id {
			continue
		}
		if w.retries += len(idx); w.retries > maxRetries {
			if !w.retriesOut {
				w.retriesOut = true
				w.report(Problem{Class: ClassDamage, Kind: KindUnrecognised, CipherPath: l.d.cipher, PlainPath: l.d.plain,
					Detail: fmt.Sprintf("too many names that do not decrypt (%d tries): from here on they are not "+
						"tried under every directory ID of the vault", maxRetries)})
			}
			return
		}
		left := idx[:0]
		for _, i := range idx {
			it := &l.items[i]
			e := dirent.Classify(w.keys, cand, it.Stored, l.side)
			if e.Kind == dirent.Plain || e.Kind == dirent.ConflictCopy {
				e.Dir, e.Foreign = it.Dir, true
				it.Entry, it.id, it.hidden = e, cand, l.d.idErr == nil
				continue
			}
			left = append(left, i)
		}
		if idx = left; len(idx) == 0 {
			return
		}
	}
}

// name gives every shown item its name in the plaintext view.
func (l *listing) name() {
	ents := make([]dirent.Entry, len(l.items))
	for i := range l.items {
		ents[i] = l.items[i].Entry
		if l.items[i].hidden {
			ents[i].Kind = dirent.Undecryptable // takes no name
		}
	}
	dirent.Name(ents)
	for i := range l.items {
		l.items[i].Name = ents[i].Name
		l.items[i].Conflict = ents[i].Conflict
	}
}

// judgeDirID judges a directory whose sealfs.dirid is missing by the IDs
// its entries' names decrypt under, and decides which ID names of other
// directories are adopted into.
func (l *listing) judgeDirID() {
	d := l.d
	if d.idErr == nil || !errors.Is(d.idErr, fs.ErrNotExist) {
		return // an unreadable dirid: reported by dirID; nothing is proven
	}
	count := map[crypto.DirID]int{}
	var ids []crypto.DirID
	for _, it := range l.items {
		if it.shown() {
			if count[it.id] == 0 {
				ids = append(ids, it.id)
			}
			count[it.id]++
		}
	}
	p := Problem{Class: ClassSync, Kind: KindMissing, CipherPath: l.cipher(crypto.DirIDFile), PlainPath: d.plain}
	const refused = "; the mount shows its entries but refuses new names in it while the file is missing"
	switch {
	case len(ids) == 0:
		p.Detail = "the directory's ID file (sealfs.dirid) has not arrived, and no entry in it proves its ID" + refused +
			". If the sync is complete and it stays so, remove the directory from the mount and make it again"
		l.w.report(p)
		return
	case len(ids) == 1:
		x := ids[0]
		l.covered, l.hasCovered = x, true
		l.adoptID, l.adopt = x, true
		f := &fix{action: fixRestoreDirID, chain: d.chain, cipherDir: d.cipher, id: x}
		if x == d.id {
			p.Detail = fmt.Sprintf("the directory's ID file (sealfs.dirid) is missing (not synced yet?); %s "+
				"under the ID derived from its name, which proves it%s", namesOf(count[x], "decrypt"), refused)
		} else {
			p.Class, p.Kind = ClassMisplaced, KindMisplaced
			p.Detail = fmt.Sprintf("the directory's ID file (sealfs.dirid) is missing, and %s encrypted under "+
				"%s: the directory was renamed or removed on another device while this one wrote into it%s",
				namesOf(count[x], "were"), l.w.describeID(x), refused)
		}
		l.w.propose(p, f)
	case count[d.id] > 0:
		others := 0
		for _, x := range ids {
			if x != d.id {
				others += count[x]
			}
		}
		l.covered, l.hasCovered = d.id, true
		l.adoptID, l.adopt = d.id, true
		p.Class, p.Kind = ClassMisplaced, KindMisplaced
		p.Detail = fmt.Sprintf("the directory's ID file (sealfs.dirid) is missing; %s under the ID derived from "+
			"its name, %d others under other directories' IDs (below)%s", namesOf(count[d.id], "decrypt"), others, refused)
		l.w.propose(p, &fix{action: fixRestoreDirID, chain: d.chain, cipherDir: d.cipher, id: d.id})
	default:
		p.Class, p.Kind = ClassMisplaced, KindMisplaced
		p.Detail = fmt.Sprintf("the directory's ID file (sealfs.dirid) is missing and its entries' names were "+
			"encrypted under %d IDs of other directories, so none is proven%s. Move them from the mount into a "+
			"directory of their own", len(ids), refused)
		l.w.report(p)
	}
}

// reportItems reports conflict copies, entries of another directory and
// names that cannot be read.
func (l *listing) reportItems() {
	d, w := l.d, l.w
	for i := range l.items {
		it := &l.items[i]
		cp, shownAs := l.cipher(it.Stored), joinPlain(d.plain, it.Name)
		if it.Kind == dirent.ConflictCopy {
			w.r.ConflictCopies++
			gone := ""
			if !l.present[it.Conflict.Original] {
				gone = "; the original itself is gone"
			}
			w.report(Problem{Class: ClassConflict, Kind: KindConflict, CipherPath: cp, PlainPath: shownAs,
				Detail: fmt.Sprintf("%s has a conflict copy shown as %s (%s)%s", joinPlain(d.plain, it.Plain), shownAs,
					describeConflict(it.Conflict), gone)})
		}
		switch {
		case it.Kind == dirent.Undecryptable:
			w.report(l.undecryptable(it))
		case it.hidden:
			l.transplanted(it)
		case it.id != d.id && !(l.hasCovered && it.id == l.covered):
			l.misplaced(it, shownAs)
		}
	}
}

// misplaced reports an entry whose name decrypted under another
// directory's ID, with its adoption when one is possible.
func (l *listing) misplaced(it *item, shownAs string) {
	p := Problem{Class: ClassMisplaced, Kind: KindMisplaced, CipherPath: l.cipher(it.Stored), PlainPath: shownAs,
		Detail: fmt.Sprintf("its name was encrypted under %s, not this directory's: it was written here on another "+
			"device while the directory was renamed or removed there", l.w.describeID(it.id))}
	if it.Name != it.Plain {
		p.Detail += fmt.Sprintf("; shown as %q (an entry here has its name %q)", it.Name, it.Plain)
	}
	switch {
	case !l.adopt:
		p.Detail += "; the directory's own ID is not proven, so it cannot be adopted: move it from the mount"
		l.w.report(p)
	default:
		l.w.propose(p, &fix{action: fixAdopt, chain: l.d.chain, cipherDir: l.d.cipher, name: it.Stored, id: it.id,
			dirID: l.adoptID, plain: it.Name})
	}
}

// transplanted reports a name of another directory's ID in a directory
// that has its own ID file: hidden, as the mount hides it.
func (l *listing) transplanted(it *item) {
	where := ""
	if chain, ok := l.w.ids.where[it.id]; ok {
		where = fmt.Sprintf(" (move it back into %s to see it there)", strings.Join(append([]string{l.w.rootPath}, chain...), "/"))
	}
	l.w.report(Problem{Class: ClassMisplaced, Kind: KindMisplaced, CipherPath: l.cipher(it.Stored), PlainDir: l.d.plain,
		NotRestored: l.w.extract,
		Detail: fmt.Sprintf("its name, %q, decrypts under %s, not under this directory's, which has its own ID file: "+
			"a name moved between directories (by someone with access to the folder, or a sync race) is not shown "+
			"in the mount nor extracted%s", it.Plain, l.w.describeID(it.id), where)})
}

// hasDirID reports whether the directory name in dirfd has a readable ID
// file.
func hasDirID(dirfd int, name string) bool {
	fd, err := safefile.OpenDir(dirfd, name)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	b, err := safefile.ReadFileAt(fd, crypto.DirIDFile, 2+crypto.DirIDSize)
	if err == nil {
		_, err = crypto.ParseDirID(b)
	}
	return err == nil
}

// undecryptable is the finding for a name that decrypts under no ID.
func (l *listing) undecryptable(it *item) Problem {
	p := errProblem(it.Err, l.cipher(it.Stored), "")
	p.PlainDir = l.d.plain
	switch shape := syncnames.Shape(it.Stored); {
	case errors.Is(it.Err, dirent.ErrSideFile) && errors.Is(it.Err, fs.ErrNotExist):
		p.Class = ClassSync
		p.Detail = "a long-name entry whose side file (" + it.Stored + crypto.LongNameSuffix + ") has not arrived: " +
			"its name cannot be read until it does"
		p.NotRestored = l.w.extract
	case shape == syncnames.NotSealfs && strings.HasPrefix(it.Stored, "sealfs."):
		p.Kind, p.Detail = KindUnrecognised, "unknown sealfs metadata file"
	case shape == syncnames.NotSealfs:
		p.Kind = KindUnrecognised
		p.Detail = "not a sealfs name, nor a sync service's file (put there by someone else?)"
		if cs := syncnames.ParseConflict(it.Stored); len(cs) > 0 {
			p.Detail = fmt.Sprintf("it looks like a %s conflict copy of cipher name %s, which does not decrypt under "+
				"any directory ID of the vault", cs[0].Service(), cs[0].Original)
		}
	case errors.Is(it.Err, dirent.ErrSideFile):
		p.Detail = it.Err.Error()
	case errors.Is(l.d.idErr, fs.ErrNotExist):
		// The missing ID file explains it best: a partial sync.
		p.Class, p.Kind = ClassSync, KindMissing
		p.Detail = "its name does not decrypt under the ID derived from the directory's name nor any other " +
			"directory ID of the vault or this machine's record: it is most likely under the directory's own ID, " +
			"whose file (sealfs.dirid) has not arrived. If the sync is complete, run fsck on a device whose " +
			"mount read this directory before (its record knows the ID)"
		p.NotRestored = l.w.extract
	default:
		p.Detail = fmt.Sprintf("name does not decrypt under this directory's ID nor any other of the vault: %v", it.Err)
	}
	return p
}
