// Package tpm seals sealfs's master key in a TPM 2.0 behind the user's
// password, and unseals it again.
//
// A slot is a KEYEDHASH object created under the storage root key (SRK, ECC
// P-256 from tpm2.ECCSRKTemplate, re-derived from the owner seed at each use)
// with the password as authValue and NoDA clear, so the TPM's
// dictionary-attack lockout throttles guessing. Optionally a policy binds it
// to PCR values as well; then, with other PCR values, no command answers
// the password at all (adminWithPolicy: no ObjectChangeAuth oracle). Every session that carries a secret is salted with
// the SRK and encrypts its parameter (AES-128-CFB), so neither a bus sniffer
// nor an interposer learns the password or the key; Unseal compares the
// SRK's Name with the one recorded at seal time before sending anything.
//
// SealLimited makes the other kind of slot: one that allows a fixed number
// of consecutive wrong passwords, counted by the TPM itself in a PIN-fail NV
// index, and then never opens again (design and limits in limited.go).
// sealfs makes this kind by default: the DA lockout is no limit on a
// machine whose lockout authorisation is empty, where anyone who may use
// the TPM can reset it (TPM2_DictionaryAttackLockReset), and a PIN-fail
// index is untouched by that reset.
//
// swtpm can stand in for a hardware TPM ("swtpm:DIR"): then the slot is only
// as safe as DIR, since whoever copies DIR can run the TPM without lockout.
//
// Behaviour of go-tpm v0.9.8 and swtpm 0.7.1 that shaped the code (measured,
// not documented upstream): go-tpm truncates HMAC keys at the first 0x00
// byte; its tcp transport does not retry TPM_RC_RETRY; swtpm has 3 transient
// object slots, no resource manager, and raises the DA counter on the next
// start if it was stopped without TPM2_Shutdown.
package tpm
