package syncnames

import "strings"

// Housekeeping reports whether name is a file or directory that a sync
// service or a desktop system keeps in a synced folder for itself, or one of
// their files in flight (see InProgress): sealfs ignores these quietly in the
// mount, fsck, extract and init. Every pattern is one no sealfs entry can
// have (a cipher name has no '.'; metadata starts with "sealfs."); the tests
// hold every pattern against Shape.
//
// Sources ("code" = read in the client's source; "docs" = the vendor's
// documentation; "measured" = seen in tests/ with the real client):
//
//   - Syncthing (code, lib/fs/filesystem.go `internals`, lib/config
//     DefaultMarkerName, lib/fs/tempname.go; measured with 1.19.2):
//     ".stfolder" (a directory; an empty file in old versions), ".stignore",
//     ".stversions"; temp files ".syncthing.*.tmp" and "~syncthing~*.tmp".
//   - Dropbox (code, Maestral's EXCLUDED_FILE_NAMES, a Dropbox client's
//     list of the official client's files): ".dropbox", ".dropbox.attr",
//     ".dropbox.cache".
//   - Nextcloud / ownCloud desktop (code, csync_exclude.cpp
//     _csync_excluded_common, folder watcher's notification test file,
//     sync-exclude.lst): ".sync_*.db*", "._sync_*.db*", ".csync_journal.db*",
//     ".owncloudsync.log*", ".nextcloudsync.log", ".nextcloudpermissions.log",
//     ".sync-exclude.lst"; downloads in flight ".NAME.~HEX".
//   - Google Drive for desktop (user reports and other tools' ignore lists,
//     not verified in source): ".tmp.drivedownload", ".tmp.driveupload",
//     working directories that stay (not files in flight: InProgress does
//     not report them, so fsck does not call every Drive folder a sync in
//     progress).
//   - Resilio Sync (docs): the ".sync" directory; downloads "*.!sync".
//   - rclone (code, --partial-suffix default ".partial", rclone ≥ 1.63):
//     "*.partial".
//   - Browsers and partial downloads excluded by Nextcloud's default list
//     (code, sync-exclude.lst): "*.part", "*.crdownload", "*.filepart".
//   - Desktop systems (code, Maestral's and Nextcloud's exclude lists):
//     ".DS_Store", "._*" (AppleDouble companions written on non-Apple file
//     systems), "Icon\r", ".Spotlight-V100", ".Trashes", ".fseventsd",
//     ".TemporaryItems", ".localized", ".com.apple.timemachine.supported",
//     ".DocumentRevisions-V100", ".apdisk", "desktop.ini", "Thumbs.db"
//     (the last two case-insensitively, as Windows writes them), and
//     "$RECYCLE.BIN", "System Volume Information" at a Windows drive root.
func Housekeeping(name string) bool {
	if name == "" || IsStored(name) {
		return false
	}
	if _, ok := InProgress(name); ok {
		return true
	}
	if exactHousekeeping[name] {
		return true
	}
	switch strings.ToLower(name) {
	case "desktop.ini", "thumbs.db", ".ds_store":
		return true
	}
	return nextcloudJournal(name) || strings.HasPrefix(name, "._") ||
		strings.HasPrefix(name, ".owncloudsync.log")
}

var exactHousekeeping = map[string]bool{
	// Syncthing
	".stfolder": true, ".stignore": true, ".stversions": true,
	// Dropbox
	".dropbox": true, ".dropbox.attr": true, ".dropbox.cache": true,
	// Nextcloud / ownCloud
	".nextcloudsync.log": true, ".nextcloudpermissions.log": true, ".sync-exclude.lst": true,
	// Google Drive for desktop
	".tmp.drivedownload": true, ".tmp.driveupload": true,
	// Resilio Sync
	".sync": true,
	// macOS
	"Icon\r": true, ".Spotlight-V100": true, ".Trashes": true, ".fseventsd": true, ".TemporaryItems": true,
	".localized": true, ".com.apple.timemachine.supported": true, ".DocumentRevisions-V100": true, ".apdisk": true,
	// Windows drive roots
	"$RECYCLE.BIN": true, "System Volume Information": true,
}

// nextcloudJournal matches the sync journal and its SQLite side files, as
// csync_exclude.cpp does: a leading '.', at least 9 bytes, containing ".db",
// starting (case-insensitively) with "._sync_", ".sync_" or
// ".csync_journal.db".
func nextcloudJournal(name string) bool {
	if len(name) < 9 || name[0] != '.' || !strings.Contains(name, ".db") {
		return false
	}
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "._sync_") || strings.HasPrefix(l, ".sync_") || strings.HasPrefix(l, ".csync_journal.db")
}

// Partial describes a sync service's file in flight: a download (or, for a
// few services, an upload) that is not complete yet.
type Partial struct {
	Service Service
	// Of is the stored name being transferred when the temp name shows it
	// (Syncthing hashes names longer than 145 bytes; Google Drive keeps its
	// temp files in a directory of its own), else "".
	Of string
	// Placeholder marks a stand-in for a file not downloaded yet (a virtual
	// file) rather than a transfer.
	Placeholder bool
}

// InProgress recognises a sync service's temp, partial or placeholder file.
// fsck reports these as "sync in progress" (with Of, when known, as the
// entry that is arriving); they are Housekeeping everywhere else.
func InProgress(name string) (Partial, bool) {
	if name == "" || IsStored(name) {
		return Partial{}, false
	}
	// Syncthing, lib/fs/tempname.go: prefix + name + ".tmp", or prefix +
	// hex(SHA-256(name)) + ".tmp" for names longer than 160-11-4 bytes.
	for _, pre := range []string{".syncthing.", "~syncthing~"} {
		if mid, ok := cut(name, pre, ".tmp"); ok && mid != "" {
			if len(mid) == 64 && isHex(mid) {
				// A hash (a 64-letter cipher name of hex digits only
				// has odds of (22/64)^64).
				mid = ""
			}
			return Partial{Service: Syncthing, Of: storedOrEmpty(mid)}, true
		}
	}
	// Nextcloud / ownCloud, propagatedownload.cpp createDownloadTmpFileName:
	// "." + name + ".~" + hex of a random number.
	if name[0] == '.' {
		if i := strings.LastIndex(name, ".~"); i > 1 && isHex(name[i+2:]) {
			return Partial{Service: Nextcloud, Of: storedOrEmpty(name[1:i])}, true
		}
	}
	// Nextcloud / ownCloud virtual files (placeholders for files kept on the
	// server only): the name plus APPLICATION_DOTVIRTUALFILE_SUFFIX.
	for _, suf := range []string{".nextcloud", ".owncloud"} {
		if base, ok := strings.CutSuffix(name, suf); ok && IsStored(base) {
			return Partial{Service: Nextcloud, Of: base, Placeholder: true}, true
		}
	}
	// rclone ≥ 1.63 writes NAME.XXXXXXXX.partial (8 hex digits of a hash)
	// unless --inplace; a bare NAME.partial is accepted too.
	if base, ok := strings.CutSuffix(name, ".partial"); ok && base != "" {
		if i := strings.LastIndexByte(base, '.'); i > 0 && isHex(base[i+1:]) && IsStored(base[:i]) {
			base = base[:i]
		}
		return Partial{Service: Rclone, Of: storedOrEmpty(base)}, true
	}
	if base, ok := strings.CutSuffix(name, ".!sync"); ok && base != "" {
		return Partial{Service: Resilio, Of: storedOrEmpty(base)}, true
	}
	for _, suf := range []string{".part", ".crdownload", ".filepart"} {
		if base, ok := strings.CutSuffix(name, suf); ok && base != "" {
			return Partial{Service: Browser, Of: storedOrEmpty(base)}, true
		}
	}
	return Partial{}, false
}

func cut(s, prefix, suffix string) (string, bool) {
	if len(s) < len(prefix)+len(suffix) || !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
		return "", false
	}
	return s[len(prefix) : len(s)-len(suffix)], true
}

func storedOrEmpty(s string) string {
	if IsStored(s) {
		return s
	}
	return ""
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
