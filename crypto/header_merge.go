package crypto

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Two devices that change the slots while offline each write the whole
// header; a sync service keeps one file and renames the other to a
// conflict copy. Once a vault is unlocked, every copy that its key
// authenticates can be merged into one header that keeps both devices'
// changes: slots are merged by id, the higher Rev of a slot wins, and a
// slot that either side removed (its tombstone in Removed) stays removed.

// MergeHeaders merges authenticated headers of one vault. The result
// keeps hs[0]'s creation time and slot order, then the slots that only
// other headers hold, by creation time and id. The outcome does not depend
// on the order of hs[1:], so two devices merging the same files write the
// same bytes.
func MergeHeaders(hs ...*Header) (*Header, error) {
	if len(hs) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrHeaderFormat)
	}
	base := hs[0]
	out := &Header{Version: FormatVersion, VaultID: slices.Clone(base.VaultID), Created: base.Created,
		Features: slices.Clone(base.Features)}
	if out.Features == nil {
		out.Features = []string{}
	}
	removed := map[string]time.Time{}
	best := map[string]*Slot{}
	for _, h := range hs {
		if !bytes.Equal(h.VaultID, base.VaultID) {
			return nil, fmt.Errorf("%w: cannot merge headers of two vaults", ErrHeaderFormat)
		}
		for _, f := range h.Features {
			if !slices.Contains(out.Features, f) {
				out.Features = append(out.Features, f)
			}
		}
		for _, r := range h.Removed {
			if t, ok := removed[r.ID]; !ok || r.Removed.Before(t) {
				removed[r.ID] = r.Removed
			}
		}
		for i := range h.Slots {
			s := &h.Slots[i]
			if cur, ok := best[s.ID]; !ok || newerSlot(s, cur) {
				best[s.ID] = s
			}
		}
	}
	var extra []*Slot
	for id, s := range best {
		if _, gone := removed[id]; gone {
			continue
		}
		if _, inBase := base.Slot(id); !inBase {
			extra = append(extra, s)
		}
	}
	for _, s := range base.Slots {
		if _, gone := removed[s.ID]; !gone {
			out.Slots = append(out.Slots, *best[s.ID])
		}
	}
	slices.SortFunc(extra, func(a, b *Slot) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	for _, s := range extra {
		out.Slots = append(out.Slots, *s)
	}
	for id, t := range removed {
		out.Removed = append(out.Removed, RemovedSlot{ID: id, Removed: t})
	}
	out.Removed = trimRemoved(out.Removed)
	if err := out.validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// newerSlot reports whether a should replace b: a higher Rev, or at equal
// Rev (two devices that changed one slot at once; not something sealfs
// does, each device owns its slot) the larger encoding, so that every
// device picks the same.
func newerSlot(a, b *Slot) bool {
	if a.Rev != b.Rev {
		return a.Rev > b.Rev
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Compare(ja, jb) > 0
}

// trimRemoved keeps the newest maxRemoved tombstones, newest first.
func trimRemoved(rs []RemovedSlot) []RemovedSlot {
	slices.SortFunc(rs, func(a, b RemovedSlot) int {
		return cmp.Or(b.Removed.Compare(a.Removed), cmp.Compare(a.ID, b.ID))
	})
	if len(rs) > maxRemoved {
		rs = rs[:maxRemoved]
	}
	return rs
}

// RemoveSlot deletes slot id and records its tombstone (format 2), so that
// no merge brings it back.
func (h *Header) RemoveSlot(id string, now time.Time) {
	h.Slots = slices.DeleteFunc(h.Slots, func(s Slot) bool { return s.ID == id })
	h.Removed = append(slices.DeleteFunc(h.Removed, func(r RemovedSlot) bool { return r.ID == id }),
		RemovedSlot{ID: id, Removed: now.UTC()})
	h.Removed = trimRemoved(h.Removed)
}
