package crypto

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Recovery key (docs/format.md §9): 256 random bits written as 64 hex digits
// in 8 groups of 8, each group followed by one check digit (Luhn mod 16,
// seeded with the group number so groups typed in the wrong order are caught
// too). A typo is reported with its group before any unlock is tried.
const (
	recoveryGroups     = 8
	recoveryGroupLen   = 8
	recoveryGroupChars = recoveryGroupLen + 1
	hexDigits          = "0123456789abcdef"
	recoveryWrapLabel  = "sealfs v1 recovery wrap"
	recoveryAD         = "sealfs v1 recovery slot"
)

// RecoveryKey is the 32-byte recovery secret.
type RecoveryKey [32]byte

// Recovery errors.
var (
	ErrWrongRecoveryKey = errors.New("this recovery key does not open this vault")
	ErrRecoveryKeyTypo  = errors.New("recovery key mistyped")
)

// RecoveryKeyError names the group that looks wrong.
type RecoveryKeyError struct {
	Group  int // 1-based; 0 for a length problem
	Reason string
}

func (e *RecoveryKeyError) Error() string {
	if e.Group == 0 {
		return "recovery key mistyped: " + e.Reason
	}
	return fmt.Sprintf("recovery key mistyped: group %d looks wrong (%s)", e.Group, e.Reason)
}

func (e *RecoveryKeyError) Unwrap() error { return ErrRecoveryKeyTypo }

// NewRecoveryKey draws a recovery key from crypto/rand.
func NewRecoveryKey() (RecoveryKey, error) {
	var r RecoveryKey
	if _, err := rand.Read(r[:]); err != nil {
		return r, fmt.Errorf("generating recovery key: %w", err)
	}
	return r, nil
}

// Groups returns the 8 groups of 9 characters (8 digits and a check digit).
func (r RecoveryKey) Groups() []string {
	d := r.Display()
	defer clear(d)
	g := make([]string, recoveryGroups)
	for i := range g {
		g[i] = string(d[i*(recoveryGroupChars+1) : i*(recoveryGroupChars+1)+recoveryGroupChars])
	}
	return g
}

// String is the display form: groups separated by dashes. The string
// cannot be wiped; Display gives bytes that can.
func (r RecoveryKey) String() string {
	d := r.Display()
	defer clear(d)
	return string(d)
}

// Display returns the display form (79 bytes: 8 groups of 9 characters,
// dashes between) in a new buffer the caller wipes.
func (r *RecoveryKey) Display() []byte {
	out := make([]byte, 0, recoveryGroups*(recoveryGroupChars+1))
	var digits [recoveryGroupLen]byte
	defer clear(digits[:])
	for i := 0; i < recoveryGroups; i++ {
		if i > 0 {
			out = append(out, '-')
		}
		hex.Encode(digits[:], r[i*recoveryGroupLen/2:(i+1)*recoveryGroupLen/2])
		out = append(out, digits[:]...)
		out = append(out, hexDigits[luhn16(i, digits[:])])
	}
	return out
}

// luhn16 computes the Luhn mod 16 check digit of the hex digits d, seeded
// with the group index. Like decimal Luhn it catches every single-digit
// substitution and most adjacent transpositions.
func luhn16(group int, d []byte) int {
	sum := group + 1
	factor := 2
	for i := len(d) - 1; i >= 0; i-- {
		a := factor * strings.IndexByte(hexDigits, d[i])
		sum += a/16 + a%16
		factor = 3 - factor
	}
	return (16 - sum%16) % 16
}

// ParseRecoveryKey accepts the display form, ignoring spaces, dashes and case.
func ParseRecoveryKey(s string) (RecoveryKey, error) {
	return ParseRecoveryKeyBytes([]byte(s))
}

// ParseRecoveryKeyBytes is ParseRecoveryKey on bytes the caller can wipe;
// it keeps no copy of them other than its result.
func ParseRecoveryKeyBytes(b []byte) (RecoveryKey, error) {
	var r RecoveryKey
	const want = recoveryGroups * recoveryGroupChars
	var clean [want]byte
	defer clear(clean[:])
	n := 0
	for _, c := range b {
		switch {
		case c == ' ' || c == '-' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		}
		if n < want {
			clean[n] = c
		}
		n++
	}
	if n != want {
		return r, &RecoveryKeyError{Reason: fmt.Sprintf("it has %d characters, want %d (8 groups of 9)", n, want)}
	}
	for i := 0; i < recoveryGroups; i++ {
		g := clean[i*recoveryGroupChars : (i+1)*recoveryGroupChars]
		for _, c := range g {
			if strings.IndexByte(hexDigits, c) < 0 {
				return RecoveryKey{}, &RecoveryKeyError{Group: i + 1, Reason: fmt.Sprintf("%q is not a digit 0-9 or a-f", rune(c))}
			}
		}
		if hexDigits[luhn16(i, g[:recoveryGroupLen])] != g[recoveryGroupLen] {
			return RecoveryKey{}, &RecoveryKeyError{Group: i + 1, Reason: "check digit does not match"}
		}
		if _, err := hex.Decode(r[i*recoveryGroupLen/2:(i+1)*recoveryGroupLen/2], g[:recoveryGroupLen]); err != nil {
			return RecoveryKey{}, &RecoveryKeyError{Group: i + 1, Reason: "not hexadecimal"}
		}
	}
	return r, nil
}

// recoveryAEADKey derives the slot's wrapping key. The recovery key has full
// 256-bit entropy, so HKDF suffices; no password KDF is needed.
func recoveryAEADKey(r RecoveryKey, salt []byte) ([]byte, error) {
	key := make([]byte, KeySize)
	if err := hkdfInto(key, r[:], salt, recoveryWrapLabel); err != nil {
		return nil, err
	}
	return key, nil
}

// NewRecoverySlot wraps the master key under the recovery key.
func NewRecoverySlot(m *MasterKey, r RecoveryKey, vaultID []byte, id string) (*Slot, error) {
	salt := make([]byte, 16)
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("recovery salt: %w", err)
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("recovery nonce: %w", err)
	}
	key, err := recoveryAEADKey(r, salt)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	a, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	wrapped := a.Seal(nil, nonce, m.Bytes(), append([]byte(recoveryAD), vaultID...))
	return &Slot{ID: id, Type: SlotRecovery, Salt: salt, Nonce: nonce, Wrapped: wrapped}, nil
}

// OpenRecoverySlot unwraps the master key; ErrWrongRecoveryKey if r does not
// open slot s.
func OpenRecoverySlot(s *Slot, r RecoveryKey, vaultID []byte) (*MasterKey, error) {
	if s.Type != SlotRecovery {
		return nil, fmt.Errorf("slot %q is not a recovery slot", s.ID)
	}
	key, err := recoveryAEADKey(r, s.Salt)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	a, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != NonceSize {
		return nil, fmt.Errorf("%w: recovery slot nonce has %d bytes", ErrHeaderFormat, len(s.Nonce))
	}
	mk, err := a.Open(nil, s.Nonce, s.Wrapped, append([]byte(recoveryAD), vaultID...))
	if err != nil {
		return nil, ErrWrongRecoveryKey
	}
	defer clear(mk)
	return MasterKeyFromBytes(mk)
}
