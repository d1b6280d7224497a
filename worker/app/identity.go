package app

import (
	"context"
	"fmt"
	"net"
	"time"
)

// transactionalID is the worker's transactional id under exactly_once:
// <app>-<worker_id>, the same after a restart (docs/kafka.md#exactly-once).
func (a *App) transactionalID() string { return a.cfg.App + "-" + a.cfg.WorkerID }

// identityProbe bounds the dial that tells a live twin from a dead
// predecessor.
const identityProbe = time.Second

// checkIdentity refuses to start when another live worker of the group
// has this worker's id: under exactly_once both would use one
// transactional id, and each start would fence the other's transactions.
// A member with the same id is this worker's predecessor when it
// advertised the same address (this process holds it now) or when nothing
// answers at its address (it died and its membership has not expired yet).
func (a *App) checkIdentity(ctx context.Context, d groupDescriber) error {
	ms, err := d.DescribeGroup(ctx, a.cfg.App)
	if err != nil {
		return fmt.Errorf("exactly_once: describe the group to check that worker id %q is not in use: %w", a.cfg.WorkerID, err)
	}
	self := a.advertised()
	for _, m := range ms {
		id, addr, ok := ParseClientID(m.ClientID)
		if !ok || id != a.cfg.WorkerID || addr == self {
			continue
		}
		c, err := (&net.Dialer{Timeout: identityProbe}).DialContext(ctx, "tcp", addr)
		if err != nil {
			a.log.Info("exactly_once: an earlier worker with this id is still a group member but does not answer; its open transaction is aborted now",
				"worker_id", id, "its_address", addr)
			continue
		}
		_ = c.Close()
		return fmt.Errorf("exactly_once: worker id %q is in use by a live member of group %q at %s: two live workers with one id (transactional id %q) would fence each other's transactions; give each worker its own worker_id (or data_dir)",
			a.cfg.WorkerID, a.cfg.App, addr, a.transactionalID())
	}
	return nil
}
