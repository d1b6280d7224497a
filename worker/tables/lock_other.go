//go:build !unix

package tables

import (
	"fmt"
	"os"
	"sync"
)

// lockFile guards path within this process only: there is no portable
// advisory lock outside unix.
func lockFile(path string) (unlock func() error, err error) {
	if _, loaded := heldLocks.LoadOrStore(path, true); loaded {
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		heldLocks.Delete(path)
		return nil, err
	}
	return func() error {
		heldLocks.Delete(path)
		return f.Close()
	}, nil
}

var heldLocks sync.Map
