package admin_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/client/admin"
	"github.com/eddy-streams/eddy/client/admin/admintest"
	"github.com/eddy-streams/eddy/internal/testutil"
)

// TestTLSFiles: WithTLSFiles verifies the worker against the CA file and
// presents the client certificate; every TLS failure wraps ErrTLS with a
// message naming the certificate problem, not a bare "unavailable".
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "eddy test CA")
	other := testutil.NewCA(t, "another CA")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	otherFile := other.WriteCA(t, dir, "other.pem")
	cert, key := ca.Issue(t, "operator").Write(t, dir, "operator")
	strangerCert, strangerKey := other.Issue(t, "stranger").Write(t, dir, "stranger")
	w := admintest.StartTLS(t, testToken, testStatus(), &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "worker", "127.0.0.1").TLS}, MinVersion: tls.VersionTLS12,
		ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})

	c := dial(t, w.Addr, admin.WithTLSFiles(caFile, cert, key))
	if st, err := c.Status(callCtx(t)); err != nil || st.GetApp() != "orders" {
		t.Fatalf("Status with the right CA and client certificate: got %v, %v", st, err)
	}
	c = dial(t, w.Addr, admin.WithInsecureSkipVerify(), admin.WithTLSFiles("", cert, key))
	if _, err := c.Status(callCtx(t)); err != nil {
		t.Fatalf("Status skipping verification: %v", err)
	}

	for _, tt := range []struct {
		name string
		opts []admin.Option
		want string
	}{
		{"no client certificate", []admin.Option{admin.WithTLSFiles(caFile, "", "")}, "certificate required"},
		{"client certificate of another CA", []admin.Option{admin.WithTLSFiles(caFile, strangerCert, strangerKey)}, "refused the TLS connection: remote error: tls: certificate required"},
		{"worker of another CA", []admin.Option{admin.WithTLSFiles(otherFile, cert, key)}, "x509: certificate signed by unknown authority"},
		{"system roots", []admin.Option{admin.WithTLSFiles("", cert, key)}, "x509: certificate signed by unknown authority"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, w.Addr, tt.opts...)
			_, err := c.Status(callCtx(t))
			if !errors.Is(err, admin.ErrTLS) || errors.Is(err, admin.ErrUnreachable) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an ErrTLS naming %q", err, tt.want)
			}
		})
	}

	plain := admintest.Start(t, "", testStatus())
	_, err := dial(t, plain.Addr, admin.WithTLSFiles(caFile, "", "")).Status(callCtx(t))
	if !errors.Is(err, admin.ErrTLS) || !strings.Contains(err.Error(), "does not look like a TLS handshake") {
		t.Errorf("TLS to a plaintext worker: got %v, want an ErrTLS saying so", err)
	}
}

// TestTLSFilesRefused: unusable files and conflicting options fail Dial,
// naming what is wrong.
func TestTLSFilesRefused(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "eddy test CA")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	cert, key := ca.Issue(t, "operator").Write(t, dir, "operator")
	for _, tt := range []struct {
		name string
		opts []admin.Option
		want string
	}{
		{"missing CA file", []admin.Option{admin.WithTLSFiles(dir+"/nope.pem", "", "")}, "nope.pem: no such file"},
		{"CA file not PEM", []admin.Option{admin.WithTLSFiles(key+"x", "", "")}, "no such file"},
		{"key without certificate", []admin.Option{admin.WithTLSFiles(caFile, "", key)}, "needs both the certificate file and the key file"},
		{"key of another certificate", []admin.Option{admin.WithTLSFiles(caFile, cert, caFile)}, "client certificate " + cert},
		{"skip verify with a CA", []admin.Option{admin.WithTLSFiles(caFile, "", ""), admin.WithInsecureSkipVerify()}, "exclude each other"},
		{"two TLS configurations", []admin.Option{admin.WithTLSFiles(caFile, "", ""), admin.WithTLS(&tls.Config{})}, "WithTLS and WithTLSFiles"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := admin.Dial(t.Context(), "127.0.0.1:1", tt.opts...)
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
