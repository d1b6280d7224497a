package transport

// SetPollHook makes the reader's poll goroutine call f with the offset of
// every record it polled, before routing it; nil removes the hook. Tests
// use it to hold a record between Poll and its delivery.
func SetPollHook(f func(offset int64)) {
	if f == nil {
		pollHook.Store(nil)
		return
	}
	pollHook.Store(&f)
}
