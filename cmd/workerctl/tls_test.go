package main

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/client/admin/admintest"
	"github.com/eddy-streams/eddy/internal/testutil"
)

// TestTLSFlags: --cacert/--cert/--key (or EDDY_CACERT/EDDY_CERT/EDDY_KEY)
// reach a worker that requires client certificates; without a client
// certificate, or with the wrong CA, workerctl exits 4 naming the
// certificate problem; inconsistent flags are usage errors.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "eddy test CA")
	other := testutil.NewCA(t, "another CA")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	otherFile := other.WriteCA(t, dir, "other.pem")
	cert, key := ca.Issue(t, "operator").Write(t, dir, "operator")
	w := admintest.StartTLS(t, "", testStatus(), &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "worker", "127.0.0.1").TLS}, MinVersion: tls.VersionTLS12,
		ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	addr := "--addr=" + w.Addr

	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // in stderr
	}{
		{"flags", nil, []string{"--cacert", caFile, "--cert", cert, "--key", key}, exitOK, ""},
		{"environment", map[string]string{envCACert: caFile, envCert: cert, envKey: key}, nil, exitOK, ""},
		{"skip verify", nil, []string{"--insecure-skip-tls-verify", "--cert", cert, "--key", key}, exitOK, ""},
		{"no client certificate", nil, []string{"--cacert", caFile}, exitAuth, "remote error: tls: certificate required"},
		{"wrong CA", nil, []string{"--cacert", otherFile, "--cert", cert, "--key", key}, exitAuth, "x509: certificate signed by unknown authority"},
		{"plaintext", nil, nil, exitUnreachable, ""},
		{"cert without key", nil, []string{"--cacert", caFile, "--cert", cert}, exitUsage, "--cert and --key go together"},
		{"skip verify with CA", nil, []string{"--cacert", caFile, "--insecure-skip-tls-verify"}, exitUsage, "exclude each other"},
		{"missing CA file", nil, []string{"--cacert", dir + "/nope.pem"}, exitUsage, "nope.pem: no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.env, append([]string{"status", "-o", "json", addr, "--timeout=5s"}, tt.args...)...)
			if res.code != tt.code || !strings.Contains(res.stderr, tt.want) {
				t.Fatalf("got exit %d, stderr %q; want exit %d with %q", res.code, res.stderr, tt.code, tt.want)
			}
			if tt.code == exitOK && !strings.Contains(res.stdout, `"orders"`) {
				t.Errorf("stdout %q lacks the status", res.stdout)
			}
			if tt.code == exitAuth && !strings.Contains(res.stderr, "Check --cacert") {
				t.Errorf("stderr %q lacks the hint", res.stderr)
			}
		})
	}
}
