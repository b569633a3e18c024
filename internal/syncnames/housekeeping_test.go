package syncnames

import (
	"strings"
	"testing"
)

func TestHousekeeping(t *testing.T) {
	v := newVault(t)
	x, _ := v.stored(t, "report.pdf")
	yes := []string{
		".stfolder", ".stignore", ".stversions", ".syncthing." + x + ".tmp", "~syncthing~" + x + ".tmp",
		".syncthing." + strings.Repeat("ab", 32) + ".tmp",
		".dropbox", ".dropbox.attr", ".dropbox.cache",
		".sync_4f2a1b9c0d1e.db", ".sync_4f2a1b9c0d1e.db-wal", ".sync_4f2a1b9c0d1e.db-shm", "._sync_4f2a1b.db",
		".csync_journal.db", ".csync_journal.db.ctmp", ".owncloudsync.log", ".owncloudsync.log.1",
		".nextcloudsync.log", ".nextcloudpermissions.log", ".sync-exclude.lst", "." + x + ".~1f3a9c",
		x + ".nextcloud", x + ".owncloud",
		".tmp.drivedownload", ".tmp.driveupload",
		".sync", x + ".!sync",
		x + ".a1b2c3d4.partial", x + ".partial",
		x + ".part", x + ".crdownload", x + ".filepart",
		".DS_Store", ".ds_store", "._" + x, "._.DS_Store", "Icon\r", ".Spotlight-V100", ".Trashes", ".fseventsd",
		".TemporaryItems", ".localized", ".com.apple.timemachine.supported", ".DocumentRevisions-V100", ".apdisk",
		"desktop.ini", "Desktop.ini", "DESKTOP.INI", "Thumbs.db", "thumbs.db", "$RECYCLE.BIN", "System Volume Information",
	}
	for _, n := range yes {
		if !Housekeeping(n) {
			t.Errorf("Housekeeping(%q) = false", n)
		}
		if IsStored(n) {
			t.Errorf("housekeeping name %q has a sealfs shape", n)
		}
	}
	no := []string{
		x, "sealfs.vault", "sealfs.dirid", "sealfs.ln." + strings.Repeat("A", 43), ".stfolder2", ".syncthing.tmp",
		"stfolder", ".sync_.d", ".dropboxx", "Icon", "report.pdf", x + " (1)", x + ".sync-conflict-20261202-130124-CAVCEQA",
		".x.~", ".x.~zz", ".partial", ".!sync", ".part", "",
	}
	for _, n := range no {
		if Housekeeping(n) {
			t.Errorf("Housekeeping(%q) = true", n)
		}
	}
}

func TestInProgress(t *testing.T) {
	v := newVault(t)
	x, _ := v.stored(t, "report.pdf")
	long, _ := v.stored(t, strings.Repeat("L", 200))
	side := long + ".name"
	for name, want := range map[string]Partial{
		".syncthing." + x + ".tmp":                        {Service: Syncthing, Of: x},
		"~syncthing~" + x + ".tmp":                        {Service: Syncthing, Of: x},
		".syncthing." + side + ".tmp":                     {Service: Syncthing, Of: side},
		".syncthing.sealfs.vault.tmp":                     {Service: Syncthing, Of: "sealfs.vault"},
		".syncthing." + strings.Repeat("0f", 32) + ".tmp": {Service: Syncthing}, // hashed: > 145 bytes
		"." + x + ".~1f3a9c":                              {Service: Nextcloud, Of: x},
		".sealfs.dirid.~ab":                               {Service: Nextcloud, Of: "sealfs.dirid"},
		x + ".nextcloud":                                  {Service: Nextcloud, Of: x, Placeholder: true},
		x + ".0a1b2c3d.partial":                           {Service: Rclone, Of: x},
		long + ".partial":                                 {Service: Rclone, Of: long},
		x + ".!sync":                                      {Service: Resilio, Of: x},
		x + ".crdownload":                                 {Service: Browser, Of: x},
		"movie.mp4.part":                                  {Service: Browser},
	} {
		got, ok := InProgress(name)
		if !ok || got != want {
			t.Errorf("InProgress(%q) = %+v, %v; want %+v", name, got, ok, want)
		}
	}
	for _, name := range []string{x, ".stfolder", "desktop.ini", x + " (1)", "sealfs.vault.tmp-1", ".tmp.drivedownload"} {
		if p, ok := InProgress(name); ok {
			t.Errorf("InProgress(%q) = %+v", name, p)
		}
	}
}
