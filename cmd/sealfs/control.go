package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The control protocol: a client connects to the daemon's unix socket,
// sends one line ("unmount" or "ping") and reads one line back: "ok",
// "busy <message>" or "error <message>". The daemon answers "ok" to
// unmount only once the mount is gone and the keys are wiped.
const (
	ctlUnmount = "unmount"
	ctlPing    = "ping"
)

// listenControl binds the control socket. A live daemon already there means
// the mountpoint is in use; a socket nobody answers on is a crashed
// daemon's leftover and is replaced.
func listenControl(path string) (*net.UnixListener, error) {
	if _, err := os.Lstat(path); err == nil {
		if reply, err := controlRequest(path, ctlPing, 2*time.Second); err == nil && reply == "ok" {
			return nil, errors.New("already mounted by a running sealfs daemon")
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket: %w", err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// serveControl answers requests until l is closed. handle gets the command
// and returns the reply line.
// Each connection is counted in wg so the daemon can let in-flight replies
// out before the process exits.
func serveControl(l *net.UnixListener, log *slog.Logger, wg *sync.WaitGroup, handle func(cmd string) string) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("control socket", "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if !peerAllowed(c) {
				io.WriteString(c, "error permission denied\n")
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Time{})
			io.WriteString(c, handle(strings.TrimSpace(line))+"\n")
		}()
	}
}

// peerAllowed admits the daemon's own uid and root. The socket's directory
// is already private; this is the second lock on the door.
func peerAllowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Getuid()
}

// controlRequest sends cmd and returns the reply line.
func controlRequest(sock, cmd string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// isBusy recognises the kernel's EBUSY however the unmount reported it
// (errno from umount2, or fusermount's message).
func isBusy(err error) bool {
	return errors.Is(err, syscall.EBUSY) || strings.Contains(strings.ToLower(err.Error()), "busy")
}

func busyError(mountpoint string) error {
	return fmt.Errorf("%s is busy: a process still has a file open there or its working directory inside; "+
		"close it and retry (`fuser -vm %s` lists them). The vault stays unlocked", mountpoint, mountpoint)
}
