package tests

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	sealfs "github.com/sealfs/sealfs/fs"
)

// The unprivileged mount helper: this test binary, re-executed as another
// user, mounts a cipher directory with fs.Mount (through fusermount3, as an
// ordinary user's `sealfs mount` does) and serves it until its stdin closes.
// The master key arrives hex-encoded on the first line of stdin.
const ownerHelperEnv = "SEALFS_TEST_OWNER_MOUNT"

// ownerMountHelper runs instead of the tests when ownerHelperEnv is set
// (TestMain); it returns the exit code.
func ownerMountHelper() int {
	args := strings.SplitN(os.Getenv(ownerHelperEnv), "\n", 2)
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "helper: want CIPHER\\nMOUNTPOINT")
		return 2
	}
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: reading the key:", err)
		return 2
	}
	raw, err := hex.DecodeString(strings.TrimSpace(line))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: key:", err)
		return 2
	}
	mk, err := crypto.MasterKeyFromBytes(raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: key:", err)
		return 2
	}
	keys, err := crypto.DeriveKeys(mk)
	mk.Wipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: keys:", err)
		return 2
	}
	defer keys.Wipe()
	srv, err := sealfs.Mount(args[1], sealfs.Options{CipherDir: args[0], Keys: keys,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: mount:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, in)
	if err := srv.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "helper: unmount:", err)
		return 1
	}
	return 0
}

// ownerPermScript exercises the permission decisions an unprivileged owner
// meets, one line per check, in the directory given as $1. The same script
// runs on a plain directory and on the mount, as the same user.
const ownerPermScript = `
cd "$1" || exit 9
umask 022
t() { if "$@" 2>/dev/null; then echo "$*: ok"; else echo "$*: denied"; fi; }
sh_t() { if sh -c "$1" 2>/dev/null; then echo "$1: ok"; else echo "$1: denied"; fi; }
echo data >ro; chmod 444 ro
echo data >wo; chmod 200 wo
echo data >none; chmod 000 none
echo data >rw
printf '#!/bin/sh\necho ran\n' >x; chmod 755 x
printf '#!/bin/sh\necho ran\n' >nox; chmod 644 nox
printf '#!/bin/sh\necho ran\n' >ox; chmod 601 ox
mkdir d555 d300 d600 d700 e555; echo f >d555/f; echo f >d300/f; echo f >d600/f
chmod 555 d555 e555; chmod 300 d300; chmod 600 d600
sh_t 'echo more >>ro'
sh_t 'echo more >ro'
sh_t 'cat wo'
sh_t 'cat none'
sh_t 'echo more >>wo'
t truncate -s 0 ro
t truncate -s 1 rw
t test -r ro; t test -w ro; t test -x ro
t test -r wo; t test -w wo
t test -r none; t test -w none
t test -x x; t test -x nox
t ./x; t ./nox; t ./ox
# A writable fd held across a chmod 0444 must not let a new open write.
exec 3>>rw; chmod 444 rw
sh_t 'echo more >>rw'
t truncate -s 0 rw
exec 3>&-
chmod 644 rw
# Created read-only, still writable through the creating fd.
sh_t 'umask 222; echo hi >made-ro && cat made-ro'
t ls d555; t ls d300; t ls d600; t ls d700
t cat d300/f; t cat d600/f
sh_t 'cd d300'; sh_t 'cd d600'
t test -w d555; t test -x d600; t test -r d300
t touch d555/new; t rm -f d555/f; t mkdir d555/sub; t mv d555/f moved
t touch d300/new; t rm -f d300/f
t setfattr -n user.k -v 1 ro
t setfattr -n user.k -v 1 rw
t getfattr -n user.k rw
t getfattr -n user.k wo
t rmdir e555
t mkdir -m 555 m555
t touch m555/in
t rmdir m555
# Not empty and read-only: refused, and left exactly as it was.
mkdir f555; echo a >f555/a; chmod 555 f555
t rmdir f555
t ls f555
t mv d700 f555
chmod 755 d555 d300 d600
ls -l | awk 'NR > 1 {print $1, $NF}' | sort -k2
`

// TestFSOwnerPermissionsLikeExt4: a mount without AllowOther leaves the
// permission checks to the backing filesystem (fs/access.go). For an
// unprivileged owner (the daemon runs as that user, as `sealfs mount` by a
// desktop user does) every decision must match a plain directory's,
// including the cases where the daemon holds an fd of its own.
func TestFSOwnerPermissionsLikeExt4(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no fusermount3")
	}
	base, err := os.MkdirTemp("", "sealfs-owner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	plain, cipher, mnt := filepath.Join(base, "plain"), filepath.Join(base, "cipher"), filepath.Join(base, "mnt")
	for _, d := range []string{base, plain, cipher, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	// The test binary must be executable by nobody: go test keeps it in a
	// 0700 directory.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "helper")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	mk, err := crypto.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString(mk.Bytes())
	mk.Wipe()

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), ownerHelperEnv+"="+cipher+"\n"+mnt, "HOME="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Dir = "/"
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	t.Cleanup(func() {
		if !done {
			stdin.Close()
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
			cmd.Wait()
		}
	})
	fmt.Fprintln(stdin, key)
	ready, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(ready) != "ready" {
		cmd.Wait()
		t.Fatalf("the helper did not mount: %q\n%s", ready, stderr.String())
	}

	script := filepath.Join(base, "perm.sh")
	if err := os.WriteFile(script, []byte(ownerPermScript), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := asNobody(t, "sh "+script+" "+plain)
	if err != nil {
		t.Fatalf("script on the plain directory: %v\n%s", err, want)
	}
	got, err := asNobody(t, "sh "+script+" "+mnt)
	if err != nil {
		t.Fatalf("script on the mount: %v\n%s", err, got)
	}
	if !strings.Contains(want, "denied") || !strings.Contains(want, "ok") {
		t.Fatalf("the script decided nothing on the plain directory:\n%s", want)
	}
	if got, want := strings.TrimSpace(got), strings.TrimSpace(want); got != want {
		t.Errorf("permission decisions differ from a plain directory\n--- plain:\n%s\n--- sealfs:\n%s", want, got)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v\n%s", err, stderr.String())
	}
	done = true
	// Nothing the script wrote reached the cipher directory in plaintext.
	err = filepath.WalkDir(cipher, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), "made-ro") || strings.Contains(d.Name(), "d555") {
			t.Errorf("plaintext name in the cipher dir: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
