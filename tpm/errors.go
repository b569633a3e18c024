package tpm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Callers test them with errors.Is; the typed errors below
// carry the details and unwrap to these.
var (
	// ErrNoTPM: no TPM could be reached (no device, swtpm not running, socket missing).
	ErrNoTPM = errors.New("no TPM available")
	// ErrNoSoftwareTPM: swtpm:DIR names a directory without a software TPM's
	// state, and the caller did not ask for a new one (OpenOptions).
	ErrNoSoftwareTPM = errors.New("no software TPM there (no swtpm state in that directory)")
	// ErrSoftwareTPMBusy: another process uses the software TPM in swtpm:DIR.
	ErrSoftwareTPMBusy = errors.New("the software TPM is in use by another sealfs process")
	// ErrWrongPassword: the TPM refused the authValue. Returned inside *AuthError.
	ErrWrongPassword = errors.New("wrong password")
	// ErrLockout: the TPM's dictionary-attack protection refuses every password
	// for now, even the right one. Returned inside *LockoutError.
	ErrLockout = errors.New("the TPM is locked against password guessing")
	// ErrWrongTPM: the slot was sealed under another TPM's (or another owner
	// seed's) storage root key; it can never be opened here.
	ErrWrongTPM = errors.New("this vault's TPM slot belongs to another machine: use `sealfs recover` or `sealfs enroll`")
	// ErrPCRMismatch: the PCRs bound at seal time hold other values now.
	// Returned inside *PCRError.
	ErrPCRMismatch = errors.New("the machine's measured state (PCRs) changed since the slot was sealed")
	// ErrTriesExhausted: an attempt-limited slot has used all its tries; only
	// the recovery key opens the vault now. See limited.go.
	ErrTriesExhausted = errors.New("no tries left on this TPM slot; only the recovery key opens this vault now")
	// ErrTriesUsedUp: the last tries of an attempt-limited slot were used
	// while this unlock was under way, by another program that talks to the
	// TPM (TPM_RC_AUTH_UNAVAILABLE on PolicySecret); this attempt was not
	// counted. Unwraps to ErrTriesExhausted.
	ErrTriesUsedUp = fmt.Errorf("%w (another program used the last tries while this unlock ran: "+
		"someone who may use this TPM is guessing, or another sealfs was given wrong passwords)", ErrTriesExhausted)
	// ErrSlotGone: the NV index of an attempt-limited slot no longer exists
	// or was replaced (deleted by the owner, or the TPM was cleared).
	ErrSlotGone = errors.New("this vault's TPM slot no longer exists in the TPM (its NV index was deleted or the TPM cleared): use `sealfs recover`, then `sealfs enroll`")
)

// AuthError reports a refused password and how much guessing the TPM still
// allows before it locks. TriesLeft < 0 means the TPM did not tell.
type AuthError struct {
	TriesLeft       int
	LockoutInterval time.Duration
}

func (e *AuthError) Error() string {
	switch {
	case e.TriesLeft < 0:
		return "wrong password"
	case e.TriesLeft == 0:
		return fmt.Sprintf("wrong password (no tries left: the TPM is now locked for %s)", humanDuration(e.LockoutInterval))
	default:
		return fmt.Sprintf("wrong password (%s left before the TPM locks for %s)",
			plural(e.TriesLeft, "try", "tries"), humanDuration(e.LockoutInterval))
	}
}

func (e *AuthError) Unwrap() error { return ErrWrongPassword }

// LockoutError reports that the TPM is in dictionary-attack lockout.
// RetryIn is the TPM's recovery interval: after it, one more try is allowed
// for sure (the TPM does not say how much of it has already elapsed).
type LockoutError struct {
	RetryIn time.Duration
}

func (e *LockoutError) Error() string {
	when := "later"
	if e.RetryIn > 0 {
		when = "in " + humanDuration(e.RetryIn)
	}
	return fmt.Sprintf("the TPM is locked against password guessing; retry %s or use `sealfs recover` with your recovery key", when)
}

func (e *LockoutError) Unwrap() error { return ErrLockout }

// PCRError names the PCRs (SHA-256 bank) whose values differ from the ones
// the slot was sealed against. Changed is empty when the TPM refused the
// policy but the stored values could not tell which PCR moved.
type PCRError struct {
	Changed []int
}

func (e *PCRError) Error() string {
	if len(e.Changed) == 0 {
		return "the TPM refused the slot's PCR policy: the machine's measured boot state changed since the slot was sealed; use `sealfs recover`, then re-enroll"
	}
	ids := make([]string, len(e.Changed))
	for i, p := range e.Changed {
		ids[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf("the machine's measured boot state changed since the slot was sealed (PCR %s differ); use `sealfs recover`, then re-enroll",
		strings.Join(ids, ", "))
}

func (e *PCRError) Unwrap() error { return ErrPCRMismatch }

// TriesError reports a refused password on an attempt-limited slot: Left of
// Max consecutive failures remain before the slot is unusable for good.
type TriesError struct {
	Left, Max int
}

func (e *TriesError) Error() string {
	if e.Left <= 0 {
		return "wrong password: that was the last try; only the recovery key opens this vault now"
	}
	return fmt.Sprintf("wrong password: %d of %d tries left; after that only the recovery key opens this vault", e.Left, e.Max)
}

func (e *TriesError) Unwrap() []error {
	if e.Left <= 0 {
		return []error{ErrWrongPassword, ErrTriesExhausted}
	}
	return []error{ErrWrongPassword}
}

// NoTPMError explains why no TPM could be reached and how to fix it.
type NoTPMError struct {
	Spec string // what was tried, e.g. "unix:/run/swtpm/sock"
	Hint string // what the user can do about it
	Err  error  // underlying cause, may be nil
}

func (e *NoTPMError) Error() string {
	var b strings.Builder
	b.WriteString("no TPM")
	if e.Spec != "" {
		b.WriteString(" at " + e.Spec)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString("\n" + e.Hint)
	}
	return b.String()
}

func (e *NoTPMError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNoTPM}
	}
	return []error{ErrNoTPM, e.Err}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// humanDuration rounds up, so that "retry in 2 minutes" is never too early.
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 seconds"
	case d < time.Minute:
		return plural(int((d+time.Second-1)/time.Second), "second", "seconds")
	case d < 2*time.Hour:
		return plural(int((d+time.Minute-1)/time.Minute), "minute", "minutes")
	default:
		return plural(int((d+time.Hour-1)/time.Hour), "hour", "hours")
	}
}
