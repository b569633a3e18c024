package main

import (
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sealfs/sealfs/fs"
	"github.com/sealfs/sealfs/internal/vault"
)

// vaultInUse reports a sealfs mount of cipherDir already visible on this
// machine, so that `mount` refuses before it asks for a password; the mount
// itself holds the race-free lock (fs.Mount).
func vaultInUse(cipherDir string) error {
	if mp, ok := fs.MountedAt(cipherDir); ok {
		return &fs.InUseError{CipherDir: cipherDir, Mountpoint: mp}
	}
	return nil
}

// mountFS mounts the unlocked vault; the one place that knows the fs package.
func mountFS(mountpoint string, v *vault.Vault, log *slog.Logger, o mountOptions) (mountedFS, error) {
	// The directory IDs this machine has read, kept next to the pins
	// (fs.Options.IDRecord); without a state directory, none are kept.
	var record string
	if ps, err := vault.DefaultPinStore(); err == nil {
		record = filepath.Join(ps.Dir, "dirids", hex.EncodeToString(v.Header.VaultID))
	}
	return fs.Mount(mountpoint, fs.Options{
		IDRecord:   record,
		CipherDir:  v.Dir,
		Keys:       v.Keys(),
		Log:        log,
		ReadOnly:   o.readOnly,
		AllowOther: o.allowOther,
		Debug:      o.debug,
		// The daemon serves this one mount; $GOMAXPROCS, when set, wins.
		TuneProcs: os.Getenv("GOMAXPROCS") == "",
	})
}
