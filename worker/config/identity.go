package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WorkerIDFile is where, under exactly_once, a worker without a configured
// worker_id keeps the identity it created on its first start, in DataDir.
const WorkerIDFile = "worker-id"

// ResolveWorkerID sets WorkerID when the app file left it empty: under
// at_least_once to "<host>-<pid>"; under exactly_once to the identity kept
// in <DataDir>/worker-id, creating "<host>-<random>" there on first start,
// so that the worker's transactional id survives restarts.
func (c *Config) ResolveWorkerID(host string, pid int) error {
	if c.WorkerID != "" {
		return nil
	}
	if c.ProcessingGuarantee != ExactlyOnce {
		c.WorkerID = fmt.Sprintf("%s-%d", host, pid)
		return nil
	}
	path := filepath.Join(c.DataDir, WorkerIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if id == "" {
			return fmt.Errorf("worker_id: %s is empty: delete it to create a new identity, or set worker_id", path)
		}
		c.WorkerID = id
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("worker_id: read %s: %w", path, err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	id := host + "-" + hex.EncodeToString(r[:])
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return fmt.Errorf("worker_id: create data_dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return fmt.Errorf("worker_id: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("worker_id: %w", err)
	}
	c.WorkerID = id
	return nil
}
