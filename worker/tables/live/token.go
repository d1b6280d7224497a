package live

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBadPageToken: the page token is not one a scan of this table
// returned.
var ErrBadPageToken = errors.New("bad page token")

// pageTokenV1 is the version byte of page tokens: v1 is
// base64url(0x01, partition as 4 big-endian bytes, last key).
const pageTokenV1 = 1

// EncodePageToken is the page token continuing a scan after (key, part).
func EncodePageToken(part int32, key []byte) string {
	b := make([]byte, 5, 5+len(key))
	b[0] = pageTokenV1
	binary.BigEndian.PutUint32(b[1:], uint32(part))
	return base64.RawURLEncoding.EncodeToString(append(b, key...))
}

// DecodePageToken is where a page token continues a scan; "" is the start.
// A token EncodePageToken did not make is ErrBadPageToken (wrapped).
func DecodePageToken(token string) (ScanFrom, error) {
	if token == "" {
		return ScanFrom{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 6 || b[0] != pageTokenV1 {
		return ScanFrom{}, fmt.Errorf("%w: %q is not a page token returned by Scan", ErrBadPageToken, token)
	}
	part := int32(binary.BigEndian.Uint32(b[1:5]))
	if part < 0 {
		return ScanFrom{}, fmt.Errorf("%w: %q is not a page token returned by Scan", ErrBadPageToken, token)
	}
	return ScanFrom{Set: true, Partition: part, Key: b[5:]}, nil
}
