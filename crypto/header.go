package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Vault header (docs/format.md §3): the file HeaderFileName at the cipher
// directory's root.
//
//	magic "sealfsVH" (8) ‖ version uint16 BE ‖ body length uint32 BE ‖
//	body (JSON, UTF-8) ‖ HMAC-SHA256(headerMACKey, all preceding bytes) (32)
//
// The version sits at a fixed offset so a newer vault is refused with a clear
// message before any JSON is parsed. The body is authenticated as raw bytes,
// so no JSON canonicalisation is needed. Slots can only be read before the
// MAC is checked (the MAC key comes from the master key they wrap), so the
// MAC is verified right after unlocking and the vault is refused on failure.
const (
	HeaderFileName = "sealfs.vault"
	// FormatVersion is the vault format this build writes and reads.
	FormatVersion = 1
	// maxHeaderBody bounds what a decoder will allocate for the JSON body.
	maxHeaderBody = 1 << 20
	headerMACSize = sha256.Size
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

// Marshal encodes and authenticates the header.
func (h *Header) Marshal(k *Keys) ([]byte, error) {
	body, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encoding vault header: %w", err)
	}
	var buf bytes.Buffer
	buf.Write(headerMagic[:])
	_ = binary.Write(&buf, binary.BigEndian, uint16(FormatVersion))
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(body)))
	buf.Write(body)
	buf.Write(headerMAC(k, buf.Bytes()))
	return buf.Bytes(), nil
}

func headerMAC(k *Keys, b []byte) []byte {
	m := hmac.New(sha256.New, k.key(offHeaderMAC))
	m.Write(b)
	return m.Sum(nil)
}

// ParseHeader decodes a vault header without authenticating it (the key is
// not known yet). Call VerifyHeader with the unlocked keys before trusting
// anything but the slots.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < 14 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrHeaderFormat, len(b))
	}
	if [8]byte(b[:8]) != headerMagic {
		return nil, fmt.Errorf("%w: magic %q is not a sealfs vault", ErrHeaderFormat, b[:8])
	}
	v := int(binary.BigEndian.Uint16(b[8:]))
	if v > FormatVersion {
		return nil, &NewerVersionError{Version: v}
	}
	if v != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d is unknown", ErrHeaderFormat, v)
	}
	n := binary.BigEndian.Uint32(b[10:])
	if n > maxHeaderBody || int64(len(b)) != 14+int64(n)+headerMACSize {
		return nil, fmt.Errorf("%w: body length %d does not match file size %d", ErrHeaderFormat, n, len(b))
	}
	body := b[14 : 14+n]
	h := &Header{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(h); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrHeaderFormat, err)
	}
	// More() misses a stray '}' or ']'; only a clean EOF means nothing follows.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the body", ErrHeaderFormat)
	}
	h.Version = v
	if err := h.validate(); err != nil {
		return nil, err
	}
	return h, nil
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

// VerifyHeader checks the header MAC of the raw file b with the unlocked
// keys. Only after it succeeds may the header be rewritten.
func VerifyHeader(k *Keys, b []byte) error {
	if len(b) < 14+headerMACSize {
		return ErrHeaderMAC
	}
	n := len(b) - headerMACSize
	if !hmac.Equal(headerMAC(k, b[:n]), b[n:]) {
		return ErrHeaderMAC
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
