package live

import (
	"errors"
	"testing"
)

func TestPageToken(t *testing.T) {
	for _, key := range [][]byte{[]byte("a"), {0, 0xff, '\n'}, []byte("word")} {
		tok := EncodePageToken(7, key)
		from, err := DecodePageToken(tok)
		if err != nil || !from.Set || from.Partition != 7 || string(from.Key) != string(key) {
			t.Errorf("decode(encode(7, %q)) = %+v, %v", key, from, err)
		}
	}
	if from, err := DecodePageToken(""); err != nil || from.Set {
		t.Errorf("empty token = %+v, %v; want the start", from, err)
	}
	for _, bad := range []string{"!!", "AQ", "AgAAAAFh", EncodePageToken(-1, []byte("a"))} {
		if _, err := DecodePageToken(bad); !errors.Is(err, ErrBadPageToken) {
			t.Errorf("decode(%q) err %v, want ErrBadPageToken", bad, err)
		}
	}
}
