package config

import "testing"

// FuzzParse checks that no app file, however malformed, panics the parser
// or the validator; it only ever returns errors.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("app: [\n"))
	f.Add([]byte(good + "kafka: {security: {protocol: SASL_SSL, sasl: {mechanism: PLAIN, username: u, password_env: PW}, ssl: {ca_file: ca.pem}}}\n"))
	f.Add([]byte("agents: [{name: x, topics: [t], max_retries: -1}]\n"))
	f.Add([]byte("tables: [{name: t, window: {type: hopping, size: 1m, step: 2m, expires: 1h}}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b)
		if err != nil {
			return
		}
		_ = cfg.Validate()
	})
}
