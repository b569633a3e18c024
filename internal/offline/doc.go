// Package offline reads a vault's cipher folder directly, without FUSE: it
// walks the tree decrypting names (Walk), verifies every header, block and
// name (Check, behind `sealfs fsck`) and decrypts the vault or a sub-path into
// a plain directory with its metadata (Extract, behind `sealfs extract`), so a
// restore works where FUSE does not.
//
// It only reads the cipher folder; nothing here writes to it.
package offline
