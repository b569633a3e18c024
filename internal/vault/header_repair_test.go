package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// One damaged byte anywhere in sealfs.vault: the vault still loads, the
// recovery key and the pinned password still open it, and the unlock's
// repair writes back exactly the header as it was.
func TestHeaderByteFlipRecoveryAndRepair(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, rk, _ := newVault(t, f, "pw")
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil { // pins the slot
		t.Fatal(err)
	}
	orig := readHeader(t, dir)
	path := filepath.Join(dir, crypto.HeaderFileName)
	for i := range orig {
		b := bytes.Clone(orig)
		b[i] ^= 0x5a
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := Load(dir, nil)
		if err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
		if len(v.HeaderProblems()) == 0 {
			t.Fatalf("byte %d: damage not reported", i)
		}
		unlock := func() error { return v.UnlockRecovery(rk) }
		if i%7 == 0 {
			f.unseals = 0
			unlock = func() error { return v.UnlockPassword(f, []byte("pw")) }
		}
		if err := unlock(); err != nil {
			t.Fatalf("byte %d: unlock: %v", i, err)
		}
		if i%7 == 0 && f.unseals != 1 {
			t.Fatalf("byte %d: %d tries", i, f.unseals)
		}
		done, err := v.Repair()
		if err != nil || len(done) == 0 {
			t.Fatalf("byte %d: repair: %v, %v", i, done, err)
		}
		v.Wipe()
		if got := readHeader(t, dir); !bytes.Equal(got, orig) {
			t.Fatalf("byte %d: the repaired header differs from the original", i)
		}
	}
}

// installConflict puts hdr beside dir's header under a sync service's
// conflict name, as the service does with the copy that lost.
func installConflict(t *testing.T, dir, name string, hdr []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), hdr, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeHeader(t *testing.T, dir string, hdr []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, crypto.HeaderFileName), hdr, 0o600); err != nil {
		t.Fatal(err)
	}
}

const syncthingConflict = "sealfs.sync-conflict-20261202-130124-ABCDEFG.vault"

// device switches to one device's state directory: each device has its
// own pins.
func device(t *testing.T, state string) { t.Setenv("XDG_STATE_HOME", state) }

// Issue 14's scenario: device A changes its password while device B
// recovers (replaces its own slot), both offline. Whichever header the
// sync service keeps, each device opens the vault with its own new
// password without spending a try, the merge keeps both changes, and both
// devices write the same merged header.
func TestTwoDevicesOfflineSlotChanges(t *testing.T) {
	for _, keepB := range []bool{true, false} {
		t.Run(map[bool]string{true: "sync keeps B's header", false: "sync keeps A's header"}[keepB], func(t *testing.T) {
			stateA, stateB := t.TempDir(), t.TempDir()
			fa, fb := newFakeTPM("srk-a"), newFakeTPM("srk-b")
			dirA, dirB := t.TempDir(), t.TempDir()

			device(t, stateA)
			v, rk, err := Create(dirA, nil, fa, []byte("a1"), CreateOptions{Seal: SealOptions{MaxTries: 3}})
			if err != nil {
				t.Fatal(err)
			}
			v.Wipe()
			writeHeader(t, dirB, readHeader(t, dirA)) // synced to B
			device(t, stateB)
			v = loadVault(t, dirB)
			if err := v.UnlockRecovery(rk); err != nil {
				t.Fatal(err)
			}
			if _, err := v.AddTPMSlot(fb, []byte("b1"), SealOptions{MaxTries: 3}, "b", false); err != nil { // enroll
				t.Fatal(err)
			}
			v.Wipe()
			writeHeader(t, dirA, readHeader(t, dirB)) // synced to A
			device(t, stateA)
			if err := loadVault(t, dirA).UnlockPassword(fa, []byte("a1")); err != nil {
				t.Fatal(err)
			}

			// Offline: A passwd, B recover.
			if err := loadVault(t, dirA).ChangePassword(fa, []byte("a1"), []byte("a2"), PasswdOptions{}); err != nil {
				t.Fatal(err)
			}
			device(t, stateB)
			v = loadVault(t, dirB)
			if err := v.UnlockRecovery(rk); err != nil {
				t.Fatal(err)
			}
			if _, err := v.AddTPMSlot(fb, []byte("b2"), SealOptions{MaxTries: 3}, "b", true); err != nil {
				t.Fatal(err)
			}
			v.Wipe()

			// The sync service settles on one header and keeps the other
			// as a conflict copy, on both devices.
			hA, hB := readHeader(t, dirA), readHeader(t, dirB)
			kept, lost := hB, hA
			if !keepB {
				kept, lost = hA, hB
			}
			for _, d := range []string{dirA, dirB} {
				writeHeader(t, d, kept)
				installConflict(t, d, syncthingConflict, lost)
			}

			merged := map[string][]byte{}
			for _, dev := range []struct {
				state, dir, pw string
				f              *fakeTPM
			}{{stateA, dirA, "a2", fa}, {stateB, dirB, "b2", fb}} {
				device(t, dev.state)
				dev.f.unseals = 0
				v := loadVault(t, dev.dir)
				if err := v.CheckPins(""); err != nil {
					t.Fatalf("%s: CheckPins: %v", dev.pw, err)
				}
				if err := v.UnlockPassword(dev.f, []byte(dev.pw)); err != nil {
					t.Fatalf("%s: unlock after the conflict: %v", dev.pw, err)
				}
				if dev.f.unseals != 1 {
					t.Errorf("%s: %d tries, want exactly the right one", dev.pw, dev.f.unseals)
				}
				done, err := v.Repair()
				if err != nil || !slices.ContainsFunc(done, func(s string) bool { return strings.Contains(s, syncthingConflict) }) {
					t.Fatalf("%s: repair: %v, %v", dev.pw, done, err)
				}
				v.Wipe()
				if _, err := os.Stat(filepath.Join(dev.dir, syncthingConflict)); !os.IsNotExist(err) {
					t.Errorf("%s: the merged conflict copy is still there: %v", dev.pw, err)
				}
				merged[dev.pw] = readHeader(t, dev.dir)
				h, _ := crypto.ParseHeader(merged[dev.pw])
				var ids []string
				for _, s := range h.Slots {
					ids = append(ids, s.Label+"/"+s.Type)
				}
				if len(h.Slots) != 3 || len(h.Removed) != 1 {
					t.Fatalf("%s: merged header has slots %v, removed %v", dev.pw, ids, h.Removed)
				}
			}
			if !bytes.Equal(merged["a2"], merged["b2"]) {
				t.Error("the two devices merged to different headers")
			}
			// Settled: each device opens it again, with its own password only.
			for _, dev := range []struct {
				state, dir, pw, old string
				f                   *fakeTPM
			}{{stateA, dirA, "a2", "a1", fa}, {stateB, dirB, "b2", "b1", fb}} {
				device(t, dev.state)
				if err := loadVault(t, dev.dir).UnlockPassword(dev.f, []byte(dev.pw)); err != nil {
					t.Fatalf("%s after the merge: %v", dev.pw, err)
				}
				for _, nv := range dev.f.nv {
					if nv.count != 0 {
						t.Errorf("%s: a limited slot lost %d tries", dev.pw, nv.count)
					}
				}
			}
		})
	}
}

// Files that are not conflict copies of this vault's header are never
// read as vault state: sync housekeeping, temp files, another vault's
// header, garbage under a conflict name, and a conflict copy the key does
// not authenticate (left in place, not merged).
func TestConflictLookalikesIgnored(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	orig := readHeader(t, dir)
	otherDir, _, _ := newVault(t, newFakeTPM("srk-a"), "pw")
	forged, err := crypto.EditUnauthenticated(orig, func(h *crypto.Header) {
		h.Slots = append(h.Slots, crypto.Slot{ID: "recovery-x", Type: crypto.SlotRecovery,
			Salt: make([]byte, 16), Nonce: make([]byte, 12), Wrapped: make([]byte, 48)})
	})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		".syncthing.sealfs.vault.tmp":               orig,
		"~syncthing~sealfs.vault.tmp":               orig,
		"sealfs.vault.tmp-123":                      orig,
		"sealfs.vault.bak":                          orig,
		"sealfs (1).vault":                          []byte("garbage"),
		"sealfs (2).vault":                          readHeader(t, otherDir),
		"sealfs (conflicted copy 2026-12-02).vault": forged,
	}
	for name, b := range files {
		installConflict(t, dir, name, b)
	}
	v := loadVault(t, dir)
	if len(v.conflicts) != 1 || v.conflicts[0].name != "sealfs (conflicted copy 2026-12-02).vault" {
		var names []string
		for _, c := range v.conflicts {
			names = append(names, c.name)
		}
		t.Fatalf("read as conflict copies: %v", names)
	}
	if err := v.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Header.Slot("recovery-x"); ok {
		t.Fatal("an unauthenticated conflict copy was merged")
	}
	if done, err := v.Repair(); err != nil || len(done) != 0 {
		t.Fatalf("repair with nothing authentic to merge: %v, %v", done, err)
	}
	for name := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	if !bytes.Equal(readHeader(t, dir), orig) {
		t.Error("the header was rewritten")
	}
}
