// Package fs is sealfs' FUSE layer: the plaintext view of a vault, built on
// go-fuse v2's node API.
//
// Every plaintext object is a backing object in the cipher directory with an
// encrypted name: regular files hold crypto's content format through
// internal/cipherfile, symlinks hold an encrypted target, directories hold
// a sealfs.dirid file with the ID their children's names are encrypted
// under, xattrs are stored encrypted on the backing object. Everything the
// mount does maps onto one or two backing syscalls on that object, so the
// backing filesystem provides atomicity (rename), hard links, locks (kept in
// the kernel), modes, owners and times.
//
// Layout: mount.go (Options, Mount, Server and the go-fuse settings with
// their reasons), root.go (state shared by all nodes), node.go (cipher
// paths, directory IDs, inode numbers, attributes), node_lookup_attr.go,
// node_open_create.go, open_file.go (per-inode shared engine), file.go
// (handles), node_dir_ops.go, dir_stream.go (readdir), names.go (long names,
// name decryption), xattr.go, errno.go (the one error → errno mapping).
//
// Inode numbers are the backing files' st_ino (with the device mixed in only
// for objects on another device than the cipher dir), so they are stable
// across remounts and shared by hard links.
package fs
