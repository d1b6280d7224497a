// Package tlsfiles builds the client TLS configuration of the Go SDKs and
// workerctl from PEM files (docs/operations.md#security): the CA that signs
// the worker's certificate, and the client certificate a worker with
// tls.client_ca_file requires.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names the PEM files of a client's TLS setup. The zero value means
// TLS verified against the system roots, without a client certificate.
type Files struct {
	// CAFile holds the CA certificates the worker's certificate must
	// verify against. Default: the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key, both or
	// neither. Default: none.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any server certificate: for tests
	// against a worker with a throw-away certificate only. It cannot be
	// combined with CAFile.
	InsecureSkipVerify bool
}

// Config reads the files and returns the client configuration, TLS 1.2 at
// least. Each error names the option (by prefix) and the file.
func (f Files) Config(prefix string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var errs []error
	if (f.CertFile == "") != (f.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: a client certificate needs both the certificate file and the key file (got certificate %q, key %q)", prefix, f.CertFile, f.KeyFile))
	}
	if f.InsecureSkipVerify && f.CAFile != "" {
		errs = append(errs, fmt.Errorf("%s: skipping the verification of the worker's certificate and a CA file to verify it against exclude each other", prefix))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if f.CAFile != "" {
		b, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: CA file: %w", prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: CA file %s holds no PEM certificate", prefix, f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: client certificate %s and key %s: %w", prefix, f.CertFile, f.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	cfg.InsecureSkipVerify = f.InsecureSkipVerify
	return cfg, nil
}
