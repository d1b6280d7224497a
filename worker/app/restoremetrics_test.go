package app

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eddy-streams/eddy/worker/config"
	"github.com/eddy-streams/eddy/worker/tables"
)

// TestRestoreMetrics: /metrics shows the restores under way, the records
// each still has to read, and the records read in all, counting a retried
// restore's records once per read and leaving standby tailing out.
func TestRestoreMetrics(t *testing.T) {
	cfg := &config.Config{App: "wc", Tables: []config.Table{{Name: "counts"}, {Name: "other"}}}
	a := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	check := func(step, want string) {
		t.Helper()
		err := testutil.GatherAndCompare(a.Metrics(), strings.NewReader(want),
			"eddy_table_restoring_partitions", "eddy_table_restore_remaining_records", "eddy_table_restored_records_total")
		if err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	const head = `# HELP eddy_table_restore_remaining_records Changelog records a restore under way still has to read.
# TYPE eddy_table_restore_remaining_records gauge
`
	const restoring = `# HELP eddy_table_restoring_partitions Table partitions being restored from their changelogs (no event of them is delivered meanwhile).
# TYPE eddy_table_restoring_partitions gauge
`
	const total = `# HELP eddy_table_restored_records_total Changelog records read by restores since the worker started (standby replicas not included).
# TYPE eddy_table_restored_records_total counter
`
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, To: 1000, Position: 400, Records: 400})
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 5, Standby: true, To: 50, Position: 10, Records: 10})
	check("one restore at 400 of 1000", head+`eddy_table_restore_remaining_records{partition="3",table="counts"} 600
`+restoring+`eddy_table_restoring_partitions 1
`+total+`eddy_table_restored_records_total{table="counts"} 400
eddy_table_restored_records_total{table="other"} 0
`)
	// The restore fails and starts again: its 150 records are read again.
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, To: 1000, Position: 150, Records: 150})
	a.onRestoreProgress(tables.Progress{Table: "counts", Partition: 3, To: 1000, Position: 1000, Records: 1000, Done: true})
	check("done", restoring+`eddy_table_restoring_partitions 0
`+total+`eddy_table_restored_records_total{table="counts"} 1400
eddy_table_restored_records_total{table="other"} 0
`)
}
