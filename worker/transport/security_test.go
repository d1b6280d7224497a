package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/internal/testutil"
	"github.com/eddy-streams/eddy/worker/transport"
)

func TestSecurityValidate(t *testing.T) {
	sasl := transport.Security{Protocol: transport.ProtocolSASLSSL,
		SASL: transport.SASL{Mechanism: transport.MechanismSCRAMSHA256, Username: "u", Password: "hunter2"}}
	tests := []struct {
		name    string
		mod     func(*transport.Config)
		wantErr string
	}{
		{"plaintext by default", func(*transport.Config) {}, ""},
		{"sasl_ssl", func(c *transport.Config) { c.Security = sasl }, ""},
		{"ssl with a client certificate", func(c *transport.Config) {
			c.Security = transport.Security{Protocol: transport.ProtocolSSL, TLS: transport.TLSFiles{CAFile: "ca", CertFile: "c", KeyFile: "k"}}
		}, ""},
		{"unknown protocol", func(c *transport.Config) { c.Security.Protocol = "TLS" }, `Security.Protocol: "TLS" is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL`},
		{"fields without protocol", func(c *transport.Config) { c.Security.SASL.Username = "u" }, "Security.Protocol: required when SASL or TLS is set"},
		{"unknown mechanism", func(c *transport.Config) { c.Security = sasl; c.Security.SASL.Mechanism = "GSSAPI" }, `Security.SASL.Mechanism: "GSSAPI" is not one of`},
		{"no username", func(c *transport.Config) { c.Security = sasl; c.Security.SASL.Username = "" }, "Security.SASL.Username: required with SASL_SSL"},
		{"no password", func(c *transport.Config) { c.Security = sasl; c.Security.SASL.Password = "" }, "Security.SASL.Password: required with SASL_SSL"},
		{"sasl over SSL", func(c *transport.Config) { c.Security = sasl; c.Security.Protocol = transport.ProtocolSSL }, "Security.SASL: set, but protocol SSL does not use SASL"},
		{"tls over SASL_PLAINTEXT", func(c *transport.Config) {
			c.Security = sasl
			c.Security.Protocol = transport.ProtocolSASLPlaintext
			c.Security.TLS.CAFile = "ca"
		}, "Security.TLS: set, but protocol SASL_PLAINTEXT does not use TLS"},
		{"cert without key", func(c *transport.Config) {
			c.Security = transport.Security{Protocol: transport.ProtocolSSL, TLS: transport.TLSFiles{CertFile: "c"}}
		}, "Security.TLS: CertFile and KeyFile must be given together"},
		{"override of an owned property", func(c *transport.Config) {
			c.Security = sasl
			c.Overrides = map[string]string{"sasl.password": "hunter2"}
		}, `Overrides["sasl.password"]: set by Security`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := transport.DefaultConfig()
			c.Brokers = "127.0.0.1:9092"
			tt.mod(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

// TestSecretNeverPrints: a Config holding a password prints it with no
// fmt verb, no JSON, no slog record.
func TestSecretNeverPrints(t *testing.T) {
	c := transport.DefaultConfig()
	c.Security.SASL.Password = "hunter2"
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
		out = append(out, fmt.Sprintf(verb, c), fmt.Sprintf(verb, c.Security.SASL.Password))
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(b))
	var sb strings.Builder
	for _, h := range []slog.Handler{slog.NewTextHandler(&sb, nil), slog.NewJSONHandler(&sb, nil)} {
		slog.New(h).Info("config", "cfg", c, "pw", c.Security.SASL.Password)
	}
	out = append(out, sb.String())
	for _, s := range out {
		if strings.Contains(s, "hunter2") || strings.Contains(s, fmt.Sprintf("%x", "hunter2")) {
			t.Errorf("printed the password: %s", s)
		}
	}
	if !strings.Contains(out[0], "[redacted]") {
		t.Errorf("got %s, want [redacted] in place of the password", out[0])
	}
	if c.Security.SASL.Password.Reveal() != "hunter2" {
		t.Errorf("Reveal: got %q, want the password", c.Security.SASL.Password.Reveal())
	}
}

// secureConfig is a Config for the test broker's SASL_SSL listener with
// mechanism and the right password.
func secureConfig(t *testing.T, mechanism string) (transport.Config, kafkatest.SecureBroker) {
	t.Helper()
	sb := kafkatest.SASLSSL(t)
	cfg := testConfig(t)
	cfg.Brokers = sb.Bootstrap
	cfg.Security = transport.Security{
		Protocol: transport.ProtocolSASLSSL,
		SASL:     transport.SASL{Mechanism: mechanism, Username: sb.Username, Password: transport.Secret(sb.Password)},
		TLS:      transport.TLSFiles{CAFile: sb.CAFile, CertFile: sb.CertFile, KeyFile: sb.KeyFile},
	}
	return cfg, sb
}

// TestSASLSSL: every mechanism reaches the broker over SASL_SSL with a
// client certificate.
func TestSASLSSL(t *testing.T) {
	for _, m := range []string{transport.MechanismPlain, transport.MechanismSCRAMSHA256, transport.MechanismSCRAMSHA512} {
		t.Run(m, func(t *testing.T) {
			cfg, _ := secureConfig(t, m)
			if err := newAdmin(t, cfg).Ping(context.Background()); err != nil {
				t.Fatalf("Ping over SASL_SSL with %s: %v", m, err)
			}
		})
	}
}

// TestSASLSSLRefused: a wrong password, or a broker certificate from
// another CA, fails Ping at once (not after the reach timeout) with an
// *AuthError saying why, without the password.
func TestSASLSSLRefused(t *testing.T) {
	other := testutil.NewCA(t, "another CA")
	otherFile := other.WriteCA(t, t.TempDir(), "other.pem")
	for _, tt := range []struct {
		name string
		mod  func(*transport.Config)
		want string
	}{
		{"wrong password", func(c *transport.Config) { c.Security.SASL.Password = "wrong-hunter2" }, "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"},
		{"another CA", func(c *transport.Config) { c.Security.TLS.CAFile = otherFile }, "certificate verify failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, sb := secureConfig(t, transport.MechanismSCRAMSHA256)
			cfg.ReachTimeout = time.Minute
			tt.mod(&cfg)
			start := time.Now()
			err := newAdmin(t, cfg).Ping(context.Background())
			took := time.Since(start)
			t.Logf("Ping after %v: %v", took, err)
			var aerr *transport.AuthError
			if !errors.As(err, &aerr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an *AuthError naming %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "Kafka brokers "+sb.Bootstrap+" refused the connection over SASL_SSL") {
				t.Errorf("got %q, want it to name the brokers and the protocol", err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), sb.Password) {
				t.Errorf("error %q holds a password", err)
			}
			if took > 20*time.Second*raceFactor {
				t.Errorf("Ping gave up after %v, want it at once, well before the 1m reach timeout", took)
			}
		})
	}
}

// TestSASLSSLFiles: a missing CA file is refused when the client is made,
// naming librdkafka's property.
func TestSASLSSLFiles(t *testing.T) {
	cfg, _ := secureConfig(t, transport.MechanismPlain)
	cfg.Security.TLS.CAFile = filepath.Join(t.TempDir(), "nope.pem")
	if _, err := os.Stat(cfg.Security.TLS.CAFile); err == nil {
		t.Fatal("nope.pem exists")
	}
	if _, err := transport.NewAdmin(cfg); err == nil || !strings.Contains(err.Error(), "ssl.ca.location") {
		t.Errorf("got %v, want an error naming ssl.ca.location", err)
	}
}

// TestConfDumpRedacted: even with debug=conf, librdkafka's dump of the
// client configuration, forwarded to the worker's log, shows the password
// as [redacted], and nothing in the log holds it.
func TestConfDumpRedacted(t *testing.T) {
	cfg, sb := secureConfig(t, transport.MechanismPlain)
	cfg.Overrides = map[string]string{"debug": "conf,security"}
	var buf testutil.Buffer
	a, err := transport.NewAdmin(cfg, transport.WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.Close()
	log := buf.String()
	if !strings.Contains(log, "sasl.password = [redacted]") {
		t.Errorf("no redacted sasl.password in the configuration dump:\n%s", log)
	}
	if strings.Contains(log, sb.Password) {
		t.Errorf("the log holds the password")
	}
}
