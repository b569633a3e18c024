package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// LockoutInfo is the TPM's dictionary-attack state (Part 1, 19.8.6).
// Counter counts failed authorisations; at MaxTries the TPM refuses every
// DA-protected authorisation (InLockout). One failure is forgotten per
// Interval; Recovery is how long lockoutAuth stays unusable after it failed.
// LockoutAuthSet tells whether the lockout hierarchy has a password: when
// it has none, anyone who may talk to the TPM can reset the counter with
// ResetLockout(nil), and trying it costs nothing. When it has one, a wrong
// guess blocks the lockout hierarchy for Recovery, so never guess.
type LockoutInfo struct {
	Counter, MaxTries  uint32
	Interval, Recovery time.Duration
	InLockout          bool
	LockoutAuthSet     bool
}

// Lockout reads the dictionary-attack state.
func (t *TPM) Lockout() (LockoutInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	info, err := t.lockout()
	if err != nil {
		return LockoutInfo{}, fmt.Errorf("tpm: %w", err)
	}
	return info, nil
}

// TPMA_PERMANENT bits (Part 2, 8.6).
const (
	permanentLockoutAuthSet = 1 << 2
	permanentInLockout      = 1 << 9
)

func (t *TPM) lockout() (LockoutInfo, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTPermanent),
		PropertyCount: uint32(tpm2.TPMPTLockoutRecovery-tpm2.TPMPTPermanent) + 1,
	}.Execute(t.tpm)
	if err != nil {
		return LockoutInfo{}, fmt.Errorf("reading lockout state: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return LockoutInfo{}, fmt.Errorf("reading lockout state: %w", err)
	}
	var info LockoutInfo
	seen := 0
	for _, p := range props.TPMProperty {
		switch p.Property {
		case tpm2.TPMPTPermanent:
			info.InLockout = p.Value&permanentInLockout != 0
			info.LockoutAuthSet = p.Value&permanentLockoutAuthSet != 0
		case tpm2.TPMPTLockoutCounter:
			info.Counter = p.Value
		case tpm2.TPMPTMaxAuthFail:
			info.MaxTries = p.Value
		case tpm2.TPMPTLockoutInterval:
			info.Interval = time.Duration(p.Value) * time.Second
		case tpm2.TPMPTLockoutRecovery:
			info.Recovery = time.Duration(p.Value) * time.Second
		default:
			continue
		}
		seen++
	}
	if seen != 5 {
		return LockoutInfo{}, errors.New("reading lockout state: TPM did not report all dictionary-attack properties")
	}
	return info, nil
}

// SetDictionaryAttackParams sets how many failures the TPM tolerates
// (maxTries), how fast it forgets one (interval) and how long a failed
// lockoutAuth blocks the lockout hierarchy (recovery). Whole seconds only.
// lockoutAuth is the lockout hierarchy's password, empty by default; it is
// sent in a password session, in the clear.
func (t *TPM) SetDictionaryAttackParams(maxTries uint32, interval, recovery time.Duration, lockoutAuth []byte) error {
	iv, err := seconds(interval)
	if err != nil {
		return fmt.Errorf("tpm: DA parameters: interval: %w", err)
	}
	rv, err := seconds(recovery)
	if err != nil {
		return fmt.Errorf("tpm: DA parameters: recovery: %w", err)
	}
	params := binary.BigEndian.AppendUint32(nil, maxTries)
	params = binary.BigEndian.AppendUint32(params, iv)
	params = binary.BigEndian.AppendUint32(params, rv)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.lockoutCommand(tpm2.TPMCCDictionaryAttackParameters, lockoutAuth, params); err != nil {
		return fmt.Errorf("tpm: setting DA parameters: %w", err)
	}
	return nil
}

// ResetLockout clears the dictionary-attack counter and any lockout.
func (t *TPM) ResetLockout(lockoutAuth []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.lockoutCommand(tpm2.TPMCCDictionaryAttackLockReset, lockoutAuth, nil); err != nil {
		return fmt.Errorf("tpm: resetting DA lockout: %w", err)
	}
	return nil
}

func seconds(d time.Duration) (uint32, error) {
	if d < 0 || d > time.Duration(math.MaxUint32)*time.Second {
		return 0, fmt.Errorf("%v out of range", d)
	}
	return uint32(d / time.Second), nil
}

// Command and handle constants of Part 2 used by the hand-built commands.
const (
	tagSessions  = 0x8002 // TPM_ST_SESSIONS
	rhLockout    = 0x4000000A
	rsPassword   = 0x40000009
	maxHierAuth  = 64
	rspHeaderLen = 10
)

// lockoutCommand sends a command authorised by the lockout hierarchy.
// go-tpm v0.9.8's tpm2 package has no DictionaryAttackParameters or
// DictionaryAttackLockReset, and its legacy package reports io.EOF although
// the TPM ran the command, so the bytes are laid out here (Part 3, 25.2/25.3):
// header, TPM_RH_LOCKOUT, one TPM_RS_PW session, parameters.
func (t *TPM) lockoutCommand(cc tpm2.TPMCC, auth, params []byte) error {
	if len(auth) > maxHierAuth {
		return fmt.Errorf("lockout password longer than %d bytes", maxHierAuth)
	}
	session := binary.BigEndian.AppendUint32(nil, rsPassword)
	session = binary.BigEndian.AppendUint16(session, 0) // no nonce
	session = append(session, 0)                        // session attributes
	session = binary.BigEndian.AppendUint16(session, uint16(len(auth)))
	session = append(session, auth...)

	size := rspHeaderLen + 4 + 4 + len(session) + len(params)
	cmd := binary.BigEndian.AppendUint16(nil, tagSessions)
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(size))
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(cc))
	cmd = binary.BigEndian.AppendUint32(cmd, rhLockout)
	cmd = binary.BigEndian.AppendUint32(cmd, uint32(len(session)))
	cmd = append(cmd, session...)
	cmd = append(cmd, params...)

	rsp, err := t.tpm.Send(cmd)
	if err != nil {
		return err
	}
	if len(rsp) < rspHeaderLen {
		return fmt.Errorf("short TPM response (%d bytes)", len(rsp))
	}
	if rc := binary.BigEndian.Uint32(rsp[6:10]); rc != 0 {
		return tpm2.TPMRC(rc)
	}
	return nil
}
