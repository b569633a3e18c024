package dirent

import "github.com/sealfs/sealfs/crypto"

// The local record of directory IDs ($XDG_STATE_HOME/sealfs/dirids/<vault
// id hex>, kept by the mount, read by the mount, fsck and extract): the
// 16-byte IDs this machine has read, appended one after the other. It is
// outside the cipher folder, but a crash can cut an append short and any
// process of the user can write it, so it is parsed as untrusted bytes.

// MaxIDRecord is the largest record read: a million directories.
const MaxIDRecord = 1 << 20 * crypto.DirIDSize

// ParseIDRecord returns the distinct IDs of a record, in the order first
// written. A trailing partial ID (an append cut short) and the root's ID
// (never a candidate: no sync race moves a name out of the root) are
// skipped; bytes past MaxIDRecord are ignored.
func ParseIDRecord(b []byte) []crypto.DirID {
	if len(b) > MaxIDRecord {
		b = b[:MaxIDRecord]
	}
	n := len(b) / crypto.DirIDSize
	out := make([]crypto.DirID, 0, n)
	seen := make(map[crypto.DirID]bool, n)
	for ; len(b) >= crypto.DirIDSize; b = b[crypto.DirIDSize:] {
		var id crypto.DirID
		copy(id[:], b)
		if id == crypto.RootDirID || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
	}
	return out
}
