// Package live is the runtime of the table partitions a worker owns
// (docs/tables.md, docs/architecture.md#tables-in-delivery): what the
// agents read and write while they process events, and what the table
// service answers.
//
//   - Part: one table partition of an owned source partition: the overlay
//     of mutations not yet in the store, their flush to the store once per
//     commit cycle, window expiry sweeps, the state reads delivered with
//     events (with their failure hold), and under exactly-once the
//     transaction log (txn.go: apply what committed, drop what aborted).
//   - Owned, View: reads of a table over the partitions a worker owns —
//     Get, Scan and their merge in (key, partition) order, counts.
//   - Recovery: restoring a newly assigned table partition (a standby's
//     store taken over, or a restore from disk and the changelog), retried
//     with backoff.
//   - Service: the table service's reads across workers — a Get forwarded
//     to the owner, a Scan fanned out to the owners and merged, window keys
//     decoded for the client — over Local (worker/app) and Peers (the other
//     workers, which server/ reaches over gRPC); FindOwner and GroupOwners
//     route a partition to its owner; page tokens continue a scan.
//
// The agents manager owns the Parts (they are not safe for concurrent use)
// and calls them on its Run goroutine; it keeps what is delivery (which
// records wait, producing the changelog records, the memory cap), and the
// Parts hand back the held bytes to release. Storage, restores and
// standbys are package tables'. The package imports no gRPC.
package live
