package vault

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

func loadVault(t *testing.T, dir string) *Vault {
	t.Helper()
	v, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func ptr(n uint32) *uint32 { return &n }

// onlyNV returns the fake TPM's one NV index, failing unless there is
// exactly one: each step below must free what it replaced.
func onlyNV(t *testing.T, f *fakeTPM) uint32 {
	t.Helper()
	if len(f.nv) != 1 {
		t.Fatalf("%d NV indexes defined, want 1: %v", len(f.nv), f.nv)
	}
	for i := range f.nv {
		return i
	}
	return 0
}

func TestChangePasswordLimited(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, _, master := newVault(t, f, "one")

	// Turn the limit on: re-sealed, not re-keyed.
	if err := loadVault(t, dir).ChangePassword(f, []byte("one"), []byte("two"), PasswdOptions{MaxTries: ptr(3)}); err != nil {
		t.Fatal(err)
	}
	first := onlyNV(t, f)
	v := loadVault(t, dir)
	slot := v.TPMSlots(nil)[0]
	if slot.TPM.MaxTries != 3 || slot.TPM.NVIndex != first {
		t.Fatalf("slot after --max-tries 3: %+v", slot.TPM)
	}
	if err := v.UnlockPassword(f, []byte("one")); !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("old password: %v", err)
	}
	// A limited slot's password change keeps its limit, defines a new
	// index and frees the old one only after the header is saved.
	if err := loadVault(t, dir).ChangePassword(f, []byte("two"), []byte("three"), PasswdOptions{}); err != nil {
		t.Fatal(err)
	}
	second := onlyNV(t, f)
	v = loadVault(t, dir)
	if second == first || v.TPMSlots(nil)[0].TPM.MaxTries != 3 {
		t.Fatalf("passwd on a limited slot: index %#x (was %#x), %+v", second, first, v.TPMSlots(nil)[0].TPM)
	}
	if left, max, _ := f.TriesLeft(v.TPMSlots(nil)[0].TPM); left != 3 || max != 3 {
		t.Fatalf("new slot has %d of %d tries", left, max)
	}
	// Change N.
	if err := v.ChangePassword(f, []byte("three"), []byte("three"), PasswdOptions{MaxTries: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	onlyNV(t, f)
	// Turn it off: a plain slot, no NV index left.
	if err := loadVault(t, dir).ChangePassword(f, []byte("three"), []byte("four"), PasswdOptions{MaxTries: ptr(0)}); err != nil {
		t.Fatal(err)
	}
	if len(f.nv) != 0 {
		t.Fatalf("NV indexes left after --max-tries 0: %v", f.nv)
	}
	v = loadVault(t, dir)
	if Limited(v.TPMSlots(nil)[0].TPM) {
		t.Fatal("slot still limited after --max-tries 0")
	}
	if err := v.UnlockPassword(f, []byte("four")); err != nil || !bytes.Equal(v.MasterKey().Bytes(), master) {
		t.Fatalf("after the round trip: %v", err)
	}
	if err := v.ChangePassword(f, []byte("four"), []byte("x"), PasswdOptions{MaxTries: ptr(tpm.MaxTriesLimit + 1)}); err == nil {
		t.Fatal("accepted a limit above MaxTriesLimit")
	}
}

// If the header cannot be saved, the old slot stays and the new NV index
// is freed again: the vault keeps a working slot at every step.
func TestResealSaveFailureKeepsOldSlot(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, rk, _ := newVault(t, f, "pw")
	if err := loadVault(t, dir).ChangePassword(f, []byte("pw"), []byte("pw"), PasswdOptions{MaxTries: ptr(4)}); err != nil {
		t.Fatal(err)
	}
	old := onlyNV(t, f)
	stale := loadVault(t, dir)
	other := loadVault(t, dir)
	if err := other.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AddTPMSlot(newFakeTPM("srk-b"), []byte("b"), SealOptions{}, "b", false); err != nil {
		t.Fatal(err)
	}
	before := readHeader(t, dir)
	err := stale.ChangePassword(f, []byte("pw"), []byte("new"), PasswdOptions{})
	if !errors.Is(err, ErrHeaderChanged) {
		t.Fatalf("stale passwd: %v", err)
	}
	if onlyNV(t, f) != old || !bytes.Equal(before, readHeader(t, dir)) {
		t.Fatal("a failed re-seal changed the header or left its NV index")
	}
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatalf("old password after a failed re-seal: %v", err)
	}
}

func TestRecoverReplacesLimitedSlot(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir := t.TempDir()
	v, rk, err := Create(dir, nil, f, []byte("pw"), CreateOptions{Seal: SealOptions{MaxTries: 2}})
	if err != nil {
		t.Fatal(err)
	}
	v.Wipe()
	first := onlyNV(t, f)
	v = loadVault(t, dir)
	for range 2 {
		_ = v.UnlockPassword(f, []byte("guess"))
	}
	if err := v.UnlockPassword(f, []byte("pw")); !errors.Is(err, tpm.ErrTriesExhausted) || errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("right password on a used-up slot: %v", err)
	}
	if err := v.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddTPMSlot(f, []byte("fresh"), SealOptions{MaxTries: 2}, "", true); err != nil {
		t.Fatal(err)
	}
	if onlyNV(t, f) == first {
		t.Fatal("recover kept the used-up slot's NV index")
	}
	if err := loadVault(t, dir).UnlockPassword(f, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
}

// A used-up or vanished limited slot costs nothing to skip, so the next
// slot of the same TPM is tried; a wrong password still ends the attempt.
func TestUnlockSkipsUsedUpSlot(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir := t.TempDir()
	v, rk, err := Create(dir, nil, f, []byte("first"), CreateOptions{Seal: SealOptions{MaxTries: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddTPMSlot(f, []byte("second"), SealOptions{MaxTries: 3}, "", false); err != nil {
		t.Fatal(err)
	}
	v.Wipe()
	v = loadVault(t, dir)
	var te *tpm.TriesError
	if err := v.UnlockPassword(f, []byte("second")); !errors.As(err, &te) || te.Left != 0 {
		t.Fatalf("wrong password for the first slot: %v", err)
	}
	if err := v.UnlockPassword(f, []byte("second")); err != nil {
		t.Fatalf("second slot behind a used-up first one: %v", err)
	}
	second := v.UnlockedSlot()

	// Revoke: the header first, then the NV index, only on its own TPM.
	if err := v.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	removed, err := v.RemoveSlot(second, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := ReleaseSlot(newFakeTPM("srk-b"), removed); !errors.Is(err, ErrOtherMachine) {
		t.Fatalf("release on another TPM: %v", err)
	}
	if err := ReleaseSlot(f, removed); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.nv[removed.TPM.NVIndex]; ok {
		t.Fatal("revoked slot's NV index still defined")
	}
	rs, _ := v.RecoverySlot()
	if err := ReleaseSlot(f, rs); err != nil {
		t.Fatalf("release of a recovery slot: %v", err)
	}
	if s := v.TPMSlots(nil); len(s) != 1 || s[0].Type != crypto.SlotTPM {
		t.Fatalf("slots after revoke: %v", s)
	}
}

// failingSealer refuses to seal, as a TPM out of NV space would.
type failingSealer struct{ *fakeTPM }

func (failingSealer) Seal([]byte, []byte, SealOptions) (*crypto.TPMBlob, error) {
	return nil, errors.New("fake: TPM_RC_NV_SPACE")
}

func TestCreateSealFailureLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	if _, _, err := Create(dir, nil, failingSealer{newFakeTPM("srk-a")}, []byte("pw"), CreateOptions{Seal: SealOptions{MaxTries: 3}}); err == nil {
		t.Fatal("Create succeeded without a TPM slot")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed Create left %s behind: %v", dir, err)
	}
}
