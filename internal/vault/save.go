package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// Save authenticates and writes the header atomically (issue 2: temp file,
// fsync, rename, fsync of the directory), so a crash leaves either the old
// or the new header, never a torn one. It always writes the current format
// (2: two copies), which is how a format 1 vault is migrated. Concurrent
// sealfs commands serialise on an flock of the cipher directory, and a
// header that changed on disk since it was read is not overwritten
// (ErrHeaderChanged). The conflict copies merged into the header are
// removed once it is saved.
func (v *Vault) Save() error {
	if !v.Unlocked() {
		return ErrLocked
	}
	b, err := v.Header.Marshal(v.keys)
	if err != nil {
		return err
	}
	f, err := crypto.ParseHeaderFile(b)
	if err != nil {
		return fmt.Errorf("the header just encoded does not parse: %w", err)
	}
	d, err := os.Open(v.Dir)
	if err != nil {
		return fmt.Errorf("opening the cipher directory: %w", err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking the cipher directory: %w", err)
	}
	defer unix.Flock(int(d.Fd()), unix.LOCK_UN) //nolint:errcheck // closing the fd unlocks anyway
	cur, err := readHeaderFile(filepath.Join(v.Dir, crypto.HeaderFileName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if v.raw != nil {
			return ErrHeaderChanged
		}
	case err != nil:
		return fmt.Errorf("re-reading the vault header: %w", err)
	case v.raw == nil || !bytes.Equal(cur, v.raw):
		return ErrHeaderChanged
	}
	if err := writeFileAtomic(d, v.Dir, crypto.HeaderFileName, b); err != nil {
		return fmt.Errorf("writing the vault header: %w", err)
	}
	if v.Header.Version < crypto.FormatVersion && v.raw != nil {
		v.upgraded = true
	}
	v.raw, v.file, v.repairs = b, f, nil
	v.Header.Version = crypto.FormatVersion
	v.removeMerged()
	return nil
}

// FormatUpgraded reports whether this Vault's Save rewrote an older format
// of the header in the current one (the migration from format 1): sealfs
// versions that only know the older format refuse the vault from now on.
func (v *Vault) FormatUpgraded() bool { return v.upgraded }

// writeFileAtomic replaces dir/name with data through a temp file
// name.tmp-<random> in the same directory. The temp file never survives an
// error. d is the open directory, fsynced after the rename so the new
// directory entry is durable.
func writeFileAtomic(d *os.File, dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	// After the rename the temp name is gone; a failed directory fsync
	// leaves the new header in place but maybe not durable: report it.
	if serr := d.Sync(); serr != nil {
		return fmt.Errorf("fsync of %s: %w", dir, serr)
	}
	return nil
}
