package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCLIMountSafetyAndListing: a non-empty mountpoint is refused unless
// --nonempty; a mount says in one line where it is, how to unmount it and
// where its log is; status and `sealfs mounts` show it; --idle 15 means 15
// minutes.
func TestCLIMountSafetyAndListing(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "mount-safety-pw")
	e.initVault(pw)

	mustWrite(t, filepath.Join(e.mnt, "hidden.txt"), []byte("mine"))
	wantExit(t, e.run("mount", "--password-file", pw, e.cipher, e.mnt), 1,
		"mountpoint "+e.mnt+" is not empty (hidden.txt): the mount would hide what is there")
	if isMounted(e.mnt) {
		t.Fatal("mounted over a non-empty folder")
	}
	r := e.mustRun("mount", "--nonempty", "--idle", "15", "--password-file", pw, e.cipher, e.mnt)
	if _, err := os.Stat(filepath.Join(e.mnt, "hidden.txt")); !os.IsNotExist(err) {
		t.Errorf("the mount does not cover the folder: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "Mounted "+e.cipher+" at "+e.mnt+". Unmount with `sealfs unmount "+e.mnt+"`; log: "+e.runtime) {
		t.Errorf("the mount's message is not the one line wanted: %q", r.stdout)
	}
	logPath := lines[0][strings.LastIndex(lines[0], " ")+1:]
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "idle=15m0s") {
		t.Errorf("--idle 15 is not 15 minutes in the daemon's log %s (%v):\n%s", logPath, err, b)
	}
	st := e.mustRun("status", e.cipher)
	if !strings.Contains(st.stdout, "mounted:  at "+e.mnt+" (unmount: sealfs unmount "+e.mnt+"); log "+logPath) {
		t.Errorf("status does not say where the vault is mounted:\n%s", st.stdout)
	}
	lr := e.mustRun("mounts", "--json")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(lr.stdout), &raw); err != nil {
		t.Fatalf("mounts --json: %v\n%s", err, lr.stdout)
	}
	found := false
	for _, m := range raw {
		if m["mountpoint"] == e.mnt {
			found = m["cipher_dir"] == e.cipher && m["daemon"] == "ok" && m["log"] == logPath && m["read_only"] == false
		}
	}
	if !found {
		t.Errorf("mounts --json does not list the mount as wanted:\n%s", lr.stdout)
	}
	if out := e.mustRun("mounts").stdout; !strings.Contains(out, e.mnt) || !strings.Contains(out, "running") {
		t.Errorf("mounts:\n%s", out)
	}
	u := e.mustRun("unmount", e.mnt)
	if u.stdout != "Unmounted "+e.mnt+"; the vault's key is wiped from memory.\n" {
		t.Errorf("unmount says %q", u.stdout)
	}
	if st := e.mustRun("status", "--json", e.cipher); strings.Contains(st.stdout, `"mount"`) {
		t.Errorf("status --json still shows a mount:\n%s", st.stdout)
	}
	if b, err := os.ReadFile(filepath.Join(e.mnt, "hidden.txt")); err != nil || string(b) != "mine" {
		t.Errorf("the file under the mount: %q, %v", b, err)
	}
}

// TestCLIMountHelperAndFstab mounts through mount(8): `mount -t
// fuse.sealfs` and an fstab line (noauto, nofail, x-systemd.automount
// respected), which run `sealfs CIPHERDIR MOUNTPOINT -o OPTIONS` through
// mount.fuse3 with the PATH mount(8) gives its helpers (none: sh's default,
// so sealfs must be in /usr/local/bin or /usr/bin). The test runs in a mount
// namespace of its own, where a directory holding the test binary is bound
// over /usr/local/bin and a copy of /etc/fstab with the vault's line over
// /etc/fstab: the real fstab and /usr/local/bin are never written, whatever
// happens to the test. Also mount.fuse.sealfs as argv[0], which mount(8)
// runs directly when it is installed in /sbin.
func TestCLIMountHelperAndFstab(t *testing.T) {
	requireFUSE(t)
	for _, tool := range []string{"mount", "umount", "mount.fuse3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux, fuse3)", tool)
		}
	}
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "fstab-pw")
	e.initVault(pw)
	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	mustWrite(t, filepath.Join(e.mnt, "doc.txt"), []byte("through fstab"))
	e.mustRun("unmount", e.mnt)

	bin := filepath.Join(e.base, "bin")
	os.Mkdir(bin, 0o755)
	if err := os.Symlink(sealfsBin, filepath.Join(bin, "sealfs")); err != nil {
		t.Fatal(err)
	}
	fstabBefore := fileSum(t, "/etc/fstab")
	orig, err := os.ReadFile("/etc/fstab")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=10min,_netdev,passfile=%s,tpm=%s,idle=20", pw, e.tpm.spec)
	fstab := filepath.Join(e.base, "fstab")
	line := fmt.Sprintf("%s %s fuse.sealfs %s 0 0\n", e.cipher, e.mnt, opts)
	if err := os.WriteFile(fstab, append(orig, line...), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `set -u
mount --bind "$BIN" /usr/local/bin || exit 90
mount --bind "$FSTAB" /etc/fstab || exit 91
check() { if [ "$1" != "$2" ]; then echo "FAIL: $3: got [$1], want [$2]"; fi; }
mount -a; check "$?" 0 "mount -a"
grep -q " $MNT fuse.sealfs " /proc/self/mountinfo && echo "FAIL: mount -a mounted a noauto line"
mount "$MNT"; check "$?" 0 "mount MNT (fstab)"
check "$(cat "$MNT/doc.txt")" "through fstab" "read through the fstab mount"
grep -q "idle=20m0s" "$XDG_RUNTIME_DIR"/sealfs/*.log || echo "FAIL: idle=20 is not 20 minutes"
umount "$MNT"; check "$?" 0 "umount"
mount -t fuse.sealfs -o "ro,allow_other,passfile=$PW,tpm=$TPM" "$CIPHER" "$MNT"; check "$?" 0 "mount -t fuse.sealfs"
check "$(cat "$MNT/doc.txt")" "through fstab" "read through mount -t"
( echo x > "$MNT/new.txt" ) 2>/dev/null && echo "FAIL: wrote to a ro mount"
grep " $MNT " /proc/self/mountinfo | grep -q "allow_other" || echo "FAIL: allow_other missing: $(grep " $MNT " /proc/self/mountinfo)"
sealfs mounts | grep -q "^$MNT .* ro " || echo "FAIL: sealfs mounts: $(sealfs mounts)"
umount "$MNT"; check "$?" 0 "umount after mount -t"
mount -t fuse.sealfs -o "passfile=$PW,tpm=$TPM,frobnicate" "$CIPHER" "$MNT" 2>"$BASE/err"
check "$?" 2 "an unknown option's exit status"
grep -q 'unknown mount option "frobnicate"' "$BASE/err" || echo "FAIL: unknown option: $(cat "$BASE/err")"
echo DONE
`
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "BIN="+bin, "FSTAB="+fstab, "MNT="+e.mnt, "CIPHER="+e.cipher, "PW="+pw, "TPM="+e.tpm.spec,
		"BASE="+e.base, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state, "PATH="+bin+":"+os.Getenv("PATH"))
	// Go makes / private in a new mount namespace: nothing done there
	// reaches the test's own namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	e.stderrAll.Write(out)
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte("DONE")) || bytes.Contains(out, []byte("FAIL")) {
		t.Fatalf("mount(8) and fstab: %v\n%s", err, out)
	}
	if fileSum(t, "/etc/fstab") != fstabBefore {
		t.Fatal("/etc/fstab changed")
	}

	// mount.fuse.sealfs, as mount(8) runs it from /sbin.
	helper := exec.Command(sealfsBin, e.cipher, e.mnt, "-n", "-o", "rw,dev,suid,nofail,passfile="+pw)
	helper.Args[0] = "/sbin/mount.fuse.sealfs"
	helper.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	if out, err := helper.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("mount.fuse.sealfs: %v, output %q (a mount helper is silent on success)", err, out)
	}
	if got := string(mustRead(t, filepath.Join(e.mnt, "doc.txt"))); got != "through fstab" {
		t.Fatalf("through mount.fuse.sealfs: %q", got)
	}
	e.mustRun("unmount", e.mnt)
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "absent"
	}
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}
