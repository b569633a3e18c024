package crypto

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// KDFParams are the Argon2id parameters of one TPM slot.
type KDFParams struct {
	Alg       string `json:"alg"` // "argon2id"
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// Default Argon2id cost: RFC 9106 §4's second recommended option (t=3,
// m=64 MiB, p=4). The TPM (an attempt-limited slot's PIN counter, or the
// dictionary-attack lockout), not the KDF, is what throttles online
// guessing; the KDF is there so that a captured authValue exchange or a
// leaked TPM object cannot be brute-forced cheaply offline.
// Measured 0.65–1.0 s on the reference machine under load, ≈ 0.2 s idle
// (docs/format.md §8).
const (
	defaultTime    = 3
	defaultMemory  = 64 << 10
	defaultThreads = 4
	// Decoders refuse costs beyond these before anything is allocated. The
	// header's KDF parameters are read before its MAC can be checked, so
	// they bound what an edited header can make an unlock spend: sealfs
	// only ever writes the defaults, and the bounds leave room for twice
	// the memory and one more pass, no more (worst case measured 1.7–2.2 s
	// and 128 MiB against the default's 0.65–1.0 s and 64 MiB).
	maxTime    = 4
	maxMemory  = 128 << 10 // KiB: 128 MiB
	maxThreads = 4
)

// NewKDFParams returns default parameters with a fresh 16-byte salt.
func NewKDFParams() (*KDFParams, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("kdf salt: %w", err)
	}
	return &KDFParams{Alg: "argon2id", Salt: salt, Time: defaultTime, MemoryKiB: defaultMemory, Threads: defaultThreads}, nil
}

func (p *KDFParams) validate() error {
	switch {
	case p.Alg != "argon2id":
		return fmt.Errorf("unknown kdf %q", p.Alg)
	case len(p.Salt) < 16 || len(p.Salt) > 64:
		return fmt.Errorf("kdf salt has %d bytes", len(p.Salt))
	case p.Time < 1 || p.Time > maxTime, p.MemoryKiB < 8*uint32(max(p.Threads, 1)) || p.MemoryKiB > maxMemory,
		p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("kdf cost t=%d m=%dKiB p=%d out of range", p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

// AuthValueSize is the length of the TPM authValue DeriveAuthValue returns.
const AuthValueSize = 32

// DeriveAuthValue turns a password into the sealed object's authValue:
// base64(Argon2id(password, salt)[:24]). The base64 text (32 bytes, the
// SHA-256 digest size that bounds an authValue) never contains a 0x00 byte,
// which go-tpm v0.9.8's HMAC sessions would silently truncate at.
func DeriveAuthValue(password []byte, p *KDFParams) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if len(password) == 0 {
		return nil, errors.New("empty password")
	}
	raw := argon2.IDKey(password, p.Salt, p.Time, p.MemoryKiB, p.Threads, 24)
	defer clear(raw)
	out := make([]byte, AuthValueSize)
	base64.StdEncoding.Encode(out, raw)
	return out, nil
}
