package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/vault"
)

// File descriptors the background daemon inherits from `sealfs mount`
// (exec.Cmd.ExtraFiles start at 3).
const (
	fdKey   = 3 // the master key: 32 bytes, then EOF
	fdReady = 4 // one line back: "ok" or "error <message>"
)

func cmdMount(a *app, args []string) error {
	fs := a.flagSet("mount")
	foreground := fs.Bool("f", false, "stay in the foreground (logs to stderr)")
	var o mountOptions
	fs.BoolVar(&o.readOnly, "ro", false, "mount read-only")
	fs.BoolVar(&o.allowOther, "allow-other", false, "let other users enter the mount (needs user_allow_other in /etc/fuse.conf)")
	fs.BoolVar(&o.debug, "debug", false, "log every FUSE request")
	fs.DurationVar(&o.idle, "idle", 0, "unmount and wipe the key after `DURATION` without file system activity (0: never)")
	daemonMode := fs.Bool("daemon", false, "internal: run as the background daemon, key on fd 3")
	withRecovery := fs.Bool("with-recovery", false, "unlock with the recovery key (prompted) instead of this machine's password")
	pos, err := a.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	cipherDir, err := absDir(pos[0], "cipher directory")
	if err != nil {
		return err
	}
	mountpoint, err := absDir(pos[1], "mountpoint")
	if err != nil {
		return err
	}
	if *daemonMode {
		return runDaemon(a, cipherDir, mountpoint, o)
	}
	if files, err := filesFor(mountpoint); err == nil {
		if r, err := controlRequest(files.sock, ctlPing, 2*time.Second); err == nil && r == "ok" {
			return fmt.Errorf("%s is already mounted by sealfs (`sealfs unmount %s` first)", mountpoint, pos[1])
		}
	}
	if err := vaultInUse(cipherDir); err != nil {
		return err
	}
	v, err := a.loadVault(cipherDir)
	if err != nil {
		return err
	}
	if err := a.unlock(v, *withRecovery); err != nil {
		return err
	}
	// The mount never needs the TPM again; a managed swtpm is stopped now.
	a.closeTPMs()
	if *foreground {
		return serveMount(a.log, v, mountpoint, o, func(error) {})
	}
	return startDaemon(a, v, cipherDir, mountpoint, o)
}

// startDaemon re-executes sealfs as the background daemon and hands it the
// unlocked master key over an inherited pipe — never argv or the
// environment, which other processes of the same user can read in /proc.
// It returns once the daemon reports the mount ready (or why it failed).
func startDaemon(a *app, v *vault.Vault, cipherDir, mountpoint string, o mountOptions) error {
	files, err := filesFor(mountpoint)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(files.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	keyR, keyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer keyW.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		keyR.Close()
		return err
	}
	defer readyR.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"mount", "--daemon", "--idle", o.idle.String()}
	for flag, on := range map[string]bool{"--ro": o.readOnly, "--allow-other": o.allowOther, "--debug": o.debug, "-v": a.debug} {
		if on {
			args = append(args, flag)
		}
	}
	cmd := exec.Command(exe, append(args, "--", cipherDir, mountpoint)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, logf
	cmd.ExtraFiles = []*os.File{keyR, readyW}
	cmd.Dir = "/" // do not pin the caller's working directory
	// Own session: the daemon outlives the terminal and its SIGINT.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	keyR.Close()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("starting the mount daemon: %w", err)
	}
	_, werr := keyW.Write(v.MasterKey().Bytes())
	keyW.Close()
	v.Wipe()
	if werr != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("handing the key to the mount daemon: %w", werr)
	}
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		a.log.Debug("mount daemon ready", "pid", cmd.Process.Pid, "log", files.log)
		// The daemon is not our child to wait for: release it.
		return cmd.Process.Release()
	}
	werr = cmd.Wait()
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return errors.New(msg)
	}
	return fmt.Errorf("the mount daemon exited before the mount was ready (%v); see %s", werr, files.log)
}

// runDaemon is the background side of startDaemon.
func runDaemon(a *app, cipherDir, mountpoint string, o mountOptions) error {
	ready := os.NewFile(fdReady, "ready")
	report := func(err error) {
		if ready == nil {
			return
		}
		msg := "ok"
		if err != nil {
			msg = "error " + strings.ReplaceAll(userMessage(err), "\n", " ")
		}
		io.WriteString(ready, msg+"\n")
		ready.Close()
		ready = nil
	}
	m, err := readKey(os.NewFile(fdKey, "key"))
	if err != nil {
		report(err)
		return err
	}
	v, err := vault.Load(cipherDir, a.log)
	if err != nil {
		m.Wipe()
		report(err)
		return err
	}
	// The key must authenticate the header: a stray `mount --daemon` fed
	// some other key refuses here.
	if err := v.UnlockKey(m); err != nil {
		report(err)
		return err
	}
	err = serveMount(a.log, v, mountpoint, o, report)
	report(err)
	return err
}

func readKey(f *os.File) (*crypto.MasterKey, error) {
	if f == nil {
		return nil, errors.New("--daemon: no key pipe on fd 3 (it is internal to `sealfs mount`)")
	}
	defer f.Close()
	buf := make([]byte, crypto.KeySize)
	defer clear(buf)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("reading the key from fd %d: %w", fdKey, err)
	}
	return crypto.MasterKeyFromBytes(buf)
}
