package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The header file's bytes (docs/format.md §3).
//
// Format 2, written by this build: the same copy twice, back to back,
//
//	copy = magic "sealfsVH" (8) ‖ version 2 (uint16) ‖ n (uint32) ‖ body (n) ‖
//	       HMAC-SHA256(headerMACKey, copy[0:14+n]) (32) ‖ SHA-256(copy[0:14+n+32]) (32) ‖ n (uint32)
//
// The first copy is found from the file's start, the second from its end
// (its trailing n), so one damaged byte anywhere, a length field included,
// leaves at least one copy whole; the unkeyed SHA-256 over everything
// before it tells a damaged copy from a whole one before anything is
// unlocked. The HMAC, checked after an unlock, says whether a copy is
// authentic.
//
// Format 1, read only: one copy, magic ‖ version 1 ‖ n ‖ body ‖ HMAC, the
// file exactly 14+n+32 bytes.
//
// The version sits at a fixed offset so a newer vault is refused with a clear
// message before any JSON is parsed. The body is authenticated as raw bytes,
// so no JSON canonicalisation is needed.
const (
	headerPrefix  = 14
	headerSumSize = sha256.Size
	// copyOverhead is a format 2 copy's size besides its body.
	copyOverhead = headerPrefix + headerSumSize + headerMACSize + 4
	// MaxHeaderFileSize is the largest header file a decoder accepts.
	MaxHeaderFileSize = 2 * (copyOverhead + maxHeaderBody)
)

// HeaderFile is a decoded header file: its copies, whole or damaged.
type HeaderFile struct {
	Version int
	// Copies: format 1 has one; format 2 two, the first found from the
	// file's start, the second from its end.
	Copies []HeaderCopy
	// Clean: every copy is whole, they are byte for byte the same and the
	// file holds nothing else; anything else wants a rewrite once the
	// vault is unlocked.
	Clean bool
}

// HeaderCopy is one copy of the header: Header when whole, Err when not.
// Nothing in it is authenticated until Verify.
type HeaderCopy struct {
	Header *Header
	Err    error
	signed []byte // the bytes the MAC covers
	mac    []byte
}

// Verify checks the copy's MAC with the unlocked keys. Only after it
// succeeds may anything in the copy but the slot that unlocked be trusted.
func (c *HeaderCopy) Verify(k *Keys) error {
	if c.Header == nil || !hmac.Equal(headerMAC(k, c.signed), c.mac) {
		return ErrHeaderMAC
	}
	return nil
}

// First returns the first whole copy (there is one whenever
// ParseHeaderFile succeeded).
func (f *HeaderFile) First() *HeaderCopy {
	for i := range f.Copies {
		if f.Copies[i].Header != nil {
			return &f.Copies[i]
		}
	}
	return nil
}

// Marshal encodes and authenticates the header in the current format.
func (h *Header) Marshal(k *Keys) ([]byte, error) {
	body, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encoding vault header: %w", err)
	}
	if len(body) > maxHeaderBody {
		return nil, fmt.Errorf("encoding vault header: body of %d bytes is over %d", len(body), maxHeaderBody)
	}
	c := encodeCopy(FormatVersion, body, nil)
	return finishCopy(append(c, headerMAC(k, c)...)), nil
}

// finishCopy appends the checksum and the trailing length to a format 2
// copy that ends with its MAC, and returns the file: the copy twice.
func finishCopy(c []byte) []byte {
	sum := sha256.Sum256(c)
	c = append(c, sum[:]...)
	c = binary.BigEndian.AppendUint32(c, uint32(len(c)-headerPrefix-headerMACSize-headerSumSize))
	return append(c, c...)
}

func encodeCopy(version int, body, mac []byte) []byte {
	var buf bytes.Buffer
	buf.Write(headerMagic[:])
	_ = binary.Write(&buf, binary.BigEndian, uint16(version))
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(body)))
	buf.Write(body)
	buf.Write(mac)
	return buf.Bytes()
}

func headerMAC(k *Keys, b []byte) []byte {
	m := hmac.New(sha256.New, k.key(offHeaderMAC))
	m.Write(b)
	return m.Sum(nil)
}

// ParseHeaderFile decodes a header file without authenticating it (the key
// is not known yet). It fails only when no copy is whole.
func ParseHeaderFile(b []byte) (*HeaderFile, error) {
	if len(b) > MaxHeaderFileSize {
		return nil, fmt.Errorf("%w: %d bytes is over %d", ErrHeaderFormat, len(b), MaxHeaderFileSize)
	}
	var v1Err error
	if len(b) >= headerPrefix && [8]byte(b[:8]) == headerMagic && binary.BigEndian.Uint16(b[8:]) == 1 {
		c := parseV1(b)
		if c.Err == nil {
			return &HeaderFile{Version: 1, Copies: []HeaderCopy{c}, Clean: true}, nil
		}
		// Perhaps a format 2 file whose version byte was damaged.
		v1Err = c.Err
	}
	f := &HeaderFile{Version: 2, Copies: []HeaderCopy{firstCopy(b), lastCopy(b)}}
	c1, c2 := &f.Copies[0], &f.Copies[1]
	if c1.Err == nil || c2.Err == nil {
		f.Clean = c1.Err == nil && c2.Err == nil && len(c1.signed)+len(c2.signed) == len(b)-2*(copyOverhead-headerPrefix) &&
			bytes.Equal(c1.signed, c2.signed) && bytes.Equal(c1.mac, c2.mac)
		return f, nil
	}
	// Nothing whole: say the most telling thing.
	for _, err := range []error{c1.Err, c2.Err, v1Err} {
		var nv *NewerVersionError
		var uf *UnknownFeatureError
		if errors.As(err, &nv) || errors.As(err, &uf) {
			return nil, err
		}
	}
	if v1Err != nil {
		return nil, v1Err
	}
	return nil, c1.Err
}

// ParseHeader returns the first whole copy of the header file b.
func ParseHeader(b []byte) (*Header, error) {
	f, err := ParseHeaderFile(b)
	if err != nil {
		return nil, err
	}
	return f.First().Header, nil
}

// VerifyHeader checks the MAC of the copy ParseHeader returns.
func VerifyHeader(k *Keys, b []byte) error {
	f, err := ParseHeaderFile(b)
	if err != nil {
		return ErrHeaderMAC
	}
	return f.First().Verify(k)
}

func parseV1(b []byte) HeaderCopy {
	n := binary.BigEndian.Uint32(b[10:])
	if n > maxHeaderBody || int64(len(b)) != headerPrefix+int64(n)+headerMACSize {
		return HeaderCopy{Err: fmt.Errorf("%w: body length %d does not match file size %d", ErrHeaderFormat, n, len(b))}
	}
	h, err := parseBody(b[headerPrefix:headerPrefix+n], 1)
	if err != nil {
		return HeaderCopy{Err: err}
	}
	return HeaderCopy{Header: h, signed: b[:headerPrefix+n], mac: b[headerPrefix+n:]}
}

// firstCopy is the format 2 copy found from the start of b.
func firstCopy(b []byte) HeaderCopy {
	if len(b) < headerPrefix {
		return damaged("the file is %d bytes", len(b))
	}
	n := binary.BigEndian.Uint32(b[10:])
	if n > maxHeaderBody || int64(copyOverhead)+int64(n) > int64(len(b)) {
		if c := checkPrefix(b); c.Err != nil {
			return c
		}
		return damaged("first copy: body length %d does not fit a file of %d bytes", n, len(b))
	}
	return parseV2(b[:copyOverhead+int(n)], "first")
}

// lastCopy is the format 2 copy found from the end of b.
func lastCopy(b []byte) HeaderCopy {
	if len(b) < copyOverhead {
		return damaged("the file is %d bytes", len(b))
	}
	n := binary.BigEndian.Uint32(b[len(b)-4:])
	if n > maxHeaderBody || int64(copyOverhead)+int64(n) > int64(len(b)) {
		return damaged("second copy: body length %d does not fit a file of %d bytes", n, len(b))
	}
	return parseV2(b[len(b)-copyOverhead-int(n):], "second")
}

// checkPrefix refuses a wrong magic or a version this build does not know.
func checkPrefix(c []byte) HeaderCopy {
	if [8]byte(c[:8]) != headerMagic {
		return HeaderCopy{Err: fmt.Errorf("%w: magic %q is not a sealfs vault", ErrHeaderFormat, c[:8])}
	}
	switch v := int(binary.BigEndian.Uint16(c[8:])); {
	case v > FormatVersion:
		return HeaderCopy{Err: &NewerVersionError{Version: v}}
	case v != FormatVersion:
		return damaged("format version %d where 2 belongs", v)
	}
	return HeaderCopy{}
}

// parseV2 decodes one format 2 copy, c exactly its bytes.
func parseV2(c []byte, which string) HeaderCopy {
	if p := checkPrefix(c); p.Err != nil {
		return p
	}
	n := int(binary.BigEndian.Uint32(c[10:]))
	if len(c) != copyOverhead+n || int(binary.BigEndian.Uint32(c[len(c)-4:])) != n {
		return damaged("%s copy: its two length fields differ", which)
	}
	signed := c[:headerPrefix+n]
	macEnd := headerPrefix + n + headerMACSize
	sum := sha256.Sum256(c[:macEnd])
	if !bytes.Equal(sum[:], c[macEnd:macEnd+headerSumSize]) {
		return damaged("%s copy: checksum mismatch", which)
	}
	h, err := parseBody(c[headerPrefix:headerPrefix+n], 2)
	if err != nil {
		return HeaderCopy{Err: err}
	}
	return HeaderCopy{Header: h, signed: signed, mac: c[headerPrefix+n : macEnd]}
}

// ErrHeaderDamaged: a copy of the header does not match its checksum or
// its lengths (an accidental change: a sync glitch, a bad sector).
var ErrHeaderDamaged = fmt.Errorf("%w: damaged", ErrHeaderFormat)

func damaged(format string, args ...any) HeaderCopy {
	return HeaderCopy{Err: fmt.Errorf("%w: %s", ErrHeaderDamaged, fmt.Sprintf(format, args...))}
}

// parseBody decodes and validates the JSON body of a format version
// header.
func parseBody(body []byte, version int) (*Header, error) {
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
	h.Version = version
	if err := h.validate(); err != nil {
		return nil, err
	}
	return h, nil
}
