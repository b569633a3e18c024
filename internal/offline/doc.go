// Package offline reads a vault's cipher folder directly, without FUSE: it
// walks the tree decrypting names, verifies every header, block and
// name (Check, behind `sealfs fsck`) and decrypts the vault or a sub-path into
// a plain directory with its metadata (Extract, behind `sealfs extract`), so a
// restore works where FUSE does not.
//
// It only reads the cipher folder; nothing here writes to it. Both the
// cipher folder, which anyone with the sync account can change at any
// moment, and the extraction's destination are worked through directory
// descriptors with calls that follow no symlink (internal/safefile), so
// nothing outside them is ever read or touched (issue 13).
package offline
