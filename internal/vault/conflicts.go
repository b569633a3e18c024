package vault

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/sealfs/sealfs/crypto"
)

// Two devices that change the header while offline each write
// sealfs.vault; the sync service keeps one and renames the other, e.g.
//
//	sealfs.sync-conflict-20261202-130124-ABCDEFG.vault   Syncthing
//	sealfs (conflicted copy 2026-12-02).vault            Dropbox
//	sealfs (laptop's conflicted copy 2026-12-02).vault   Dropbox
//	sealfs (conflicted copy 2026-12-02 130124).vault     Nextcloud
//	sealfs_conflict-20261202-130124.vault                ownCloud
//	sealfs (1).vault                                     Google Drive and others
//	sealfs-laptop.vault                                  OneDrive
//
// Such a file is read only if its name has one of these forms, it is a
// regular file of at most the header's size, it parses as a format 2
// header of the same vault ID, and there are at most maxConflicts of them.
// Before an unlock it is only a place where a TPM slot this machine pinned
// may be found (the device whose change lost the sync still opens the vault
// with its own password); nothing in it is used until the vault's key
// authenticates it, and then it is merged into the header and deleted.
// Every other file (sync housekeeping, temp files, a copy with another
// name) is never read.
var conflictName = regexp.MustCompile(`^sealfs(` +
	`\.sync-conflict-[0-9]{8}-[0-9]{6}-[A-Z0-9]{7}` +
	`| \([^()/]{0,80}[Cc]onflicted copy[^()/]{0,40}\)( \([0-9]{1,3}\))?` +
	`|_conflict-[0-9]{8}-[0-9]{6}` +
	`| \([0-9]{1,3}\)` +
	`|-[A-Za-z0-9_-]{1,63}` +
	`)\.vault$`)

// maxConflicts bounds how many conflict copies are read (a flood of them
// is refused by ignoring the rest, never by reading them all).
const maxConflicts = 16

// IsConflictCopyName reports whether name has the form of a sync service's
// conflict copy of the vault header.
func IsConflictCopyName(name string) bool {
	return name != crypto.HeaderFileName && len(name) <= 255 && conflictName.MatchString(name)
}

// conflictCopy is a conflict copy of sealfs.vault, as read.
type conflictCopy struct {
	name string // file name in the cipher directory
	raw  []byte
	file *crypto.HeaderFile
}

// findConflicts reads the conflict copies of dir's header that belong to
// vaultID. Unreadable or foreign ones are logged at debug level and left.
func findConflicts(dir string, vaultID []byte, log *slog.Logger) []*conflictCopy {
	ents, err := os.ReadDir(dir)
	if err != nil {
		log.Debug("listing the cipher directory for conflict copies of the header", "err", err)
		return nil
	}
	var names []string
	for _, e := range ents {
		if IsConflictCopyName(e.Name()) && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) > maxConflicts {
		log.Warn("too many files that look like sync conflict copies of the vault header; reading the first ones only",
			"found", len(names), "read", maxConflicts)
		names = names[:maxConflicts]
	}
	var out []*conflictCopy
	for _, name := range names {
		raw, err := readHeaderFile(filepath.Join(dir, name))
		if err != nil || len(raw) > crypto.MaxHeaderFileSize {
			log.Debug("not a conflict copy of the vault header", "file", name, "err", err)
			continue
		}
		f, err := crypto.ParseHeaderFile(raw)
		if err != nil || f.Version < 2 || !bytes.Equal(f.First().Header.VaultID, vaultID) {
			log.Debug("not a conflict copy of this vault's header", "file", name, "err", err)
			continue
		}
		out = append(out, &conflictCopy{name: name, raw: raw, file: f})
	}
	return out
}

// removeMerged deletes the conflict copies that were merged into the header
// just saved, unless one changed since it was read. Called with the cipher
// directory locked (Save).
func (v *Vault) removeMerged() {
	for _, cc := range v.merged {
		p := filepath.Join(v.Dir, cc.name)
		cur, err := readHeaderFile(p)
		if err != nil || !bytes.Equal(cur, cc.raw) {
			continue
		}
		if err := os.Remove(p); err != nil {
			v.log.Warn("could not remove a merged conflict copy of the vault header", "file", cc.name, "err", err)
		}
	}
	v.conflicts = slices.DeleteFunc(v.conflicts, func(c *conflictCopy) bool { return slices.Contains(v.merged, c) })
	v.merged = nil
}
