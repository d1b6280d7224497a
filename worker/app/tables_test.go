package app

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

func TestParseClientID(t *testing.T) {
	tests := []struct {
		in       string
		id, addr string
		ok       bool
	}{
		{"eddy|w1|127.0.0.1:7000", "w1", "127.0.0.1:7000", true},
		{"eddy|w|[::1]:1|x", "w", "[::1]:1|x", true},
		{"rdkafka", "", "", false},
		{"other|w|a", "", "", false},
	}
	for _, tt := range tests {
		id, addr, ok := ParseClientID(tt.in)
		if id != tt.id || addr != tt.addr || ok != tt.ok {
			t.Errorf("ParseClientID(%q) = %q, %q, %v; want %q, %q, %v", tt.in, id, addr, ok, tt.id, tt.addr, tt.ok)
		}
	}
}
