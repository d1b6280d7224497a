package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKafkaSecurityBad: every wrong kafka.security gets an error naming
// the setting.
func TestKafkaSecurityBad(t *testing.T) {
	sasl := "kafka:\n  security:\n    protocol: SASL_SSL\n    sasl: {mechanism: SCRAM-SHA-256, username: u, password_env: PW}\n"
	tests := []struct {
		name, body, want string
	}{
		{"unknown protocol", "kafka: {security: {protocol: TLS}}\n", `kafka.security.protocol: "TLS": want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL`},
		{"sasl without protocol", "kafka: {security: {sasl: {username: u}}}\n", "kafka.security.protocol: required when kafka.security.sasl or kafka.security.ssl is set"},
		{"no mechanism", strings.Replace(sasl, "mechanism: SCRAM-SHA-256, ", "", 1), "kafka.security.sasl.mechanism: required with SASL_SSL"},
		{"unknown mechanism", strings.Replace(sasl, "SCRAM-SHA-256", "GSSAPI", 1), `kafka.security.sasl.mechanism: "GSSAPI": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{"no username", strings.Replace(sasl, "username: u, ", "", 1), "kafka.security.sasl.username: required with SASL_SSL"},
		{"no password source", strings.Replace(sasl, ", password_env: PW", "", 1), "kafka.security.sasl: password_file or password_env required with SASL_SSL"},
		{"both password sources", strings.Replace(sasl, "password_env: PW", "password_env: PW, password_file: /pw", 1), "password_file and password_env are both set"},
		{"sasl with SSL", strings.Replace(sasl, "SASL_SSL", "SSL", 1), "kafka.security.sasl: set, but protocol SSL does not authenticate with SASL"},
		{"ssl with SASL_PLAINTEXT", strings.Replace(sasl, "SASL_SSL", "SASL_PLAINTEXT", 1) + "    ssl: {ca_file: ca.pem}\n", "kafka.security.ssl: set, but protocol SASL_PLAINTEXT does not use TLS"},
		{"cert without key", "kafka: {security: {protocol: SSL, ssl: {cert_file: c.pem}}}\n", "kafka.security.ssl: cert_file and key_file must be given together"},
		{"property set twice", sasl + "  properties: {sasl.password: hunter2}\n", `kafka.properties: "sasl.password" is set by kafka.security`},
		{"unknown field", strings.Replace(sasl, "password_env", "password", 1), "kafka.security.sasl.password: line 19: unknown field (known fields: mechanism, password_env, password_file, username)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, good+tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
	body := strings.Replace(good, "brokers: localhost:9092", "brokers: embedded", 1) + "kafka: {security: {protocol: SSL}}\n"
	if _, err := load(t, body); err == nil || !strings.Contains(err.Error(), "kafka.security.protocol: SSL: the embedded dev broker speaks PLAINTEXT only") {
		t.Errorf("SSL on the embedded broker: got %v, want it refused", err)
	}
}

// TestKafkaSecurityPassword: the password comes from its file (one
// trailing newline dropped) or variable; a missing one is an error naming
// the setting, never holding a password.
func TestKafkaSecurityPassword(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAFKA_PW": "from-env"}
	getenv := func(k string) string { return env[k] }
	sec := func(file, env string) KafkaSecurity {
		return KafkaSecurity{Protocol: ProtocolSASLSSL, SASL: KafkaSASL{Mechanism: "PLAIN", Username: "u", PasswordFile: file, PasswordEnv: env}}
	}
	for _, tt := range []struct {
		name    string
		s       KafkaSecurity
		want    string
		wantErr string
	}{
		{"file", sec(file, ""), "s3cret pass", ""},
		{"env", sec("", "KAFKA_PW"), "from-env", ""},
		{"missing file", sec(filepath.Join(dir, "nope"), ""), "", "kafka.security.sasl.password_file: open " + filepath.Join(dir, "nope")},
		{"empty file", sec(empty, ""), "", "kafka.security.sasl.password_file: " + empty + " is empty"},
		{"unset variable", sec("", "NOPE"), "", "kafka.security.sasl.password_env: environment variable NOPE is not set or empty"},
		{"no SASL", KafkaSecurity{Protocol: ProtocolSSL}, "", ""},
	} {
		got, err := tt.s.Password(getenv)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: got %q, %v; want error %q", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestKafkaSecurityAccepted(t *testing.T) {
	for _, body := range []string{
		"kafka: {security: {protocol: PLAINTEXT}}\n",
		"kafka: {security: {protocol: SSL, ssl: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}}, properties: {ssl.endpoint.identification.algorithm: none}}\n",
		"kafka: {security: {protocol: SASL_PLAINTEXT, sasl: {mechanism: PLAIN, username: u, password_file: /pw}}}\n",
		"kafka: {security: {protocol: SASL_SSL, sasl: {mechanism: SCRAM-SHA-512, username: u, password_env: PW}, ssl: {ca_file: ca.pem}}}\n",
	} {
		if _, err := load(t, good+body); err != nil {
			t.Errorf("%s: got %v, want no error", body, err)
		}
	}
}
