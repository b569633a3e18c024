package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// envPassword is read once at start and removed from the environment: it is
// visible in /proc/PID/environ to the same user and root, and every child
// would inherit it.
const envPassword = "SEALFS_PASSWORD"

// wipeInitialEnv overwrites the value of name in the environment block the
// kernel gave the process, the one /proc/PID/environ shows: os.Unsetenv
// only drops Go's copy, and a foreground mount lives for hours. The block's
// address is in /proc/self/stat (env_start, env_end); the process writes
// over its own memory through /proc/self/mem. Go's own copy of the variable
// (an immutable string on the heap, made by the runtime at start) cannot be
// wiped; it is not in /proc/PID/environ and is dropped with os.Unsetenv.
func wipeInitialEnv(name string) error {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return errors.New("unexpected /proc/self/stat")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 49 {
		return errors.New("/proc/self/stat has no env_start/env_end (kernel older than 3.5)")
	}
	start, err1 := strconv.ParseUint(f[47], 10, 64) // field 50: env_start
	end, err2 := strconv.ParseUint(f[48], 10, 64)   // field 51: env_end
	if err1 != nil || err2 != nil || end <= start || end-start > 1<<24 {
		return errors.New("unexpected env_start/env_end in /proc/self/stat")
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer mem.Close()
	block := make([]byte, end-start)
	if _, err := mem.ReadAt(block, int64(start)); err != nil {
		return err
	}
	prefix := []byte(name + "=")
	off := 0
	for _, entry := range bytes.Split(block, []byte{0}) {
		if bytes.HasPrefix(entry, prefix) {
			zero := make([]byte, len(entry)-len(prefix))
			if _, err := mem.WriteAt(zero, int64(start)+int64(off+len(prefix))); err != nil {
				return err
			}
		}
		off += len(entry) + 1
	}
	clear(block)
	return nil
}

// maxSecret bounds what we read from a password file or --extpass.
const maxSecret = 4096

// errSecretTooLong: a password file or --extpass gave more than maxSecret.
var errSecretTooLong = fmt.Errorf("longer than %d bytes", maxSecret)

// Environment variables that stand in for flags, for systemd units'
// EnvironmentFile= (sealfs help passwords).
const (
	envPasswordFile = "SEALFS_PASSWORD_FILE"
	envExtpass      = "SEALFS_EXTPASS"
	// credentialName is the systemd credential sealfs reads the password
	// from (LoadCredential=sealfs.password:FILE).
	credentialName = "sealfs.password"
)

// password returns the password from the first configured source:
// --password-file, --extpass, $SEALFS_PASSWORD_FILE, $SEALFS_EXTPASS,
// $SEALFS_PASSWORD, the systemd credential, else a prompt on the terminal
// (asked twice when confirm is set). The caller wipes it.
func (a *app) password(prompt string, confirm bool) ([]byte, error) {
	switch {
	case a.passwordFile != "":
		return readSecretFile(a.passwordFile, "password")
	case a.extpass != "":
		return a.runExtpass(a.extpass)
	case os.Getenv(envPasswordFile) != "":
		return readSecretFile(os.Getenv(envPasswordFile), "password ($"+envPasswordFile+")")
	case os.Getenv(envExtpass) != "":
		return a.runExtpass(os.Getenv(envExtpass))
	case a.envPassword != nil:
		if len(a.envPassword) == 0 {
			return nil, fmt.Errorf("$%s is empty", envPassword)
		}
		return bytes.Clone(a.envPassword), nil
	}
	if cred := credentialFile(); cred != "" {
		return readSecretFile(cred, "password (systemd credential "+credentialName+")")
	}
	return a.promptPassword(prompt, confirm)
}

// credentialFile returns the systemd credential holding the password, ""
// when there is none.
func credentialFile() string {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return ""
	}
	p := filepath.Join(dir, credentialName)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// newPassword reads a password being set when another password (or the
// recovery key) already authorised the change: --new-password-file, else
// the terminal, asked twice.
func (a *app) newPassword(file, prompt string) ([]byte, error) {
	if file != "" {
		return readSecretFile(file, "new password")
	}
	return a.promptPassword(prompt, true)
}

// readSecretFile reads the first line of file ("-" = standard input).
func readSecretFile(file, what string) ([]byte, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = readLimited(os.Stdin)
	} else {
		var f *os.File
		if f, err = os.Open(file); err == nil {
			b, err = readLimited(f)
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the %s: %w", what, err)
	}
	return firstLine(b, what)
}

// readLimited reads r to its end into one buffer of maxSecret+1 bytes,
// allocated up front so no partial copy of the secret is left behind by a
// growing buffer, and refuses more than maxSecret bytes. On error the buffer
// is wiped.
func readLimited(r io.Reader) ([]byte, error) {
	b := make([]byte, maxSecret+1)
	n, err := io.ReadFull(io.LimitReader(r, maxSecret+1), b)
	switch {
	case n > maxSecret:
		clear(b)
		return nil, errSecretTooLong
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
		clear(b)
		return nil, err
	}
	return b[:n], nil
}

// firstLine keeps everything up to the first newline (so a file written by
// `echo` works) and wipes the rest.
func firstLine(b []byte, what string) ([]byte, error) {
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
		clear(b[i:])
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("the %s is empty", what)
	}
	return line, nil
}

// runExtpass runs --extpass via sh -c; its standard output is the password.
// Its stderr goes to ours so it can prompt (e.g. a pinentry wrapper).
// At most maxSecret+1 bytes of its output are read, into one buffer: a
// command that prints more (or never stops) is killed and refused.
func (a *app) runExtpass(command string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(a.intr.context(), 2*time.Minute)
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdout = w
	cmd.Stderr = a.stderr
	cmd.Stdin = os.Stdin
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("--extpass command failed: %w", err)
	}
	// A child that keeps our pipe open after sh exits must not hold us
	// past the command's own time limit.
	if dl, ok := ctx.Deadline(); ok {
		_ = r.SetReadDeadline(dl)
	}
	b, rerr := readLimited(r)
	if rerr != nil {
		// Too long, or unreadable: stop the command (and, by closing the
		// pipe, whatever else still writes to it) instead of draining it.
		r.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if errors.Is(rerr, errSecretTooLong) {
			return nil, fmt.Errorf("--extpass printed more than %d bytes", maxSecret)
		}
		return nil, fmt.Errorf("reading the output of --extpass: %w", rerr)
	}
	if err := cmd.Wait(); err != nil {
		clear(b)
		return nil, fmt.Errorf("--extpass command failed: %w", err)
	}
	return firstLine(b, "password from --extpass")
}
