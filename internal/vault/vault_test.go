package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// fakeTPM seals in memory: enough to test the vault's slot logic without a
// TPM (the real TPM paths are covered in tests/ against swtpm). Limited
// slots get a fake NV index that counts failures like a PIN-fail index.
type fakeTPM struct {
	srk     []byte
	objects map[string][2][]byte // private → {authValue, secret}
	nv      map[uint32]*fakeNV
	lastNV  uint32
	// calls counts every call that reaches the "TPM": a slot refused by
	// this machine's pin must not make one. unseals counts the password
	// tries among them.
	calls, unseals int
}

type fakeNV struct{ count, limit uint32 }

func newFakeTPM(name string) *fakeTPM {
	return &fakeTPM{srk: []byte(name), objects: map[string][2][]byte{}, nv: map[uint32]*fakeNV{}, lastNV: 0x01800000}
}

func (f *fakeTPM) SRKName() ([]byte, error) { f.calls++; return f.srk, nil }

func (f *fakeTPM) Seal(secret, auth []byte, opts SealOptions) (*crypto.TPMBlob, error) {
	priv := make([]byte, 16)
	_, _ = rand.Read(priv)
	f.objects[string(priv)] = [2][]byte{bytes.Clone(auth), bytes.Clone(secret)}
	b := &crypto.TPMBlob{Public: []byte("pub"), Private: priv, SRKName: f.srk, PCRs: opts.PCRs}
	if opts.MaxTries > 0 {
		f.lastNV++
		f.nv[f.lastNV] = &fakeNV{limit: opts.MaxTries}
		b.NVIndex, b.NVName, b.MaxTries = f.lastNV, []byte("nv"), opts.MaxTries
	}
	return b, nil
}

func (f *fakeTPM) Unseal(b *crypto.TPMBlob, auth []byte) ([]byte, error) {
	f.calls++
	f.unseals++
	o, ok := f.objects[string(b.Private)]
	if !ok || !bytes.Equal(b.SRKName, f.srk) {
		return nil, tpm.ErrWrongTPM
	}
	if !Limited(b) {
		if !bytes.Equal(o[0], auth) {
			return nil, &tpm.AuthError{TriesLeft: 2}
		}
		return bytes.Clone(o[1]), nil
	}
	nv, ok := f.nv[b.NVIndex]
	switch {
	case !ok:
		return nil, tpm.ErrSlotGone
	case nv.count >= nv.limit:
		return nil, tpm.ErrTriesExhausted
	case !bytes.Equal(o[0], auth):
		nv.count++
		return nil, &tpm.TriesError{Left: int(nv.limit - nv.count), Max: int(nv.limit)}
	}
	nv.count = 0
	return bytes.Clone(o[1]), nil
}

func (f *fakeTPM) Delete(b *crypto.TPMBlob) error {
	delete(f.nv, b.NVIndex)
	return nil
}

func (f *fakeTPM) TriesLeft(b *crypto.TPMBlob) (int, int, error) {
	nv, ok := f.nv[b.NVIndex]
	if !ok {
		return 0, 0, tpm.ErrSlotGone
	}
	return int(nv.limit - min(nv.count, nv.limit)), int(nv.limit), nil
}

func newVault(t *testing.T, s Sealer, password string) (string, crypto.RecoveryKey, []byte) {
	t.Helper()
	dir := t.TempDir()
	v, rk, err := Create(dir, nil, s, []byte(password), CreateOptions{Label: "test"})
	if err != nil {
		t.Fatal(err)
	}
	master := bytes.Clone(v.MasterKey().Bytes())
	v.Wipe()
	return dir, rk, master
}

func readHeader(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, crypto.HeaderFileName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCreateLoadUnlock(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, _, master := newVault(t, f, "hunter2")
	v, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(v.Header.Slots); n != 2 {
		t.Fatalf("%d slots, want a TPM slot and a recovery slot", n)
	}
	before := readHeader(t, dir)
	err = v.UnlockPassword(f, []byte("wrong"))
	if !errors.Is(err, tpm.ErrWrongPassword) || v.Unlocked() {
		t.Fatalf("wrong password: err=%v unlocked=%v", err, v.Unlocked())
	}
	if !bytes.Equal(before, readHeader(t, dir)) {
		t.Fatal("a failed unlock changed the header")
	}
	if err := v.UnlockPassword(f, []byte("hunter2")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.MasterKey().Bytes(), master) {
		t.Fatal("unlocked a different master key")
	}
	v.Wipe()
	if v.Unlocked() || v.MasterKey() != nil {
		t.Fatal("Wipe left the vault unlocked")
	}
}

func TestCreateRefusesExistingVault(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	if _, _, err := Create(dir, nil, f, []byte("pw"), CreateOptions{}); err == nil {
		t.Fatal("Create overwrote an existing vault")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir, nil)
	if !errors.Is(err, ErrNotVault) || !strings.Contains(err.Error(), "no sealfs.vault in "+dir) {
		t.Fatalf("missing header: %v", err)
	}
	f := newFakeTPM("srk-a")
	dir, _, _ = newVault(t, f, "pw")
	b := readHeader(t, dir)
	binary.BigEndian.PutUint16(b[8:], crypto.FormatVersion+1) // both copies
	binary.BigEndian.PutUint16(b[len(b)/2+8:], crypto.FormatVersion+1)
	if err := os.WriteFile(filepath.Join(dir, crypto.HeaderFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	var nv *crypto.NewerVersionError
	if _, err := Load(dir, nil); !errors.As(err, &nv) {
		t.Fatalf("newer version: %v", err)
	}
	binary.BigEndian.PutUint16(b[8:], crypto.FormatVersion)
	if err := os.WriteFile(filepath.Join(dir, crypto.HeaderFileName), b[:20], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, nil); !errors.Is(err, crypto.ErrHeaderFormat) {
		t.Fatalf("truncated header: %v", err)
	}
}

func TestTamperedHeaderRefused(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, rk, _ := newVault(t, f, "pw")
	// An edit with the checksums made anew (they are unkeyed): parses
	// fine, fails only once the key is known.
	editHeader(t, dir, func(h *crypto.Header) { h.Created = h.Created.Add(time.Hour) })
	v, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, unlock := range map[string]func() error{
		"password": func() error { return v.UnlockPassword(f, []byte("pw")) },
		"recovery": func() error { return v.UnlockRecovery(rk) },
	} {
		err := unlock()
		if !errors.Is(err, crypto.ErrHeaderMAC) || !strings.Contains(err.Error(), "vault header was modified") || v.Unlocked() {
			t.Errorf("%s: err=%v unlocked=%v", name, err, v.Unlocked())
		}
	}
}

func TestRecoveryUnlock(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, rk, master := newVault(t, f, "pw")
	v, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := crypto.NewRecoveryKey()
	if err := v.UnlockRecovery(other); !errors.Is(err, crypto.ErrWrongRecoveryKey) {
		t.Fatalf("wrong recovery key: %v", err)
	}
	if err := v.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.MasterKey().Bytes(), master) {
		t.Fatal("recovery opened a different master key")
	}

	// recover on another machine: a fresh slot there replaces nothing here.
	g := newFakeTPM("srk-b")
	if _, err := v.AddTPMSlot(g, []byte("new"), SealOptions{}, "b", true); err != nil {
		t.Fatal(err)
	}
	v2, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.UnlockPassword(g, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := v2.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatalf("first machine's slot lost: %v", err)
	}
	if n := len(v2.TPMSlots(nil)); n != 2 {
		t.Fatalf("%d TPM slots, want 2", n)
	}
	// recover again on machine b replaces b's slot.
	if _, err := v2.AddTPMSlot(g, []byte("newer"), SealOptions{}, "b", true); err != nil {
		t.Fatal(err)
	}
	if n := len(v2.TPMSlots(g.srk)); n != 1 {
		t.Fatalf("%d slots for machine b after replace, want 1", n)
	}
}

func TestOtherMachine(t *testing.T) {
	dir, _, _ := newVault(t, newFakeTPM("srk-a"), "pw")
	v, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = v.UnlockPassword(newFakeTPM("srk-b"), []byte("pw"))
	if !errors.Is(err, tpm.ErrWrongTPM) || !strings.Contains(err.Error(), "belongs to another machine") {
		t.Fatalf("got %v", err)
	}
}

func TestChangePassword(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, _, master := newVault(t, f, "old")
	v, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.ChangePassword(f, []byte("old"), []byte("new"), PasswdOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err = Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.UnlockPassword(f, []byte("old")); !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("old password: %v", err)
	}
	if err := v.UnlockPassword(f, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.MasterKey().Bytes(), master) {
		t.Fatal("passwd changed the master key")
	}
}

func TestRemoveSlotRules(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, rk, _ := newVault(t, f, "pw")
	v, _ := Load(dir, nil)
	if _, err := v.RemoveSlot("x", false); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked: %v", err)
	}
	if err := v.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	rs, _ := v.RecoverySlot()
	if _, err := v.RemoveSlot(rs.ID, false); !errors.Is(err, ErrRecoverySlot) {
		t.Fatalf("recovery slot without force: %v", err)
	}
	if _, err := v.RemoveSlot(v.TPMSlots(nil)[0].ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := v.RemoveSlot(rs.ID, true); !errors.Is(err, ErrLastSlot) {
		t.Fatalf("last slot: %v", err)
	}
}

func TestSaveRefusesConcurrentChange(t *testing.T) {
	f := newFakeTPM("srk-a")
	dir, rk, _ := newVault(t, f, "pw")
	a, _ := Load(dir, nil)
	b, _ := Load(dir, nil)
	for _, v := range []*Vault{a, b} {
		if err := v.UnlockRecovery(rk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.AddTPMSlot(newFakeTPM("srk-b"), []byte("x"), SealOptions{}, "", false); err != nil {
		t.Fatal(err)
	}
	before := readHeader(t, dir)
	if _, err := b.AddTPMSlot(newFakeTPM("srk-c"), []byte("y"), SealOptions{}, "", false); !errors.Is(err, ErrHeaderChanged) {
		t.Fatalf("stale write: %v", err)
	}
	if !bytes.Equal(before, readHeader(t, dir)) {
		t.Fatal("a refused save changed the header")
	}
	assertNoTemp(t, dir)
}

func TestWriteFileAtomicLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory under the target name makes the rename fail
	// after the temp file was written and fsynced.
	if err := os.MkdirAll(filepath.Join(dir, "target", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := writeFileAtomic(d, dir, "target", []byte("data")); err == nil {
		t.Fatal("rename over a directory succeeded")
	}
	assertNoTemp(t, dir)

	if err := writeFileAtomic(d, dir, "file", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(d, dir, "file", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "file")); string(b) != "two" {
		t.Fatalf("file holds %q", b)
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	if len(m) > 0 {
		t.Fatalf("temp files left behind: %v", m)
	}
}

// The cipher folder is untrusted, and some sync services (Syncthing) carry
// symlinks and special files: a sealfs.vault that is a FIFO or a symlink to
// /dev/zero must be refused with an error, not hang or eat memory.
func TestLoadRefusesNonRegularHeader(t *testing.T) {
	for name, mk := range map[string]func(p string) error{
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"/dev/zero": func(p string) error { return os.Symlink("/dev/zero", p) },
	} {
		dir := t.TempDir()
		if err := mk(filepath.Join(dir, crypto.HeaderFileName)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := Load(dir, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: got %v, want a 'not a regular file' error", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Load still reading after 5s", name)
		}
	}
}
