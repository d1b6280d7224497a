package live

import "github.com/eddy-streams/eddy/worker/tables"

// Exactly-once (docs/kafka.md#exactly-once): a result's mutations join the
// overlay at once (the next event of the key reads them: read your writes)
// and are logged with the transaction they are handed over in; a committed
// transaction's mutations go to the store (which so holds only committed
// state), an aborted one's are dropped. The store's checkpoint is the
// highest changelog offset of the committed mutations it holds.

// TxnMut is one mutation of the open (or a not yet applied) transaction,
// in a table partition's transaction log.
type TxnMut struct {
	mut tables.Mutation
	seq int64  // order of application within the table partition
	txn uint64 // the transaction it was handed over in; 0 while held
	off int64  // its changelog offset once acknowledged; -1 before
	n   int64  // bytes held against the memory cap from its hand-over until applied or dropped
}

// HandedOver notes that the mutation went to the producer in transaction
// txn; it returns the bytes to hold from now until it is applied or
// dropped.
func (e *TxnMut) HandedOver(txn uint64) (hold int64) {
	e.txn = txn
	return e.n
}

// Acked notes the changelog offset Kafka acknowledged the mutation's record
// at.
func (e *TxnMut) Acked(off int64) { e.off = off }

// Log adds tm to the overlay and the transaction log, held (in no
// transaction yet); n is the bytes it will hold once handed over.
func (t *Part) Log(tm tables.Mutation, n int64) *TxnMut {
	t.seq++
	// Its bytes are held once it is handed over, not before: a held event
	// may wait for an earlier one that the cap would keep from being
	// delivered again.
	e := &TxnMut{mut: tm, seq: t.seq, off: -1, n: n}
	t.txnLog = append(t.txnLog, e)
	t.overlay[string(tm.Key)] = overlayValue{value: tm.Value, deleted: tm.Delete, off: e.seq}
	return e
}

// ApplyCommitted applies the mutations of the transactions up to committed
// to the store, in the order they were made, with the highest known
// changelog offset among them as the checkpoint; the overlay keeps the
// rest. It returns the held bytes to release. On failure they stay (reads
// stay right) and the next commit tries again.
func (t *Part) ApplyCommitted(committed uint64) (released int64) {
	if t.store == nil || len(t.txnLog) == 0 {
		return 0
	}
	var muts []tables.Mutation
	ckpt := int64(-1)
	for _, e := range t.txnLog {
		if e.txn != 0 && e.txn <= committed {
			muts = append(muts, e.mut)
			ckpt = max(ckpt, e.off)
		}
	}
	if len(muts) == 0 {
		return 0
	}
	off := tables.NoOffset
	if ckpt > t.store.LastOffset() {
		off = ckpt
	}
	if err := t.store.Apply(muts, off); err != nil {
		t.writeFailed(err, ckpt)
		return 0
	}
	t.writeWorks()
	keep := t.txnLog[:0]
	for _, e := range t.txnLog {
		if e.txn != 0 && e.txn <= committed {
			released += e.n
			k := string(e.mut.Key)
			if ov, ok := t.overlay[k]; ok && ov.off == e.seq {
				delete(t.overlay, k)
			}
			delete(t.expiring, k)
			continue
		}
		keep = append(keep, e)
	}
	clear(t.txnLog[len(keep):])
	t.txnLog = keep
	return released
}

// DropUncommitted drops the mutations no transaction up to committed
// holds, and rebuilds the overlay from those that wait to be applied. It
// returns the held bytes to release.
func (t *Part) DropUncommitted(committed uint64) (released int64) {
	keep := t.txnLog[:0]
	for _, e := range t.txnLog {
		if e.txn != 0 && e.txn <= committed {
			keep = append(keep, e)
			continue
		}
		if e.txn != 0 { // handed over: its bytes are held
			released += e.n
		}
		delete(t.expiring, string(e.mut.Key))
	}
	clear(t.txnLog[len(keep):])
	t.txnLog = keep
	clear(t.overlay)
	for _, e := range keep {
		t.overlay[string(e.mut.Key)] = overlayValue{value: e.mut.Value, deleted: e.mut.Delete, off: e.seq}
	}
	return released
}
