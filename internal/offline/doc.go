// Package offline reads a vault's cipher folder directly, without FUSE: it
// walks the tree decrypting names, verifies every header, block and
// name (CheckWith, behind `sealfs fsck`) and decrypts the vault or a sub-path
// into a plain directory with its metadata (Extract, behind `sealfs
// extract`), so a restore works where FUSE does not.
//
// Both see the vault as the mount shows it (internal/dirent): a sync
// service's own files are ignored, its conflict copies shown under display
// names, names encrypted under another directory's ID found. Findings come
// in classes (Report, Class): notes about the state of a sync (conflict
// copies, a sync in progress) and problems (crash leftovers, entries of
// another directory, damage); Report.ExitCode maps them to fsck(8)'s exit
// status.
//
// Check and Extract only read the cipher folder. Repair, behind `sealfs
// fsck --repair`, applies what Check planned and nothing else: a missing
// directory ID file restored, names re-encrypted under their directory's
// ID, metadata nothing needs removed. Both the cipher folder, which anyone
// with the sync account can change at any moment, and the extraction's
// destination are worked through directory descriptors with calls that
// follow no symlink (internal/safefile), so nothing outside them is ever
// read or touched (issue 13).
package offline
