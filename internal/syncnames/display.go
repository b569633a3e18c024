package syncnames

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sealfs/sealfs/crypto"
)

// The plaintext view of a conflict copy. A copy whose original decrypts to
// "report.pdf" is shown next to it as
//
//	report (conflict 2026-12-02 130124 CAVCEQA).pdf    Syncthing
//	report (conflict 2026-12-02 Alice).pdf             Dropbox
//	report (conflict 2026-12-02 120000 Alice).pdf      Nextcloud
//	report (conflict 1).pdf                            Google Drive
//	report (conflict LAPTOP-7).pdf                     OneDrive
//	photos (conflict 1)                                a directory: no extension
//
// The rule that keeps these apart from every other name (Assign):
//
//  1. A real entry (a name that decrypts as is) always has its own name.
//  2. Conflict copies are taken in the byte order of their stored names;
//     each gets the first of Display, "… #2)", "… #3)", … that is neither a
//     real entry's name nor given to an earlier copy.
//
// So names are stable while the directory does not change, and a user's
// file that happens to be called like a copy pushes the copy to "#2" rather
// than hiding either. The mount reads a directory to answer a lookup of a
// name only when IsDisplay says the name has this form.

const (
	// maxField bounds each field taken from a stored name (a device or user
	// name) in a display name.
	maxField = 40
	// maxDetail bounds the text inside the parentheses.
	maxDetail = 100
	// maxExt is the longest extension (with its '.') kept after the marker.
	maxExt = 16
	// hashTag is "~" and 8 hex digits of SHA-256(plain), which replaces the
	// end of a base shortened to fit NAME_MAX.
	hashTag = 9
)

// Display returns the name under which the mount shows conflict copy c of a
// file, symlink or other non-directory whose original decrypts to plain:
// plain with " (conflict DETAIL)" before its extension. The result is a valid
// name of at most 255 bytes: when it would be longer, plain's base is cut (at
// a UTF-8 boundary) and ends in "~" and 8 hex digits of SHA-256(plain), so
// two long names that share a prefix stay apart.
func Display(plain string, c Conflict) string { return display(plain, c, false, 1) }

// DisplayDir is Display for a directory: the marker goes at the end, since a
// directory name's dot is not an extension.
func DisplayDir(plain string, c Conflict) string { return display(plain, c, true, 1) }

// Copy is one conflict copy in a directory, as Assign needs it.
type Copy struct {
	Stored   string // its directory entry (the order of rule 2)
	Plain    string // what its Original decrypted to
	Conflict Conflict
	Dir      bool
}

// Assign applies the naming rule above to the conflict copies of one
// directory: taken reports whether a name belongs to a real entry. The result
// holds each copy's display name, in the order of copies; "" only if taken
// claims more than 65536 names in a row (a broken caller).
func Assign(taken func(name string) bool, copies []Copy) []string {
	order := make([]int, len(copies))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return copies[order[a]].Stored < copies[order[b]].Stored })
	used := make(map[string]bool, len(copies))
	out := make([]string, len(copies))
	for _, i := range order {
		c := copies[i]
		for n := 1; n <= 1<<16; n++ {
			d := display(c.Plain, c.Conflict, c.Dir, n)
			if !used[d] && !taken(d) {
				used[d], out[i] = true, d
				break
			}
		}
	}
	return out
}

// IsDisplay reports whether name has the form Display and DisplayDir give.
// It is the cheap test the mount makes before reading a directory to resolve
// a looked-up name.
func IsDisplay(name string) bool {
	_, _, _, ok := ParseDisplay(name)
	return ok
}

// ParseDisplay splits a display name into the base, the text inside the
// marker's parentheses ("conflict …") and the extension ("" or ".ext"), so
// that base + " (" + detail + ")" + ext == name. For a display name not cut
// to fit NAME_MAX, base + ext is the original's plaintext name.
func ParseDisplay(name string) (base, detail, ext string, ok bool) {
	i := strings.LastIndex(name, " (conflict")
	if i <= 0 {
		return "", "", "", false
	}
	j := strings.IndexByte(name[i:], ')')
	if j < 0 {
		return "", "", "", false
	}
	j += i
	detail = name[i+2 : j]
	if detail != "conflict" && !strings.HasPrefix(detail, "conflict ") {
		return "", "", "", false
	}
	ext = name[j+1:]
	if ext != "" && !isExt(ext) {
		return "", "", "", false
	}
	return name[:i], detail, ext, true
}

func display(plain string, c Conflict, dir bool, n int) string {
	detail := "conflict"
	if d := describe(c); d != "" {
		detail += " " + d
	}
	if n > 1 {
		detail += " #" + strconv.Itoa(n)
	}
	marker := " (" + detail + ")"
	base, ext := plain, ""
	if !dir {
		base, ext = splitExt(plain)
	}
	if len(base)+len(marker)+len(ext) > crypto.MaxNameLen {
		sum := sha256.Sum256([]byte(plain))
		keep := crypto.MaxNameLen - len(marker) - len(ext) - hashTag
		base = cutUTF8(base, keep) + "~" + hex.EncodeToString(sum[:4])
	}
	return base + marker + ext
}

// splitExt splits plain before its extension: the last '.', not the first
// byte, followed by 1 to 15 letters, digits, '_', '-' or '~'.
func splitExt(plain string) (base, ext string) {
	i := strings.LastIndexByte(plain, '.')
	if i > 0 && isExt(plain[i:]) {
		return plain[:i], plain[i:]
	}
	return plain, ""
}

func isExt(s string) bool {
	if len(s) < 2 || len(s) > maxExt || s[0] != '.' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; b64Value(c) < 0 && c != '~' {
			return false
		}
	}
	return true
}

// describe renders c's markers: for each, its label, date, time, who and
// counter; several markers (a copy of a copy) joined by "; ".
func describe(c Conflict) string {
	var parts []string
	for _, m := range c.Marks {
		var f []string
		for _, s := range []string{m.Label, m.Date, m.Time, m.Who, m.Counter} {
			if s = sanitize(s); s != "" {
				f = append(f, s)
			}
		}
		if len(f) > 0 {
			parts = append(parts, strings.Join(f, " "))
		}
	}
	return cutUTF8(strings.Join(parts, "; "), maxDetail)
}

// sanitize makes a field from an untrusted stored name safe to show inside
// the marker: printable runes only, none of "()#;/\", spaces collapsed,
// at most maxField bytes. Everything else becomes '_'.
func sanitize(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case r == utf8.RuneError, !unicode.IsPrint(r), strings.ContainsRune("()#;/\\", r):
			r = '_'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return cutUTF8(b.String(), maxField)
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence (nor leaves a trailing space).
func cutUTF8(s string, n int) string {
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return strings.TrimRight(s, " ")
}
