package agents

func header(k, v string) Header { return Header{Key: k, Value: []byte(v)} }

// cloneHeaders copies hs (nil when empty), so that appending to the copy
// leaves hs and its backing array alone.
func cloneHeaders(hs []Header) []Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]Header, len(hs))
	copy(out, hs)
	return out
}
