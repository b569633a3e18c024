package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/syncnames"
)

// checkInitDir refuses to make a vault in a folder that holds anything but a
// sync service's own files (.stfolder, .dropbox, desktop.ini…; see
// internal/syncnames): the mount would hide those files, and fsck would call
// them tampered. It runs before the TPM is opened or a password asked for.
func checkInitDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // init creates it
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	var foreign []string
	for _, e := range ents {
		switch {
		case e.Name() == crypto.HeaderFileName:
			return fmt.Errorf("%s already holds a sealfs vault (%s)", dir, crypto.HeaderFileName)
		case syncnames.Housekeeping(e.Name()):
		default:
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) == 0 {
		return nil
	}
	sort.Strings(foreign)
	shown := foreign
	if len(shown) > 3 {
		shown = append(shown[:3:3], "…")
	}
	return fmt.Errorf("%s is not empty (%d entries: %s): a vault needs a folder of its own, where the mount would "+
		"otherwise hide these files; create the vault in a new subfolder, e.g. `sealfs init %s`",
		dir, len(foreign), strings.Join(shown, ", "), filepath.Join(dir, "vault"))
}
