package transport

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Security protocols of Security.Protocol (librdkafka's security.protocol).
const (
	// ProtocolPlaintext: no TLS, no authentication. The default.
	ProtocolPlaintext = "PLAINTEXT"
	// ProtocolSSL: TLS, optionally with a client certificate.
	ProtocolSSL = "SSL"
	// ProtocolSASLPlaintext: SASL authentication without TLS (the password
	// of PLAIN crosses the network in clear text).
	ProtocolSASLPlaintext = "SASL_PLAINTEXT"
	// ProtocolSASLSSL: SASL authentication over TLS.
	ProtocolSASLSSL = "SASL_SSL"
)

// SASL mechanisms of SASL.Mechanism.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Security says how the clients connect to the brokers
// (docs/kafka.md#security). The zero value is PLAINTEXT, what librdkafka
// does by default. It is a plain value, safe to copy; its Password never
// prints.
type Security struct {
	// Protocol is ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext or
	// ProtocolSASLSSL. Default (empty): PLAINTEXT, and then none of the
	// other fields may be set.
	Protocol string
	// SASL holds the credentials of the SASL protocols; it must be empty
	// otherwise.
	SASL SASL
	// TLS holds the PEM files of the SSL protocols; it must be empty
	// otherwise.
	TLS TLSFiles
}

// SASL holds SASL credentials.
type SASL struct {
	// Mechanism is MechanismPlain, MechanismSCRAMSHA256 or
	// MechanismSCRAMSHA512. Required with a SASL protocol.
	Mechanism string
	// Username is the SASL user. Required with a SASL protocol.
	Username string
	// Password is the user's password. Required with a SASL protocol.
	Password Secret
}

// TLSFiles are the PEM files of a TLS connection to the brokers.
type TLSFiles struct {
	// CAFile is a PEM bundle of the CAs the brokers' certificates must
	// verify against; the brokers' host names are checked too. Default:
	// the system's roots.
	CAFile string
	// CertFile is a PEM client certificate, for brokers that ask for one.
	// Default: none.
	CertFile string
	// KeyFile is CertFile's PEM private key (unencrypted). Required with
	// CertFile.
	KeyFile string
}

// securityOwned are the librdkafka properties Security sets; Overrides may
// not set them once Security.Protocol is given.
var securityOwned = []string{
	"security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
	"ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
}

// validate reports the first invalid field as "transport: Security.<Field>:
// ...". It never quotes the password.
func (s Security) validate(overrides map[string]string) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("transport: Security.%s: %s", field, fmt.Sprintf(format, args...))
	}
	sasl, tls := false, false
	switch s.Protocol {
	case "":
		if s.SASL != (SASL{}) || s.TLS != (TLSFiles{}) {
			return bad("Protocol", "required when SASL or TLS is set")
		}
		return nil
	case ProtocolPlaintext:
	case ProtocolSSL:
		tls = true
	case ProtocolSASLPlaintext:
		sasl = true
	case ProtocolSASLSSL:
		sasl, tls = true, true
	default:
		return bad("Protocol", "%q is not one of %s, %s, %s, %s", s.Protocol,
			ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL)
	}
	if sasl {
		switch s.SASL.Mechanism {
		case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		case "":
			return bad("SASL.Mechanism", "required with %s (%s, %s or %s)", s.Protocol,
				MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512)
		default:
			return bad("SASL.Mechanism", "%q is not one of %s, %s, %s", s.SASL.Mechanism,
				MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512)
		}
		if s.SASL.Username == "" {
			return bad("SASL.Username", "required with %s", s.Protocol)
		}
		if s.SASL.Password == "" {
			return bad("SASL.Password", "required with %s", s.Protocol)
		}
	} else if s.SASL != (SASL{}) {
		return bad("SASL", "set, but protocol %s does not use SASL", s.Protocol)
	}
	if tls {
		if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
			return bad("TLS", "CertFile and KeyFile must be given together")
		}
	} else if s.TLS != (TLSFiles{}) {
		return bad("TLS", "set, but protocol %s does not use TLS", s.Protocol)
	}
	for _, k := range securityOwned {
		if _, ok := overrides[k]; ok {
			return fmt.Errorf("transport: Overrides[%q]: set by Security; give it there only", k)
		}
	}
	return nil
}

// properties are the librdkafka properties of s, for every client.
func (s Security) properties(m kafka.ConfigMap) {
	if s.Protocol == "" {
		return
	}
	m["security.protocol"] = strings.ToLower(s.Protocol)
	if s.SASL.Mechanism != "" {
		m["sasl.mechanism"] = s.SASL.Mechanism
		m["sasl.username"] = s.SASL.Username
		m["sasl.password"] = s.SASL.Password.Reveal()
	}
	for k, v := range map[string]string{
		"ssl.ca.location":          s.TLS.CAFile,
		"ssl.certificate.location": s.TLS.CertFile,
		"ssl.key.location":         s.TLS.KeyFile,
	} {
		if v != "" {
			m[k] = v
		}
	}
}

// redacted is what a Secret prints as.
const redacted = "[redacted]"

// Secret is a string that never prints: fmt (every verb), log/slog and
// encoding/json show "[redacted]"; Reveal returns it. Use it for
// passwords held in configuration values that may be logged.
type Secret string

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]".
func (Secret) String() string { return redacted }

// GoString returns "[redacted]".
func (Secret) GoString() string { return redacted }

// Format writes "[redacted]" whatever the verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue is "[redacted]".
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]" (encoding/json, YAML and others).
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// protocol is Protocol, or PLAINTEXT.
func (s Security) protocol() string {
	if s.Protocol == "" {
		return ProtocolPlaintext
	}
	return s.Protocol
}
