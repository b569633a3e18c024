package crypto

import (
	"encoding/json"
	"fmt"
)

// EditUnauthenticated re-encodes the header file raw after edit changed its
// body, keeping the old MAC: the change anyone who can write the cipher
// folder can make, since the checksum of a format 2 copy is unkeyed. The
// result parses, but fails Verify unless edit changed nothing. For tests
// and for tools that show what a tampered header does; sealfs never calls
// it.
func EditUnauthenticated(raw []byte, edit func(*Header)) ([]byte, error) {
	f, err := ParseHeaderFile(raw)
	if err != nil {
		return nil, err
	}
	c := f.First()
	edit(c.Header)
	body, err := json.MarshalIndent(c.Header, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encoding vault header: %w", err)
	}
	if f.Version == 1 {
		return encodeCopy(1, body, c.mac), nil
	}
	return finishCopy(encodeCopy(2, body, c.mac)), nil
}
