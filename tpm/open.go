package tpm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// EnvTPM names the environment variable Open reads when spec is empty.
const EnvTPM = "SEALFS_TPM"

const defaultDevice = "/dev/tpmrm0"

const probeTimeout = 5 * time.Second

const hintNoTPM = "fix: use the kernel resource manager (/dev/tpmrm0; your user must be in its group, usually `tss`), " +
	"or point --tpm (or $SEALFS_TPM) at a running swtpm (unix:PATH or tcp:HOST:PORT), " +
	"or let sealfs run a software TPM with --tpm swtpm:DIR"

// TPM is a connection to one TPM. Its methods are safe for concurrent use;
// they are serialised because swtpm serves one command stream and a bare
// TPM has no resource manager to keep callers' handles apart.
type TPM struct {
	mu   sync.Mutex
	tpm  transport.TPMCloser
	log  *slog.Logger
	spec string
	sw   *swtpmProc // non-nil for swtpm:DIR
}

// OpenOptions adjust OpenWith for a software TPM that sealfs runs itself
// (swtpm:DIR). The zero value is strict: no new software TPM, no waiting.
type OpenOptions struct {
	// NewSoftwareTPM lets swtpm:DIR start a new software TPM where DIR holds
	// none yet (creating DIR). Without it such a DIR is refused
	// (ErrNoSoftwareTPM): a mistyped path would otherwise give a fresh TPM,
	// and the vault's slot would look like another machine's.
	NewSoftwareTPM bool
	// Wait, if set, makes OpenWith wait while another process uses the
	// software TPM in DIR (swtpm serves one client at a time): it is called
	// once with that process's pid (0 if unknown), then OpenWith waits until
	// the TPM is free or Context is done. Without it OpenWith fails at once
	// with ErrSoftwareTPMBusy.
	Wait    func(holderPID int)
	Context context.Context // nil: context.Background()
	// Quiet: the caller tells the user about the software TPM itself, so
	// OpenWith logs no warning about it.
	Quiet bool
}

// Open is OpenWith with NewSoftwareTPM set: the behaviour library callers
// and tests have always had.
func Open(spec string, log *slog.Logger) (*TPM, error) {
	return OpenWith(spec, log, OpenOptions{NewSoftwareTPM: true})
}

// OpenWith connects to a TPM. spec is one of
//
//	""              $SEALFS_TPM if set, else /dev/tpmrm0 if present, else ErrNoTPM
//	/dev/...        a TPM character device (tpmrm0: kernel resource manager)
//	unix:PATH       a running swtpm's unixio data socket
//	tcp:HOST:PORT   a running swtpm's tcp data port (its ctrl port is unused)
//	swtpm:DIR       a software TPM owned by this process, state kept in DIR
//
// A nil log discards messages. Connection failures wrap ErrNoTPM in a
// *NoTPMError that tells the user how to fix them.
func OpenWith(spec string, log *slog.Logger, o OpenOptions) (*TPM, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if spec == "" {
		spec = os.Getenv(EnvTPM)
	}
	if spec == "" {
		if _, err := os.Stat(defaultDevice); err != nil {
			return nil, &NoTPMError{Spec: defaultDevice, Err: err, Hint: hintNoTPM}
		}
		spec = defaultDevice
	}
	t := &TPM{log: log, spec: spec}
	var err error
	bare := true // no resource manager flushes what a crashed client left loaded
	switch {
	case strings.HasPrefix(spec, "/dev/"):
		t.tpm, err = openDevice(spec)
		bare = !strings.HasPrefix(spec, "/dev/tpmrm")
	case strings.HasPrefix(spec, "unix:"):
		t.tpm, err = openUnix(strings.TrimPrefix(spec, "unix:"))
	case strings.HasPrefix(spec, "tcp:"):
		t.tpm, err = openTCP(strings.TrimPrefix(spec, "tcp:"))
	case strings.HasPrefix(spec, "swtpm:"):
		dir := strings.TrimPrefix(spec, "swtpm:")
		if !o.Quiet {
			warnSoftwareTPM(log, dir)
		}
		t.sw, err = startSwtpm(dir, log, o)
		if err == nil {
			t.tpm, err = openUnix(t.sw.sockPath())
			if err != nil {
				err = errors.Join(err, t.sw.stop(nil))
			}
		}
	default:
		return nil, fmt.Errorf("tpm: unknown TPM spec %q (want /dev/..., unix:PATH, tcp:HOST:PORT or swtpm:DIR)", spec)
	}
	if err != nil {
		return nil, &NoTPMError{Spec: spec, Err: err, Hint: hintFor(spec, err)}
	}
	// swtpm serves one connection at a time and queues the others without
	// a word: a short first deadline turns "busy" into an error, not a hang.
	st, _ := t.tpm.(*streamTPM)
	if st != nil {
		st.timeout = probeTimeout
	}
	t.tpm = retryTPM{inner: t.tpm}
	err = t.prepare(bare)
	if st != nil {
		st.timeout = 0
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no answer within %v; is another program connected to this swtpm? (it serves one client at a time): %w", probeTimeout, err)
	}
	if err != nil {
		return nil, errors.Join(&NoTPMError{Spec: spec, Err: err, Hint: hintFor(spec, err)}, t.Close())
	}
	return t, nil
}

// Managed reports whether this process owns the TPM (swtpm:DIR).
func (t *TPM) Managed() bool { return t.sw != nil }

// Close releases the connection. For swtpm:DIR it also sends
// TPM2_Shutdown(CLEAR) and stops swtpm: without an orderly shutdown the next
// start counts as a failed authorization and raises the DA counter.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tpm == nil {
		return nil
	}
	var errs []error
	if t.sw != nil {
		if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(t.tpm); err != nil {
			errs = append(errs, fmt.Errorf("TPM2_Shutdown: %w", err))
		}
	}
	errs = append(errs, t.tpm.Close())
	t.tpm = nil
	if t.sw != nil {
		errs = append(errs, t.sw.stop(t.log))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tpm: closing %s: %w", t.spec, err)
	}
	return nil
}

func openDevice(path string) (transport.TPMCloser, error) {
	tpm, err := linuxtpm.Open(path)
	if err != nil {
		return nil, err
	}
	return tpm, nil
}

func openUnix(path string) (transport.TPMCloser, error) {
	conn, err := dialUnix(path)
	if err != nil {
		return nil, err
	}
	return &streamTPM{conn: conn}, nil
}

func openTCP(addr string) (transport.TPMCloser, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, err
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &streamTPM{conn: conn}, nil
}

func hintFor(spec string, err error) string {
	switch {
	case errors.Is(err, ErrSoftwareTPMBusy):
		return "fix: wait for the other sealfs command to finish (a software TPM serves one client at a time)"
	case errors.Is(err, ErrNoSoftwareTPM):
		return "fix: check the path; only `sealfs init`, `sealfs recover` and `sealfs enroll` start a new software TPM"
	case errors.Is(err, context.Canceled):
		return ""
	case strings.HasPrefix(spec, "/dev/"):
		return "fix: check that the TPM is enabled in the firmware and that your user may open " + spec +
			" (usually group `tss`); or use --tpm swtpm:DIR for a software TPM"
	case strings.HasPrefix(spec, "unix:"), strings.HasPrefix(spec, "tcp:"):
		return "fix: start swtpm (e.g. `swtpm socket --tpm2 --tpmstate dir=DIR --server type=unixio,path=SOCK " +
			"--ctrl type=unixio,path=CTRL --flags not-need-init,startup-clear`), or use --tpm swtpm:DIR to let sealfs run it"
	case strings.HasPrefix(spec, "swtpm:"):
		return "fix: install swtpm (Debian: `apt install swtpm swtpm-tools`) and check that the state directory is writable"
	}
	return hintNoTPM
}

// prepare checks that the TPM answers and, on a TPM without resource
// manager, flushes transient objects and sessions a crashed client left
// behind: swtpm has only 3 object slots and they outlive connections.
func (t *TPM) prepare(bare bool) error {
	_, err := (tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTPermanent), PropertyCount: 1}).Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCInitialize) {
		// A bare swtpm started without startup-clear.
		if _, err = (tpm2.Startup{StartupType: tpm2.TPMSUClear}).Execute(t.tpm); err != nil {
			return fmt.Errorf("TPM2_Startup: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("TPM does not answer: %w", err)
	}
	if !bare {
		return nil
	}
	for _, first := range []tpm2.TPMHandle{0x80000000, 0x02000000, 0x03000000} { // transient, HMAC, policy
		rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first), PropertyCount: 64}).Execute(t.tpm)
		if err != nil {
			return fmt.Errorf("listing loaded handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return fmt.Errorf("listing loaded handles: %w", err)
		}
		for _, h := range hs.Handle {
			// The loaded-session list holds both kinds: swtpm reports a
			// policy session (0x03…) a killed client left loaded under
			// 0x02, and missing it leaves one of 3 session slots taken
			// for good (issue 7: a crash must never cost the vault).
			if h>>24 != first>>24 && !(isSession(first) && isSession(h)) {
				continue
			}
			t.log.Debug("flushing handle left by an earlier client", "handle", fmt.Sprintf("%#x", uint32(h)))
			if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tpm); err != nil {
				return fmt.Errorf("flushing leftover handle %#x: %w", uint32(h), err)
			}
		}
	}
	return nil
}

func isSession(h tpm2.TPMHandle) bool { return h>>24 == 0x02 || h>>24 == 0x03 }

// warnOnce is process-wide on purpose: the warning is about the machine's
// configuration, and repeating it on every Open would train users to ignore it.
var warnOnce sync.Once

func warnSoftwareTPM(log *slog.Logger, dir string) {
	warnOnce.Do(func() {
		log.Warn("SOFTWARE TPM: the vault's TPM slot is protected only as well as this directory; "+
			"anyone who can copy it can guess passwords offline without any lockout. Use a hardware TPM (/dev/tpmrm0) where there is one.",
			"state_dir", dir)
	})
}
