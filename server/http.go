package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eddy-streams/eddy/worker/app"
)

// HTTPHandler serves the worker's HTTP endpoints:
//   - /healthz: 200 while the process is alive (liveness);
//   - /readyz: 200 while RUNNING or PAUSED, else 503 with the state (readiness);
//   - /metrics: Prometheus text format from reg;
//   - /debug/pprof/: Go profiles (net/http/pprof);
//   - / and /dashboard/: the web dashboard, when dash is not nil
//     (Server.Dashboard, docs/monitoring.md#web-dashboard).
func HTTPHandler(state func() app.State, reg prometheus.Gatherer, dash http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := state()
		if !st.Serving() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles for `go tool pprof http://HTTP_ADDR/debug/pprof/profile`;
	// the listener is on loopback unless configured otherwise.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if dash != nil {
		mux.Handle("GET /{$}", dash)
		mux.Handle("/dashboard/", dash)
	}
	return mux
}
