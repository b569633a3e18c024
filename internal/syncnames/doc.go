// Package syncnames knows the naming habits of file-sync services (Syncthing,
// Dropbox, Google Drive, OneDrive, Nextcloud/ownCloud, Seafile, Resilio, rclone)
// as far as they touch a sealfs cipher folder, and the names sealfs shows for
// what they leave there. It is pure: names in, names out, no I/O, no keys.
//
// A cipher folder only ever holds two shapes of names (docs/format.md §2, §5):
// base64url cipher names of a handful of fixed lengths, which never contain a
// '.', and names starting with "sealfs.". Anything else was put there by
// someone else, which is what makes the rules here safe:
//
//   - Housekeeping: the service's own files (".stfolder", ".dropbox",
//     ".sync_*.db", "desktop.ini", ...) and its files in flight
//     (".syncthing.X.tmp", ".X.~1a2b", "X.partial", ...), to be ignored
//     quietly by the mount, fsck, extract and init. None of them has a sealfs
//     shape (tested), so no vault entry is ever ignored.
//   - InProgress: the in-flight subset, with the cipher name being
//     transferred when the temp name shows it, for fsck's "sync in progress".
//   - ParseConflict: the conflict-copy naming schemes; the stored names a
//     conflict copy may have been made from, most likely first. Every
//     candidate has a sealfs shape; the caller decrypts it under the
//     directory's ID, so a wrong guess costs one HMAC and is rejected.
//   - Display / DisplayDir / Assign / IsDisplay / ParseDisplay: the plaintext
//     name under which a conflict copy is shown, kept apart from every real
//     name in its directory by a documented, deterministic rule.
//
// Where each pattern comes from (source code read, documentation, or measured
// with the real client) is written next to it and summarised in docs/sync.md.
package syncnames
