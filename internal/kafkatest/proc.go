package kafkatest

import (
	"errors"
	"syscall"
)

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// processAlive reports whether pid still runs (a zombie child counts as
// gone: the broker is started detached, so it is not ours to reap).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || !errors.Is(err, syscall.ESRCH)
}
