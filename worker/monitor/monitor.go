// Package monitor keeps the worker's metrics and exposes them to Prometheus.
package monitor

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Monitor owns the worker's Prometheus registry. It is safe for concurrent use.
type Monitor struct {
	reg   *prometheus.Registry
	state prometheus.Gauge
	kafka *prometheus.CounterVec
}

// New returns a Monitor with Go runtime and process collectors registered,
// labelled with the app name and version.
func New(app, version string) *Monitor {
	reg := prometheus.NewRegistry()
	m := &Monitor{
		reg: reg,
		state: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eddy_worker_state",
			Help: "Lifecycle state: 1 STARTING, 2 RECOVERING, 3 RUNNING, 4 PAUSED, 5 STOPPING, 6 STOPPED.",
		}),
		kafka: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eddy_kafka_errors_total",
			Help: "Errors reported by the Kafka client, by librdkafka error code.",
		}, []string{"code"}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "eddy_build_info",
		Help:        "Always 1; labelled with the app and the worker version.",
		ConstLabels: prometheus.Labels{"app": app, "version": version},
	})
	info.Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info, m.state, m.kafka,
	)
	return m
}

// Registry is the registry /metrics serves.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

// SetState records the lifecycle state as its number.
func (m *Monitor) SetState(s int32) { m.state.Set(float64(s)) }

// KafkaError counts one Kafka client error by its code name.
func (m *Monitor) KafkaError(code string) { m.kafka.WithLabelValues(code).Inc() }
