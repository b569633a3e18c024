package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The workflow sealfs exists for, with the real tools: back up into the
// mount, unmount, remount, let the tool verify itself, restore, compare
// byte for byte; then restore on a new device with the recovery key.

// backupTool drives one backup program. Paths: srcs are absolute source
// trees, repo is the tool's directory inside the mount, dest a plain restore
// directory. restoredRoot tells where src ended up under dest.
type backupTool struct {
	name         string
	bin          string
	backup       func(t *testing.T, env []string, repo string, srcs []string)
	verify       func(t *testing.T, env []string, repo string, srcs []string)
	restore      func(t *testing.T, env []string, repo, dest string)
	restoredRoot func(dest, src string) string
	cmp          compareOpts
}

func runTool(t *testing.T, env []string, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	t.Logf("%s %s (%.1fs)", name, strings.Join(args, " "), time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr.String())
	}
	return string(out)
}

var backupTools = []backupTool{
	{
		name: "restic", bin: "restic",
		backup: func(t *testing.T, env []string, repo string, srcs []string) {
			if _, err := os.Stat(filepath.Join(repo, "config")); err != nil {
				runTool(t, env, "", "restic", "-r", repo, "init")
			}
			runTool(t, env, "", "restic", append([]string{"-r", repo, "backup", "-q"}, srcs...)...)
		},
		verify: func(t *testing.T, env []string, repo string, _ []string) {
			runTool(t, env, "", "restic", "-r", repo, "check", "--read-data")
		},
		restore: func(t *testing.T, env []string, repo, dest string) {
			runTool(t, env, "", "restic", "-r", repo, "restore", "latest", "--target", dest)
		},
		restoredRoot: func(dest, src string) string { return filepath.Join(dest, src) },
		cmp:          compareOpts{},
	},
	{
		name: "borg", bin: "borg",
		backup: func(t *testing.T, env []string, repo string, srcs []string) {
			if _, err := os.Stat(filepath.Join(repo, "config")); err != nil {
				runTool(t, env, "", "borg", "init", "--encryption=none", repo)
			}
			archive := repo + "::" + time.Now().Format("20060102-150405.000")
			runTool(t, env, "", "borg", append([]string{"create", "--sparse", archive}, srcs...)...)
		},
		verify: func(t *testing.T, env []string, repo string, _ []string) {
			runTool(t, env, "", "borg", "check", "--verify-data", repo)
		},
		restore: func(t *testing.T, env []string, repo, dest string) {
			last := strings.TrimSpace(runTool(t, env, "", "borg", "list", "--last", "1", "--short", repo))
			runTool(t, env, dest, "borg", "extract", "--sparse", repo+"::"+last)
		},
		restoredRoot: func(dest, src string) string { return filepath.Join(dest, src) },
		cmp:          compareOpts{symlinkTimes: true},
	},
	{
		name: "rsync", bin: "rsync",
		backup: func(t *testing.T, env []string, repo string, srcs []string) {
			runTool(t, env, "", "rsync", append(append([]string{"-aHAX"}, srcs...), repo+"/")...)
		},
		verify: func(t *testing.T, env []string, repo string, srcs []string) {
			// rsync's own check: a checksum dry run must find nothing to do.
			out := runTool(t, env, "", "rsync", append(append([]string{"-aHAXn", "--checksum", "--itemize-changes"}, srcs...), repo+"/")...)
			if strings.TrimSpace(out) != "" {
				t.Errorf("rsync --checksum finds differences after remount:\n%.2000s", out)
			}
		},
		restore: func(t *testing.T, env []string, repo, dest string) {
			runTool(t, env, "", "rsync", "-aHAX", repo+"/", dest+"/")
		},
		restoredRoot: func(dest, src string) string { return filepath.Join(dest, filepath.Base(src)) },
		cmp:          compareOpts{symlinkTimes: true},
	},
	{
		name: "tar", bin: "tar",
		backup: func(t *testing.T, env []string, repo string, srcs []string) {
			if err := os.MkdirAll(repo, 0o700); err != nil {
				t.Fatal(err)
			}
			args := []string{"--format=posix", "--xattrs", "--xattrs-include=user.*", "--sparse", "-cpf", filepath.Join(repo, "backup.tar")}
			for _, s := range srcs {
				args = append(args, "-C", filepath.Dir(s), filepath.Base(s))
			}
			runTool(t, env, "", "tar", args...)
		},
		verify: func(t *testing.T, env []string, repo string, srcs []string) {
			// tar's own check: compare the archive against the sources.
			args := []string{"--xattrs", "--xattrs-include=user.*", "-df", filepath.Join(repo, "backup.tar")}
			for _, s := range srcs {
				args = append(args, "-C", filepath.Dir(s), filepath.Base(s))
			}
			runTool(t, env, "", "tar", args...)
		},
		restore: func(t *testing.T, env []string, repo, dest string) {
			runTool(t, env, "", "tar", "--xattrs", "--xattrs-include=user.*", "-xpf", filepath.Join(repo, "backup.tar"), "-C", dest)
		},
		restoredRoot: func(dest, src string) string { return filepath.Join(dest, filepath.Base(src)) },
		cmp:          compareOpts{symlinkTimes: true},
	},
}

// toolEnv isolates the tools' caches and security state in the test's dir.
func toolEnv(base string) []string {
	return []string{
		"RESTIC_PASSWORD=restic-repo-password", "RESTIC_CACHE_DIR=" + filepath.Join(base, "restic-cache"),
		"BORG_BASE_DIR=" + filepath.Join(base, "borg-base"),
		"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes",
		"HOME=" + base,
	}
}

func requireTools(t *testing.T) {
	for _, tool := range backupTools {
		if _, err := exec.LookPath(tool.bin); err != nil {
			t.Fatalf("%s is not installed (tests/install-deps installs it): %v", tool.bin, err)
		}
	}
	if _, err := os.Stat(goSrc); err != nil {
		t.Fatalf("Go's source tree: %v", err)
	}
}

// restoreAndCompare restores each tool's backup from repoRoot/<tool> and
// compares it with the sources, deleting each restore once compared so the
// disk holds one at a time.
func restoreAndCompare(t *testing.T, env []string, repoRoot, scratch string, srcs []string, verify bool) {
	t.Helper()
	for _, tool := range backupTools {
		t.Run(tool.name, func(t *testing.T) {
			repo := filepath.Join(repoRoot, tool.name)
			if verify {
				tool.verify(t, env, repo, srcs)
			}
			dest := filepath.Join(scratch, "restore-"+tool.name)
			if err := os.MkdirAll(dest, 0o700); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dest)
			tool.restore(t, env, repo, dest)
			for _, s := range srcs {
				compareTrees(t, s, tool.restoredRoot(dest, s), tool.cmp)
			}
		})
	}
}

func TestBackupToolsEndToEnd(t *testing.T) {
	requireFUSE(t)
	requireTools(t)
	a := newCLIEnv(t, defaultDA)
	pw := a.secretFile("pw", "nightly backups 2026")
	rk := a.initVault(pw)
	scratch := t.TempDir()
	edge := buildEdgeTree(t, filepath.Join(scratch, "edge"))
	srcs := []string{goSrc, edge}
	env := toolEnv(scratch)

	// 1. Back up with every tool into one mount.
	a.mustRun("mount", "--password-file", pw, a.cipher, a.mnt)
	for _, tool := range backupTools {
		t.Run("backup/"+tool.name, func(t *testing.T) { tool.backup(t, env, filepath.Join(a.mnt, tool.name), srcs) })
	}
	a.mustRun("unmount", a.mnt)
	if t.Failed() {
		t.FailNow()
	}

	// 2. A mount, a full listing and an unmount change nothing a sync client sees.
	before := snapshotByInode(t, a.cipher, true)
	a.mustRun("mount", "--password-file", pw, a.cipher, a.mnt)
	runTool(t, nil, "", "sh", "-c", "ls -lR "+a.mnt+" >/dev/null")
	a.mustRun("unmount", a.mnt)
	if after := snapshotByInode(t, a.cipher, true); !sameSnapshots(before, after) {
		t.Error("mount + ls -lR + unmount changed the cipher folder")
	}

	// 3. Remount, let each tool verify itself, restore, compare.
	a.mustRun("mount", "--password-file", pw, a.cipher, a.mnt)
	t.Run("restore-A", func(t *testing.T) { restoreAndCompare(t, env, a.mnt, scratch, srcs, true) })

	// 4. Incremental friendliness: change a few source files, back up again
	// (tar writes a whole new archive, the others only what changed); only
	// cipher files behind plaintext files the tools changed may change.
	a.mustRun("unmount", a.mnt)
	cipherBefore := snapshotByInode(t, a.cipher, true)
	a.mustRun("mount", "--password-file", pw, a.cipher, a.mnt)
	plainBefore := snapshotByInode(t, a.mnt, false)
	mustWrite(t, filepath.Join(edge, "blocks/one-block-plus-1"), []byte("changed since the first backup"))
	mustWrite(t, filepath.Join(edge, "new-file"), []byte("new since the first backup"))
	for _, tool := range backupTools {
		tool.backup(t, env, filepath.Join(a.mnt, tool.name), srcs)
	}
	plainAfter := snapshotByInode(t, a.mnt, false)
	a.mustRun("unmount", a.mnt)
	cipherAfter := snapshotByInode(t, a.cipher, true)
	checkIncremental(t, cipherBefore, cipherAfter, plainBefore, plainAfter)

	// 5. New device: copy the cloud folder, another TPM, recover with the
	// key printed at init, mount, restore with each tool, compare.
	b := newCLIEnv(t, defaultDA)
	// cp -a keeps symlinks (encrypted targets) and the user.sealfs.* xattrs,
	// as a sync client that carries xattrs would.
	runTool(t, nil, "", "cp", "-a", a.cipher, b.cipher)
	pwB := b.secretFile("pwB", "device B password")
	rkFile := b.secretFile("rk", rk)
	b.secrets = append(b.secrets, "nightly backups 2026")
	b.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", pwB, b.cipher)
	b.mustRun("mount", "--password-file", pwB, b.cipher, b.mnt)
	t.Run("restore-B", func(t *testing.T) { restoreAndCompare(t, env, b.mnt, scratch, srcs, false) })
	b.mustRun("unmount", b.mnt)

	// 6. Without FUSE: extract the rsync tree with `sealfs extract` and
	// compare; then damage one block of one cipher file: fsck must name that
	// file and block, and nothing else (which also shows the rest is intact).
	t.Run("extract-and-fsck", func(t *testing.T) {
		dest := filepath.Join(scratch, "extract")
		defer os.RemoveAll(dest)
		b.mustRun("extract", "--password-file", pwB, b.cipher, dest, "rsync")
		for _, s := range srcs {
			compareTrees(t, s, filepath.Join(dest, "rsync", filepath.Base(s)), compareOpts{symlinkTimes: true})
		}
		victim := largestFile(t, filepath.Join(b.cipher))
		f, err := os.OpenFile(victim, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("tampered"), 100000); err != nil {
			t.Fatal(err)
		}
		f.Close()
		r := b.run("fsck", "--password-file", pwB, b.cipher)
		wantExit(t, r, 4, "fsck: 1 problem found")
		if !strings.Contains(r.stdout, "(stored as "+victim+")") || !strings.Contains(r.stdout, "  tampered: ") ||
			!strings.Contains(r.stdout, "block 3 ") {
			t.Errorf("fsck did not name the damaged file and block:\n%s", r.stdout)
		}
	})
}

// largestFile returns the biggest regular file under dir.
func largestFile(t *testing.T, dir string) string {
	t.Helper()
	var best string
	var size int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return err
	})
	if err != nil || best == "" {
		t.Fatalf("no file under %s: %v", dir, err)
	}
	return best
}

func sameSnapshots(a, b map[uint64]fileState) bool {
	if len(a) != len(b) {
		return false
	}
	for ino, s := range a {
		if b[ino] != s {
			return false
		}
	}
	return true
}

// checkIncremental: every cipher file that existed before and changed
// (content or mtime) must sit behind a plaintext file that changed too; and
// no more cipher files changed than plaintext files did.
func checkIncremental(t *testing.T, cBefore, cAfter, pBefore, pAfter map[uint64]fileState) {
	t.Helper()
	changedPlain := 0
	for ino, s := range pAfter {
		if old, ok := pBefore[ino]; !ok || old != s {
			changedPlain++
		}
	}
	changedCipher, unjustified := 0, 0
	for ino, s := range cAfter {
		old, ok := cBefore[ino]
		if !ok || old == s {
			continue
		}
		changedCipher++
		pOld, okOld := pBefore[ino]
		pNew, okNew := pAfter[ino]
		if okOld && okNew && pOld == pNew {
			unjustified++
			if unjustified <= 10 {
				t.Errorf("cipher file (inode %d) changed although its plaintext did not", ino)
			}
		}
	}
	added := 0
	for ino := range cAfter {
		if _, ok := cBefore[ino]; !ok {
			added++
		}
	}
	t.Logf("second run: %d plaintext files changed or new; %d cipher files rewritten, %d new, of %d",
		changedPlain, changedCipher, added, len(cAfter))
	if changedCipher+added > changedPlain+4 { // the dirid files of new directories are the only extras
		t.Errorf("%d cipher files changed or appeared for %d changed plaintext files", changedCipher+added, changedPlain)
	}
}
