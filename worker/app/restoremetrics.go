package app

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Table recovery on /metrics, read at scrape time from the restores under
// way (the same progress GetStatus.recovery shows).
var (
	descRestoring = prometheus.NewDesc("eddy_table_restoring_partitions",
		"Table partitions being restored from their changelogs (no event of them is delivered meanwhile).", nil, nil)
	descRestoreRemaining = prometheus.NewDesc("eddy_table_restore_remaining_records",
		"Changelog records a restore under way still has to read.", []string{"table", "partition"}, nil)
	descRestored = prometheus.NewDesc("eddy_table_restored_records_total",
		"Changelog records read by restores since the worker started (standby replicas not included).", []string{"table"}, nil)
)

type restoreCollector struct{ a *App }

func (c restoreCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRestoring
	ch <- descRestoreRemaining
	ch <- descRestored
}

func (c restoreCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.mu.Lock()
	defer a.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descRestoring, prometheus.GaugeValue, float64(len(a.recovery)))
	for k, p := range a.recovery {
		ch <- prometheus.MustNewConstMetric(descRestoreRemaining, prometheus.GaugeValue, float64(p.Remaining()),
			k.table, strconv.Itoa(int(k.partition)))
	}
	for _, t := range a.cfg.Tables {
		ch <- prometheus.MustNewConstMetric(descRestored, prometheus.CounterValue, float64(a.restored[t.Name]), t.Name)
	}
}
