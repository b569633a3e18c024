package crypto

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Vault header (docs/format.md §3): the file HeaderFileName at the cipher
// directory's root. Its body is JSON (Header); header_file.go lays it out
// in bytes (two authenticated copies since format 2), header_merge.go
// merges authenticated versions of it (sync conflict copies).
const (
	HeaderFileName = "sealfs.vault"
	// FormatVersion is the vault format this build writes. It reads 1 too.
	FormatVersion = 2
	// maxHeaderBody bounds what a decoder will allocate for the JSON body.
	maxHeaderBody = 1 << 20
	headerMACSize = sha256.Size
	// maxRemoved bounds the tombstones a header keeps (the newest) and
	// maxRemovedParsed what a decoder accepts.
	maxRemoved       = 256
	maxRemovedParsed = 1024
)

var headerMagic = [8]byte{'s', 'e', 'a', 'l', 'f', 's', 'V', 'H'}

// KnownFeatures lists the feature flags this build understands. A vault that
// names any other flag is refused: the flag means the vault relies on
// behaviour this build lacks.
var KnownFeatures = []string{}

// Header errors.
var (
	ErrHeaderMAC    = errors.New("vault header failed authentication: it was modified outside sealfs")
	ErrHeaderFormat = errors.New("vault header is malformed")
)

// NewerVersionError is returned for a vault written by a newer sealfs.
type NewerVersionError struct{ Version int }

func (e *NewerVersionError) Error() string {
	return fmt.Sprintf("this vault was created by a newer sealfs (format %d); upgrade sealfs", e.Version)
}

// UnknownFeatureError is returned for a feature flag this build lacks.
type UnknownFeatureError struct{ Feature string }

func (e *UnknownFeatureError) Error() string {
	return fmt.Sprintf("this vault uses feature %q, which this sealfs does not support; upgrade sealfs", e.Feature)
}

// Header is the decoded vault header body.
type Header struct {
	Version  int       `json:"-"`
	VaultID  []byte    `json:"vault_id"` // 16 random bytes
	Created  time.Time `json:"created"`
	Features []string  `json:"features"`
	Slots    []Slot    `json:"slots"`
	// Removed (format 2) names the slots that were revoked or replaced, so
	// that merging an older authenticated copy of the header (a sync
	// conflict copy) cannot bring them back.
	Removed []RemovedSlot `json:"removed,omitempty"`
}

// RemovedSlot is a tombstone: slot ID was removed at time Removed.
type RemovedSlot struct {
	ID      string    `json:"id"`
	Removed time.Time `json:"removed"`
}

// MaxTriesLimit bounds an attempt-limited slot's max_tries (tpm.MaxTriesLimit).
const MaxTriesLimit = 1000

// Slot types.
const (
	SlotTPM      = "tpm"
	SlotRecovery = "recovery"
)

// Slot wraps the master key once. Every slot wraps the same key.
type Slot struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	Label   string    `json:"label,omitempty"` // e.g. the host name; informational
	// Rev (format 2) counts the changes to this slot under its id (a new
	// password): of two authenticated versions of a slot, the higher wins.
	Rev uint32 `json:"rev,omitempty"`

	// Recovery slot: AES-256-GCM(HKDF(recoveryKey, Salt), Nonce, masterKey).
	Salt    []byte `json:"salt,omitempty"`
	Nonce   []byte `json:"nonce,omitempty"`
	Wrapped []byte `json:"wrapped,omitempty"`

	// TPM slot: password → KDF → authValue of the sealed object.
	KDF *KDFParams `json:"kdf,omitempty"`
	TPM *TPMBlob   `json:"tpm,omitempty"`
}

// TPMBlob is a sealed object as the tpm package produces it, plus the
// attempt-limit state when that feature is on.
type TPMBlob struct {
	Public    []byte   `json:"public"`
	Private   []byte   `json:"private"`
	SRKName   []byte   `json:"srk_name"`
	PCRs      []int    `json:"pcrs,omitempty"`
	PCRValues [][]byte `json:"pcr_values,omitempty"`
	// Attempt-limited slots (tpm.SealLimited): the PIN-fail NV index whose
	// Name the sealed object's PolicySecret is bound to.
	NVIndex  uint32 `json:"nv_index,omitempty"`
	NVName   []byte `json:"nv_name,omitempty"`
	MaxTries uint32 `json:"max_tries,omitempty"`
	// Attempt-limited slots bound to PCRs: the PCR-sealed object whose
	// secret is mixed into the NV index's authValue (tpm/limited.go).
	GatePublic  []byte `json:"gate_public,omitempty"`
	GatePrivate []byte `json:"gate_private,omitempty"`
}

// NewHeader starts a header for a new vault.
func NewHeader(now time.Time) (*Header, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("vault ID: %w", err)
	}
	return &Header{Version: FormatVersion, VaultID: id, Created: now.UTC(), Features: []string{}}, nil
}

func (h *Header) validate() error {
	if len(h.VaultID) != 16 {
		return fmt.Errorf("%w: vault_id has %d bytes, want 16", ErrHeaderFormat, len(h.VaultID))
	}
	for _, f := range h.Features {
		if !slices.Contains(KnownFeatures, f) {
			return &UnknownFeatureError{Feature: f}
		}
	}
	seen := map[string]bool{}
	for i, s := range h.Slots {
		if s.ID == "" || seen[s.ID] {
			return fmt.Errorf("%w: slot %d has an empty or duplicate id %q", ErrHeaderFormat, i, s.ID)
		}
		seen[s.ID] = true
		if err := s.validate(); err != nil {
			return fmt.Errorf("%w: slot %q: %v", ErrHeaderFormat, s.ID, err)
		}
		if h.Version < 2 && s.Rev != 0 {
			return fmt.Errorf("%w: slot %q: rev in a format %d header", ErrHeaderFormat, s.ID, h.Version)
		}
	}
	if h.Version < 2 && len(h.Removed) > 0 {
		return fmt.Errorf("%w: removed slots in a format %d header", ErrHeaderFormat, h.Version)
	}
	if len(h.Removed) > maxRemovedParsed {
		return fmt.Errorf("%w: %d removed slots, at most %d", ErrHeaderFormat, len(h.Removed), maxRemovedParsed)
	}
	gone := map[string]bool{}
	for _, r := range h.Removed {
		if r.ID == "" || gone[r.ID] || seen[r.ID] {
			return fmt.Errorf("%w: removed slot %q is empty, listed twice or still present", ErrHeaderFormat, r.ID)
		}
		gone[r.ID] = true
	}
	return nil
}

func (s *Slot) validate() error {
	switch s.Type {
	case SlotRecovery:
		if len(s.Salt) != 16 || len(s.Nonce) != NonceSize || len(s.Wrapped) != KeySize+TagSize {
			return errors.New("recovery slot fields have wrong sizes")
		}
	case SlotTPM:
		if s.KDF == nil || s.TPM == nil {
			return errors.New("tpm slot lacks kdf or tpm fields")
		}
		if err := s.KDF.validate(); err != nil {
			return err
		}
		if len(s.TPM.Public) == 0 || len(s.TPM.Private) == 0 || len(s.TPM.SRKName) == 0 {
			return errors.New("tpm slot has an empty blob")
		}
		if len(s.TPM.PCRValues) != 0 && len(s.TPM.PCRValues) != len(s.TPM.PCRs) {
			return errors.New("tpm slot: pcr_values does not match pcrs")
		}
		if (s.TPM.NVIndex == 0) != (len(s.TPM.NVName) == 0) || (s.TPM.NVIndex == 0) != (s.TPM.MaxTries == 0) {
			return errors.New("tpm slot: nv_index, nv_name and max_tries go together")
		}
		if (len(s.TPM.GatePublic) == 0) != (len(s.TPM.GatePrivate) == 0) ||
			(len(s.TPM.GatePublic) != 0 && (s.TPM.NVIndex == 0 || len(s.TPM.PCRs) == 0)) {
			return errors.New("tpm slot: gate_public and gate_private go together, on attempt-limited slots with pcrs")
		}
		if s.TPM.MaxTries > MaxTriesLimit {
			return fmt.Errorf("tpm slot: max_tries %d is over %d", s.TPM.MaxTries, MaxTriesLimit)
		}
		for _, p := range s.TPM.PCRs {
			if p < 0 || p > 23 {
				return fmt.Errorf("tpm slot: PCR %d out of range", p)
			}
		}
	default:
		return fmt.Errorf("unknown slot type %q", s.Type)
	}
	return nil
}

// Slot returns the slot with the given id.
func (h *Header) Slot(id string) (*Slot, bool) {
	for i := range h.Slots {
		if h.Slots[i].ID == id {
			return &h.Slots[i], true
		}
	}
	return nil, false
}

// NewSlotID returns a short random slot id with the given prefix.
func NewSlotID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%x", prefix, b)
}
