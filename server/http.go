package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eddy-streams/eddy/worker/app"
)

// HTTPOptions configure HTTPHandler.
type HTTPOptions struct {
	// Pprof serves /debug/pprof/ behind Token (monitor.pprof).
	// Default: false: not served (404).
	Pprof bool
	// Token is required as "authorization: Bearer <token>" on
	// /debug/pprof/. Pprof needs it: without one profiles are not served.
	Token string
	// Dashboard, if set, serves / and /dashboard/ (Server.Dashboard).
	// Default: nil (no dashboard).
	Dashboard http.Handler
}

// HTTPHandler serves the worker's HTTP endpoints:
//   - /healthz: 200 while the process is alive (liveness);
//   - /readyz: 200 while RUNNING or PAUSED, else 503 with the state (readiness);
//   - /metrics: Prometheus text format from reg;
//   - /debug/pprof/: Go profiles (net/http/pprof), only with opts.Pprof
//     and behind opts.Token;
//   - / and /dashboard/: the web dashboard, when opts.Dashboard is set
//     (Server.Dashboard, docs/dashboard.md).
//
// Health and metrics need no token by design: probes and scrapers read
// them, and they hold no table data (docs/operations.md#security).
func HTTPHandler(state func() app.State, reg prometheus.Gatherer, opts HTTPOptions) http.Handler {
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
	if opts.Pprof && opts.Token != "" {
		// Profiles for `go tool pprof -H "Authorization: Bearer $TOKEN"
		// http://HTTP_ADDR/debug/pprof/profile`: they show the process's
		// memory, so they are behind the token.
		guard := bearerGuard(opts.Token)
		mux.Handle("/debug/pprof/", guard(pprof.Index))
		mux.Handle("/debug/pprof/profile", guard(pprof.Profile))
		mux.Handle("/debug/pprof/symbol", guard(pprof.Symbol))
		mux.Handle("/debug/pprof/trace", guard(pprof.Trace))
	}
	if opts.Dashboard != nil {
		mux.Handle("GET /{$}", opts.Dashboard)
		mux.Handle("/dashboard/", opts.Dashboard)
	}
	return mux
}

// bearerGuard serves h only to requests with "Authorization: Bearer
// <token>", compared in constant time.
func bearerGuard(token string) func(http.HandlerFunc) http.Handler {
	return func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || !TokenMatches(token, got) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="eddy"`)
				http.Error(w, "profiles need the worker's token: send \"Authorization: Bearer <token>\"", http.StatusUnauthorized)
				return
			}
			h(w, r)
		})
	}
}
