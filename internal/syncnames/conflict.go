package syncnames

import (
	"sort"
	"strings"
)

// Service names the client whose naming habit a name matches.
type Service string

// Services whose names this package knows. The sources of each pattern are
// cited where it is parsed, and in docs/sync.md.
const (
	Syncthing   Service = "Syncthing"
	Dropbox     Service = "Dropbox" // the official client and Maestral
	Nextcloud   Service = "Nextcloud"
	GoogleDrive Service = "Google Drive" // " (N)": also OneDrive's and others' duplicate names
	OneDrive    Service = "OneDrive"
	Seafile     Service = "Seafile"
	Resilio     Service = "Resilio Sync"
	Rclone      Service = "rclone"
	Browser     Service = "browser" // partial downloads (.part, .crdownload, .filepart)
	Unknown     Service = "unknown" // a " (…)" marker of no known service
)

// Mark is one marker a sync service inserted into a name.
type Mark struct {
	Service Service
	Text    string // the marker exactly as found in the stored name
	Label   string // the kind of conflict when the service names one ("case clash"), or an unknown marker's text
	Date    string // YYYY-MM-DD, when the marker has a date
	Time    string // HHMMSS, when it has a time of day
	Who     string // device ID, host or user name, as written by the service
	Counter string // a number the service added to keep copies apart
}

// Conflict is one reading of a conflict copy's stored name: the stored name
// it was copied from and the markers that were added to it.
type Conflict struct {
	Original string
	Kind     Kind   // Shape(Original), never NotSealfs
	Marks    []Mark // usually one; more for a copy of a copy, the first made first
}

// Service is the service that made the copy (the last marker found).
func (c Conflict) Service() Service {
	if len(c.Marks) == 0 {
		return Unknown
	}
	return c.Marks[len(c.Marks)-1].Service
}

const (
	// maxCandidates bounds the work a hostile name can cause: each candidate
	// costs the caller one name decryption (an HMAC over ≤ 176 bytes).
	maxCandidates = 16
	// maxNesting is how many markers deep a copy of a copy is followed.
	maxNesting = 3
	// maxMarkLen bounds one marker; the longest documented ones (Nextcloud
	// with a user's display name, OneDrive's host-safeBackup-NNNN) are well
	// below it.
	maxMarkLen = 128
)

// ParseConflict recognises the conflict-copy naming schemes of the services
// above in a directory entry's name and returns the stored names it may have
// been copied from, the most likely first, at most 16, each of a sealfs shape
// (Shape(c.Original) != NotSealfs) and shorter than stored. The caller tries
// them in order and keeps the first that decrypts and authenticates under
// the directory's ID; a wrong guess is harmless (it fails authentication)
// and cheap. Ambiguous schemes (OneDrive's "X-HOST", where X and HOST may
// both contain '-') give one candidate per reading.
//
// Call it for names that did not decrypt as they are: a copy can itself
// have a sealfs shape ("X-host-safeBackup-0001" after a 43-letter X is 64
// base64url letters, a valid cipher-name length).
//
// A Syncthing conflict copy of a long-name entry "sealfs.ln.H" is
// "sealfs.ln.sync-conflict-…-DEV.H" (Syncthing inserts its marker before
// filepath.Ext); its original's side file "sealfs.ln.H.name" is the
// original's, not the copy's. Copies of metadata ("sealfs.vault",
// "sealfs.dirid", side files) come back with their Kind for fsck to report.
func ParseConflict(stored string) []Conflict {
	if len(stored) > 255 {
		return nil
	}
	type pending struct {
		name  string
		marks []Mark
	}
	var out []Conflict
	seen := map[string]bool{}
	level := []pending{{name: stored}}
	for depth := 0; depth < maxNesting && len(level) > 0 && len(out) < maxCandidates; depth++ {
		var found []Conflict
		var next []pending
		for _, p := range level {
			forEachMark(p.name, func(rest string, m Mark) {
				marks := append([]Mark{m}, p.marks...)
				if k := Shape(rest); k != NotSealfs {
					if !seen[rest] {
						seen[rest] = true
						// The order they appear in: a service inserts its
						// marker after any earlier one (at the end, or
						// before the same extension).
						sort.SliceStable(marks, func(i, j int) bool {
							return strings.Index(stored, marks[i].Text) < strings.Index(stored, marks[j].Text)
						})
						found = append(found, Conflict{Original: rest, Kind: k, Marks: marks})
					}
				} else if len(next) < 4*maxCandidates {
					next = append(next, pending{rest, marks})
				}
			})
		}
		// Exact formats first, then numbered and unknown markers, then
		// OneDrive's dash readings, which match the most names.
		sort.SliceStable(found, func(i, j int) bool { return rank(found[i]) < rank(found[j]) })
		for _, c := range found {
			if len(out) < maxCandidates {
				out = append(out, c)
			}
		}
		level = next
	}
	return out
}

func rank(c Conflict) int {
	switch c.Marks[0].Service {
	case GoogleDrive:
		return 1
	case Unknown:
		return 2
	case OneDrive:
		return 3
	}
	return 0
}

// forEachMark calls f for every marker any known scheme finds in s, with s
// minus that marker.
func forEachMark(s string, f func(rest string, m Mark)) {
	syncthingMarks(s, f)
	ownCloudMarks(s, f)
	parenMarks(s, f)
	dottedMarks(s, "..path1", Rclone, noNumber, f)
	dottedMarks(s, "..path2", Rclone, noNumber, f)
	dottedMarks(s, ".conflict", Rclone, needNumber, f)
	dottedMarks(s, ".Conflict", Resilio, mayNumber, f)
	dashMarks(s, f)
}

// syncthingMarks: lib/model/folder_sendrecv.go conflictName (1.19.2 and
// 2.x alike) inserts, before filepath.Ext(name),
// time.Now().Format(".sync-conflict-20060102-150405-") + lastModBy, where
// lastModBy is the 7-letter base32 short device ID of the device that last
// changed the file (empty for ID 0).
func syncthingMarks(s string, f func(string, Mark)) {
	const tag = ".sync-conflict-"
	for off := 0; ; {
		i := strings.Index(s[off:], tag)
		if i < 0 {
			return
		}
		i += off
		off = i + 1
		p := i + len(tag)
		if len(s) < p+16 || !digits(s[p:p+8]) || s[p+8] != '-' || !digits(s[p+9:p+15]) || s[p+15] != '-' {
			continue
		}
		k := p + 16
		for k < len(s) && k-(p+16) < 7 && isBase32(s[k]) {
			k++
		}
		if k < len(s) && s[k] != '.' {
			continue
		}
		f(s[:i]+s[k:], Mark{Service: Syncthing, Text: s[i:k], Date: isoDate(s[p : p+8]), Time: s[p+9 : p+15], Who: s[p+16 : k]})
	}
}

// ownCloudMarks: the ownCloud/Nextcloud client before 2.5
// (propagatedownload.cpp makeConflictFileName) inserted "_conflict-" +
// yyyyMMdd-hhmmss, or "_conflict_" + $CSYNC_CONFLICT_FILE_USERNAME + "-" +
// yyyyMMdd-hhmmss, before the extension.
func ownCloudMarks(s string, f func(string, Mark)) {
	const tag = "_conflict"
	for off := 0; ; {
		i := strings.Index(s[off:], tag)
		if i < 0 {
			return
		}
		i += off
		off = i + 1
		p := i + len(tag)
		if p >= len(s) {
			return
		}
		end, who := -1, ""
		switch s[p] {
		case '-':
			if stamp(s, p+1) {
				end = p + 16
			}
		case '_':
			for q := p + 1; q+16 <= len(s) && q-p <= maxMarkLen; q++ {
				if s[q] == '-' && stamp(s, q+1) {
					end, who = q+16, s[p+1:q]
					break
				}
			}
		}
		if end < 0 {
			continue
		}
		f(s[:i]+s[end:], Mark{Service: Nextcloud, Text: s[i:end], Date: isoDate(s[end-15 : end-7]),
			Time: s[end-6 : end], Who: who})
	}
}

// stamp reports whether s[p:] starts with yyyyMMdd-hhmmss followed by the
// end of s or a '.'.
func stamp(s string, p int) bool {
	return len(s) >= p+15 && digits(s[p:p+8]) && s[p+8] == '-' && digits(s[p+9:p+15]) &&
		(len(s) == p+15 || s[p+15] == '.')
}

// parenMarks finds every " (…)" group (nested parentheses allowed two
// deep) and classifies its text; see classifyParen.
func parenMarks(s string, f func(string, Mark)) {
	for off := 0; ; {
		i := strings.Index(s[off:], " (")
		if i < 0 {
			return
		}
		i += off
		off = i + 1
		depth, j := 0, -1
		for k := i + 1; k < len(s) && k-i <= maxMarkLen && j < 0 && depth <= 2; k++ {
			switch s[k] {
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					j = k
				}
			}
		}
		if j < 0 || j == i+2 {
			continue
		}
		m := classifyParen(s[i+2 : j])
		m.Text = s[i : j+1]
		f(s[:i]+s[j+1:], m)
	}
}

// classifyParen reads the text inside " (…)":
//
//   - "N": Google Drive for desktop names the second of two items with one
//     name "X (1)" (user reports; Grive issue #166); OneDrive and others
//     number duplicates the same way.
//   - "conflicted copy [USER ]yyyy-MM-dd hhmmss": Nextcloud/ownCloud ≥ 2.5
//     (src/common/utility.cpp makeConflictFileName; USER, the account's
//     display name, only when the server uploads conflict files; the time is
//     the local copy's mtime in local time).
//   - "case clash from yyyy-MM-dd hhmmss": Nextcloud ≥ 3.8
//     (makeCaseClashConflictFileName).
//   - "[NAME's ]conflicted copy[ yyyy-MM-dd]": Dropbox (help page "What's a
//     conflicted copy?": the editor's name, "conflicted copy" and the date;
//     older clients put the computer's name, which may hold "'s" or dots:
//     "Pastor's Mac's", "imacfhe.local's"). A trailing " (N)" is accepted
//     too, though not documented: it costs nothing.
//   - "conflicting copy[ N]", "case conflict[ N]", "selective sync
//     conflict[ N]", "unicode encoding conflict[ N]": Dropbox's other
//     conflicts (help center) as Maestral writes them (utils/path.py
//     generate_cc_name).
//   - "SFConflict WHO yyyy-mm-dd-HH-MM-SS": Seafile (seafile client
//     merge code; documented examples).
//   - anything else: Unknown, its text kept as Label (localised Dropbox
//     markers, other services).
func classifyParen(t string) Mark {
	if digits(t) && len(t) <= 6 {
		return Mark{Service: GoogleDrive, Counter: t}
	}
	lower := asciiLower(t) // same byte offsets as t
	if rest, ok := strings.CutPrefix(t, "conflicted copy "); ok && len(rest) >= 17 && dateTime(rest[len(rest)-17:]) {
		who := strings.TrimSuffix(rest[:len(rest)-17], " ")
		return Mark{Service: Nextcloud, Who: who, Date: rest[len(rest)-17 : len(rest)-7], Time: rest[len(rest)-6:]}
	}
	if rest, ok := strings.CutPrefix(t, "case clash from "); ok && len(rest) == 17 && dateTime(rest) {
		return Mark{Service: Nextcloud, Label: "case clash", Date: rest[:10], Time: rest[11:]}
	}
	if i := strings.Index(lower, "conflicted copy"); i >= 0 {
		m := Mark{Service: Dropbox}
		who := strings.TrimSpace(t[:i])
		for _, s := range []string{"'s", "’s"} {
			who = strings.TrimSuffix(who, s)
		}
		m.Who = who
		rest := strings.TrimSpace(t[i+len("conflicted copy"):])
		if len(rest) >= 10 && isoDateOK(rest[:10]) {
			m.Date, rest = rest[:10], strings.TrimSpace(rest[10:])
		}
		if n, ok := cut(rest, "(", ")"); ok && digits(n) {
			m.Counter, rest = n, ""
		}
		if rest == "" {
			return m
		}
	}
	for _, label := range []string{"conflicting copy", "case conflict", "selective sync conflict", "unicode encoding conflict"} {
		if rest, ok := strings.CutPrefix(lower, label); ok && (rest == "" || rest[0] == ' ' && digits(rest[1:])) {
			return Mark{Service: Dropbox, Label: label, Counter: strings.TrimPrefix(rest, " ")}
		}
	}
	if rest, ok := strings.CutPrefix(t, "SFConflict "); ok && len(rest) > 20 && rest[len(rest)-20] == ' ' {
		ts := rest[len(rest)-19:] // 2013-11-28-12-21-13
		if isoDateOK(ts[:10]) && ts[10] == '-' && digits(ts[11:13]) && ts[13] == '-' && digits(ts[14:16]) && ts[16] == '-' && digits(ts[17:19]) {
			return Mark{Service: Seafile, Who: rest[:len(rest)-20], Date: ts[:10], Time: ts[11:13] + ts[14:16] + ts[17:19]}
		}
	}
	return Mark{Service: Unknown, Label: t}
}

// Numbering of a dotted marker.
const (
	noNumber = iota
	needNumber
	mayNumber // a number, or a space and a number, or none
)

// dottedMarks finds tag, numbered as num says, ending at a '.' or at the end
// of s:
//
//   - rclone bisync: "..path1" / "..path2" appended to both sides of a
//     conflict (rclone 1.58–1.65, measured with 1.60.1 in docs/sync.md),
//     ".conflict1" / ".conflict2" since 1.66 (--conflict-suffix).
//   - Resilio Sync: "X.Conflict", "X.Conflict1", "X.Conflict 3", inserted
//     before the extension (help center "Conflict files in Sync").
func dottedMarks(s, tag string, svc Service, num int, f func(string, Mark)) {
	for off := 0; ; {
		i := strings.Index(s[off:], tag)
		if i < 0 {
			return
		}
		i += off
		off = i + 1
		k := i + len(tag)
		e := k
		if num != noNumber {
			n := k
			if num == mayNumber && n < len(s) && s[n] == ' ' {
				n++
			}
			d := n
			for d < len(s) && d-n < 6 && s[d] >= '0' && s[d] <= '9' {
				d++
			}
			if d > n {
				e = d
			} else if num == needNumber {
				continue
			}
		}
		if e < len(s) && s[e] != '.' {
			continue
		}
		m := Mark{Service: svc, Text: s[i:e], Counter: strings.TrimSpace(s[k:e])}
		if num == noNumber {
			m.Label = tag[2:] // which side: path1 or path2
		}
		f(s[:i]+s[e:], m)
	}
}

// dashMarks reads OneDrive's conflict copies: the Windows client inserts
// "-" + the computer's name before the extension (user reports, e.g.
// "clarice-users-Neo.db"); the abraunegg Linux client writes
// "NAME-HOST-safeBackup-0001.EXT" since 2.5.3 and "NAME-HOST-N.EXT" before
// (its docs/usage.md). '-' is a base64url letter, so every '-' that leaves a
// sealfs shape in front of it is a reading.
func dashMarks(s string, f func(string, Mark)) {
	ends := []int{len(s)}
	if d := strings.LastIndexByte(s, '.'); d > 0 {
		ends = append(ends, d)
	}
	for _, j := range ends {
		for i := j - 1; i > 0 && j-i <= maxMarkLen; i-- {
			if !hostChar(s[i]) {
				break
			}
			if s[i] != '-' || i+1 == j {
				continue
			}
			host := s[i+1 : j]
			m := Mark{Service: OneDrive, Text: s[i:j], Who: host}
			if k := strings.LastIndex(host, "-safeBackup-"); k > 0 && digits(host[k+12:]) {
				m.Who, m.Counter = host[:k], host[k+12:]
			}
			f(s[:i]+s[j:], m)
		}
	}
}

// asciiLower folds A-Z only, so offsets in the result are offsets in s.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func hostChar(c byte) bool { return b64Value(c) >= 0 }

func isBase32(c byte) bool { return c >= 'A' && c <= 'Z' || c >= '2' && c <= '7' }

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isoDate turns yyyymmdd into yyyy-mm-dd.
func isoDate(s string) string { return s[:4] + "-" + s[4:6] + "-" + s[6:8] }

// isoDateOK reports whether s is yyyy-mm-dd (digits and dashes only; the
// calendar is not checked: the date is only shown).
func isoDateOK(s string) bool {
	return len(s) == 10 && digits(s[:4]) && s[4] == '-' && digits(s[5:7]) && s[7] == '-' && digits(s[8:])
}

// dateTime reports whether s is "yyyy-MM-dd hhmmss".
func dateTime(s string) bool {
	return len(s) == 17 && isoDateOK(s[:10]) && s[10] == ' ' && digits(s[11:])
}
