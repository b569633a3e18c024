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

// mountRequest is one mount, from `sealfs mount` or from mount(8).
type mountRequest struct {
	cipherDir, mountpoint string // as given
	foreground            bool
	withRecovery          bool
	nonempty              bool
	daemon                bool // internal: the background daemon itself
	fuse                  mountOptions
	// opts are -o arguments, applied before anything else; sloppy
	// (mount -s) ignores unknown ones.
	opts   []string
	sloppy bool
	// helper: run by mount(8) (mount -t fuse.sealfs, fstab), which prints
	// nothing on success; fake: mount -f, check everything but mount.
	helper, fake bool
}

func (a *app) mount(r *mountRequest) error {
	for _, o := range r.opts {
		if err := a.applyMountOptions(r, o, r.sloppy); err != nil {
			return err
		}
	}
	cipherDir, err := absDir(r.cipherDir, "cipher directory")
	if err != nil {
		return err
	}
	mountpoint, err := absDir(r.mountpoint, "mountpoint")
	if err != nil {
		return explainDeadMount(r.mountpoint, err)
	}
	if r.daemon {
		a.intr.stop() // serveMount handles the signals
		a.log = daemonLogger(a.stderr, a.debug)
		return runDaemon(a, cipherDir, mountpoint, r.fuse)
	}
	if files, err := filesFor(mountpoint); err == nil {
		if r, err := controlRequest(files.sock, ctlPing, 2*time.Second); err == nil && r == "ok" {
			return fmt.Errorf("%s is already mounted by sealfs (`sealfs unmount %s` first)", mountpoint, mountpoint)
		}
	}
	if err := vaultInUse(cipherDir); err != nil {
		return err
	}
	if !r.nonempty {
		if err := checkEmptyMountpoint(mountpoint); err != nil {
			return err
		}
	}
	if r.fake {
		return nil
	}
	v, err := a.loadVault(cipherDir)
	if err != nil {
		return err
	}
	if err := a.unlock(v, r.withRecovery); err != nil {
		return err
	}
	// The mount never needs the TPM again; a managed swtpm is stopped now.
	a.closeTPMs()
	if err := a.intr.err(); err != nil {
		return err
	}
	if r.foreground {
		a.intr.stop() // serveMount handles the signals from here
		log := daemonLogger(a.stderr, a.debug)
		return serveMount(log, v, mountpoint, r.fuse, func(err error) {
			if err == nil {
				sdNotify(fmt.Sprintf("READY=1\nSTATUS=%s mounted at %s", cipherDir, mountpoint))
			}
		})
	}
	logPath, err := startDaemon(a, v, cipherDir, mountpoint, r.fuse)
	if err != nil {
		return err
	}
	if !a.quiet && !r.helper {
		ro := ""
		if r.fuse.readOnly {
			ro = " (read-only)"
		}
		fmt.Fprintf(a.stdout, "Mounted %s at %s%s. Unmount with `sealfs unmount %s`; log: %s\n", cipherDir, mountpoint, ro, mountpoint, logPath)
	}
	return nil
}

// startDaemon re-executes sealfs as the background daemon and hands it the
// unlocked master key over an inherited pipe — never argv or the
// environment, which other processes of the same user can read in /proc.
// It returns once the daemon reports the mount ready (or why it failed).
func startDaemon(a *app, v *vault.Vault, cipherDir, mountpoint string, o mountOptions) (logPath string, err error) {
	files, err := filesFor(mountpoint)
	if err != nil {
		return "", err
	}
	// Under systemd (a mount unit, a service) the daemon logs to the
	// journal, as its caller does; elsewhere to a file of its own.
	var logf *os.File
	if isJournal(a.stderr) {
		logf, logPath = a.stderr.(*os.File), "the journal"
	} else {
		logf, err = os.OpenFile(files.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return "", fmt.Errorf("daemon log: %w", err)
		}
		defer logf.Close()
		logPath = files.log
	}
	keyR, keyW, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer keyW.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		keyR.Close()
		return "", err
	}
	defer readyR.Close()
	exe, err := os.Executable()
	if err != nil {
		return "", err
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
		return "", fmt.Errorf("starting the mount daemon: %w", err)
	}
	_, werr := keyW.Write(v.MasterKey().Bytes())
	keyW.Close()
	v.Wipe()
	if werr != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return "", fmt.Errorf("handing the key to the mount daemon: %w", werr)
	}
	line, _ := bufio.NewReader(readyR).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		a.log.Debug("mount daemon ready", "pid", cmd.Process.Pid, "log", logPath)
		// The daemon is not our child to wait for: release it.
		return logPath, cmd.Process.Release()
	}
	werr = cmd.Wait()
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return "", errors.New(msg)
	}
	return "", fmt.Errorf("the mount daemon exited before the mount was ready (%v); see %s", werr, logPath)
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
