package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

const (
	// Far above any response this package provokes (the largest is a
	// GetCapability page), small enough that a corrupt size field cannot
	// make us allocate much.
	maxResponseSize = 64 << 10
	// A real TPM can take seconds for an RSA key; swtpm answers in
	// microseconds. The deadline only guards against a wedged peer.
	commandTimeout = 2 * time.Minute
	// sun_path in struct sockaddr_un holds 108 bytes including the NUL.
	maxUnixPath = 107
)

// streamTPM speaks raw TPM 2.0 commands over one persistent stream
// connection. swtpm's unixio and tcp data channels both accept this framing;
// go-tpm's tcp transport adds the MS-simulator framing and needs the
// platform port, which swtpm's --ctrl port does not implement (PowerOn fails).
type streamTPM struct {
	conn    net.Conn
	timeout time.Duration // per command; zero means commandTimeout
}

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	timeout := s.timeout
	if timeout == 0 {
		timeout = commandTimeout
	}
	if err := s.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("sending TPM command: %w", err)
	}
	var hdr [10]byte
	if _, err := io.ReadFull(s.conn, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading TPM response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < uint32(len(hdr)) || size > maxResponseSize {
		return nil, fmt.Errorf("TPM response claims %d bytes: stream out of sync", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(s.conn, rsp[len(hdr):]); err != nil {
		return nil, fmt.Errorf("reading TPM response: %w", err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error { return s.conn.Close() }

// Response codes after which the TPM has not executed the command, so the
// identical bytes (same session nonces) may be sent again (Part 1, 6.6.3).
const (
	rcRetry   = 0x922
	rcYielded = 0x908
	rcTesting = 0x90A
)

// retryTPM resends commands the TPM asked to retry. go-tpm's tcp transport
// does not, and swtpm answers TPM_RC_RETRY to the first parameter-encrypted
// Unseal after start.
type retryTPM struct {
	inner transport.TPMCloser
}

func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	delay := time.Millisecond
	for attempt := 0; ; attempt++ {
		rsp, err := r.inner.Send(cmd)
		if err != nil || len(rsp) < 10 || attempt >= 12 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcRetry, rcYielded, rcTesting:
			time.Sleep(delay)
			delay = min(2*delay, 500*time.Millisecond)
		default:
			return rsp, nil
		}
	}
}

func (r retryTPM) Close() error { return r.inner.Close() }

// dialUnix connects to a unix socket whose path may exceed sun_path: a long
// path is reached through /proc/self/fd/N of its directory, which the kernel
// resolves like any other path.
func dialUnix(path string) (net.Conn, error) {
	if len(path) <= maxUnixPath {
		return net.DialTimeout("unix", path, 5*time.Second)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path))
	if len(short) > maxUnixPath {
		return nil, errors.New("socket name too long: " + path)
	}
	return net.DialTimeout("unix", short, 5*time.Second)
}
