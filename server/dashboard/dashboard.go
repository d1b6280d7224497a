// Package dashboard serves the worker's web dashboard on its HTTP listener
// (docs/dashboard.md): a page (plain HTML, CSS and JS,
// embedded) that polls one JSON endpoint every second and draws the app's
// workers, agents, partitions, charts of the last 15 minutes, restores,
// standbys, tables with a key look-up, and recent warnings and errors.
//
// It is a thin adapter over the runtime's query interfaces (Core) and the
// gRPC layer's forwarded reads (Config.Get, Config.PeerStatus); it keeps
// only what the runtime does not: a ring buffer of samples for the charts
// and a list of recent events, both filled by Run once a second whether or
// not anyone looks.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eddy-streams/eddy/worker/app"
	"github.com/eddy-streams/eddy/worker/monitor"
)

//go:embed static
var static embed.FS

// Core is what the dashboard reads from the worker runtime; *app.App
// implements it. Methods must be safe for concurrent use.
type Core interface {
	Status() app.Status
	AgentInfos() []app.AgentInfo
	Snapshot() monitor.Snapshot
	TableInfos(ctx context.Context) ([]app.TableInfo, error)
	Members(ctx context.Context, refresh bool) ([]app.Member, error)
	StandbyLags() []app.StandbyLag
	CommitFailures() uint64
	Pause(agent string) (app.State, []string, error)
	Resume(agent string) (app.State, []string, error)
}

// GetResult is a table read's answer.
type GetResult struct {
	Value     []byte
	Partition int32
	ServedBy  string
}

// Peer is what another worker of the group says about itself.
type Peer struct {
	WorkerID  string
	HTTPAddr  string
	State     string
	Version   string
	StartedAt time.Time
	Assigned  int
}

// Config configures the dashboard.
type Config struct {
	// Token, when set, enables the pause and resume buttons for a browser
	// that enters it (and, with ProtectReads, is needed to see anything).
	// A token is accepted only over TLS or from a loopback address.
	// Default: none (the dashboard is read-only).
	Token string
	// ProtectReads requires the token for every read too (the page asks
	// for it). Default: false.
	ProtectReads bool
	// Get answers a table read, asking the key's owner when another worker
	// has it (the gRPC layer's TableService.Get). Required.
	Get func(ctx context.Context, table string, key []byte) (GetResult, error)
	// PeerStatus asks the worker at a gRPC address for its status.
	// Default: other workers are listed without state, version and uptime.
	PeerStatus func(ctx context.Context, addr string) (Peer, error)
	// Logger receives errors the page cannot show. Required.
	Logger *slog.Logger
	// Interval is the sampling period of Run. Default: 1s.
	Interval time.Duration
	// History is how far back the charts go. Default: 15m.
	History time.Duration
	// PeerInterval is how often the other workers are asked for their
	// status. Default: 5s.
	PeerInterval time.Duration
}

// Dashboard is the handler of the dashboard's page and API. It is an
// http.Handler for GET / and everything under /dashboard/; run Run for
// the charts and events. Safe for concurrent use.
type Dashboard struct {
	cfg     Config
	core    Core
	mux     *http.ServeMux
	sampler *sampler
	running atomic.Bool
}

// New returns the dashboard of core.
func New(cfg Config, core Core) *Dashboard {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 15 * time.Minute
	}
	if cfg.PeerInterval <= 0 {
		cfg.PeerInterval = 5 * time.Second
	}
	d := &Dashboard{cfg: cfg, core: core, mux: http.NewServeMux()}
	d.sampler = newSampler(core, cfg)
	assets, _ := fs.Sub(static, "static")
	files := http.FileServerFS(assets)
	d.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, assets, "index.html")
	})
	d.mux.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/static/", noCache(files)))
	d.mux.HandleFunc("GET /dashboard/api/state", d.read(d.serveState))
	d.mux.HandleFunc("GET /dashboard/api/get", d.read(d.serveGet))
	d.mux.HandleFunc("POST /dashboard/api/pause", d.write(func(w http.ResponseWriter, r *http.Request, st authState) { d.servePause(w, r, st, true) }))
	d.mux.HandleFunc("POST /dashboard/api/resume", d.write(func(w http.ResponseWriter, r *http.Request, st authState) { d.servePause(w, r, st, false) }))
	return d
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the page, its assets and its API.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	d.mux.ServeHTTP(w, r)
}

// Run samples the worker every Config.Interval for the charts and the
// events, and asks the other workers for their status every
// Config.PeerInterval, until ctx ends. It refuses a second call.
func (d *Dashboard) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("dashboard: Run called twice")
	}
	return d.sampler.run(ctx)
}

// tokenAllowed reports whether r may carry a token: over TLS, or from a
// loopback address (nobody on the path can read it).
func tokenAllowed(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authState is what the page needs to know about tokens.
type authState struct {
	// TokenConfigured: the worker has auth.token (pause and resume exist).
	TokenConfigured bool `json:"token_configured"`
	// ProtectReads: reads need the token too.
	ProtectReads bool `json:"protect_reads"`
	// TokenAllowed: this connection may send a token (TLS or loopback).
	TokenAllowed bool `json:"token_allowed"`
	// TokenOK: the request carried the right token.
	TokenOK bool `json:"token_ok"`
}

// errorBody is every error answer of the API.
type errorBody struct {
	Error string    `json:"error"`
	Auth  authState `json:"auth"`
}

// authorize checks the request's token; need says whether one is
// required. It answers the request itself and returns false when the
// request may not go on.
func (d *Dashboard) authorize(w http.ResponseWriter, r *http.Request, need bool) (authState, bool) {
	st := authState{TokenConfigured: d.cfg.Token != "", ProtectReads: d.cfg.ProtectReads, TokenAllowed: tokenAllowed(r)}
	got, has := bearer(r)
	if has && !st.TokenAllowed {
		writeError(w, http.StatusForbidden, st, "a token is accepted only over TLS or from a loopback address: this connection is plaintext from "+r.RemoteAddr)
		return st, false
	}
	if has && st.TokenConfigured {
		if subtle.ConstantTimeCompare([]byte(got), []byte(d.cfg.Token)) != 1 {
			writeError(w, http.StatusUnauthorized, st, "bad token")
			return st, false
		}
		st.TokenOK = true
	}
	if need && !st.TokenOK {
		switch {
		case !st.TokenConfigured:
			writeError(w, http.StatusForbidden, st, "the dashboard is read-only: the worker has no auth.token configured")
		case !st.TokenAllowed:
			writeError(w, http.StatusForbidden, st, "this needs the token, and a token is accepted only over TLS or from a loopback address")
		default:
			writeError(w, http.StatusUnauthorized, st, "this needs the worker's token (auth.token)")
		}
		return st, false
	}
	return st, true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", true // present but malformed: compared as empty, so refused
	}
	return strings.TrimSpace(tok), true
}

// read wraps a read-only endpoint: the token is needed with ProtectReads.
func (d *Dashboard) read(h func(http.ResponseWriter, *http.Request, authState)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, ok := d.authorize(w, r, d.cfg.ProtectReads)
		if ok {
			h(w, r, st)
		}
	}
}

// write wraps a mutating endpoint: the token is always needed.
func (d *Dashboard) write(h func(http.ResponseWriter, *http.Request, authState)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if st, ok := d.authorize(w, r, true); ok {
			h(w, r, st)
		}
	}
}

func writeError(w http.ResponseWriter, code int, st authState, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Auth: st})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
