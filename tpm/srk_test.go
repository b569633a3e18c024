package tpm

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// fakeSRKTPM answers TPM2_CreatePrimary with pub and name, and everything
// else (the FlushContext) with success.
type fakeSRKTPM struct {
	pub  tpm2.TPMTPublic
	name tpm2.TPM2BName
}

func (f fakeSRKTPM) Send(cmd []byte) ([]byte, error) {
	if tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:10])) != tpm2.TPMCCCreatePrimary {
		return []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}, nil
	}
	var params bytes.Buffer
	params.Write(tpm2.Marshal(tpm2.New2B(f.pub)))
	params.Write([]byte{0, 0}) // creationData
	params.Write(tpm2.Marshal(tpm2.TPM2BDigest{}))
	params.Write(tpm2.Marshal(tpm2.TPMTTKCreation{Tag: tpm2.TPMSTCreation, Hierarchy: tpm2.TPMRHOwner}))
	params.Write(tpm2.Marshal(f.name))
	var rsp bytes.Buffer
	rsp.Write([]byte{0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0}) // TPM_ST_SESSIONS, size below, TPM_RC_SUCCESS
	rsp.Write(binary.BigEndian.AppendUint32(nil, 0x80000000))
	rsp.Write(binary.BigEndian.AppendUint32(nil, uint32(params.Len())))
	rsp.Write(params.Bytes())
	rsp.Write([]byte{0, 0, 1, 0, 0}) // password session: no nonce, continueSession, no hmac
	b := rsp.Bytes()
	binary.BigEndian.PutUint32(b[2:6], uint32(len(b)))
	return b, nil
}

func (fakeSRKTPM) Close() error { return nil }

func eccPublic(t *testing.T, fill byte) tpm2.TPMTPublic {
	t.Helper()
	pub := tpm2.ECCSRKTemplate
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{fill}, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{fill + 1}, 32)},
	})
	return pub
}

// An interposer that returns the genuine SRK Name with a public key of its
// own must not get past createSRK: the Name is what the slot pins, the public
// key is what sessions are salted to.
func TestCreateSRKRejectsPublicThatDoesNotMatchName(t *testing.T) {
	genuine := eccPublic(t, 1)
	name, err := tpm2.ObjectName(&genuine)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	ok := &TPM{tpm: fakeSRKTPM{pub: genuine, name: *name}, log: log}
	s, err := ok.createSRK()
	if err != nil {
		t.Fatalf("consistent SRK refused: %v", err)
	}
	if !bytes.Equal(s.name.Buffer, name.Buffer) {
		t.Fatalf("SRK name %x, want %x", s.name.Buffer, name.Buffer)
	}

	bad := &TPM{tpm: fakeSRKTPM{pub: eccPublic(t, 7), name: *name}, log: log}
	if _, err := bad.createSRK(); err == nil || !strings.Contains(err.Error(), "does not match its Name") {
		t.Fatalf("SRK with a foreign public key and the genuine Name accepted (err %v)", err)
	}
}
