package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/eddy-streams/eddy/worker/config"
)

// listenerTLS is the TLS setup of a worker (docs/operations.md#security).
type listenerTLS struct {
	// server is the listeners' configuration, nil for plaintext; with
	// tls.client_ca_file it requires verified client certificates.
	server *tls.Config
	// peerCAs verify the other workers (tls.peer_ca_file); nil when unset.
	peerCAs *x509.CertPool
}

// loadTLS loads the certificate and CA files of c; each error names the
// field and the file.
func loadTLS(c config.TLS) (listenerTLS, error) {
	var out listenerTLS
	if !c.Enabled() {
		return out, nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return out, fmt.Errorf("tls: load cert_file %s and key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	out.server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := loadCAs("tls.client_ca_file", c.ClientCAFile)
		if err != nil {
			return out, err
		}
		out.server.ClientCAs = pool
		out.server.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if c.PeerCAFile != "" {
		if out.peerCAs, err = loadCAs("tls.peer_ca_file", c.PeerCAFile); err != nil {
			return out, err
		}
	}
	return out, nil
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(field, path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", field, path)
	}
	return pool, nil
}
