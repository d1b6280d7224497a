package app

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/eddy-streams/eddy/worker/transport"
)

// transactionalID is the worker's transactional id under exactly_once:
// <app>-<worker_id>, the same after a restart (docs/kafka.md#exactly-once).
func (a *App) transactionalID() string { return a.cfg.App + "-" + a.cfg.WorkerID }

// identityProbe bounds the dial that tells a live twin from a dead
// predecessor; identityCheckFor how long the group is asked.
const (
	identityProbe    = time.Second
	identityCheckFor = 30 * time.Second
)

// checkIdentity refuses to start when another live worker of the group
// has this worker's id: under exactly_once both would use one
// transactional id, and each start would fence the other's transactions.
// A member with the same id is this worker's predecessor when it
// advertised the same address (this process holds it now) or when nothing
// answers at its address (it died and its membership has not expired yet).
func (a *App) checkIdentity(ctx context.Context, d groupDescriber) error {
	// A new cluster's group coordinator may take a while to answer its
	// first question (the offsets topic is created then): ask again for a
	// while, then start without the check rather than not at all.
	var ms []transport.GroupMember
	var err error
	deadline := time.Now().Add(identityCheckFor)
	for {
		ms, err = d.DescribeGroup(ctx, a.cfg.App)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		a.log.Warn("exactly_once: could not describe the group to check that no live worker has this worker id; starting anyway (two live workers with one id fence each other's transactions)",
			"worker_id", a.cfg.WorkerID, "err", err)
		return ctx.Err()
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
