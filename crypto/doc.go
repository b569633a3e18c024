// Package crypto implements sealfs' on-disk cryptography: key derivation, file
// content blocks, file and directory names, symlink targets, extended
// attributes, the vault header and the recovery key.
//
// It works on byte slices and io.Reader/io.Writer values only; it never opens
// files or sockets, so every decoder here can be fuzzed and every format rule
// is testable without a filesystem. docs/format.md is the contract this
// package implements; the labels and sizes below are repeated verbatim there.
package crypto
