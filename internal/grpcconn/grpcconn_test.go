package grpcconn

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestValidateAddr(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:7000", ""},
		{":7000", ""},
		{"[::1]:7000", ""},
		{"", "empty worker address"},
		{"localhost", `invalid worker address "localhost": missing port in address`},
		{"http://h:1", "without a scheme"},
		{"h:", "missing port"},
	} {
		err := ValidateAddr(tt.addr)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ValidateAddr(%q) = %v, want %q", tt.addr, err, tt.want)
		}
	}
}

func TestCredentials(t *testing.T) {
	if c, rec := Credentials(nil); rec != nil || c.Info().SecurityProtocol != "insecure" {
		t.Errorf("Credentials(nil) = %v (%s), %v; want plaintext, no recorder", c, c.Info().SecurityProtocol, rec)
	}
	if c, rec := Credentials(&tls.Config{MinVersion: tls.VersionTLS12}); rec == nil || c.Info().SecurityProtocol != "tls" {
		t.Errorf("Credentials(tls) = %v, %v; want TLS with a recorder", c, rec)
	}
}
