package config

import (
	"fmt"
	"strconv"
)

// EnvVars lists the environment variables ApplyEnv reads, with the field each
// overrides. They override the app file; flags override them.
var EnvVars = []struct{ Name, Field string }{
	{"EDDY_APP", "app"},
	{"EDDY_WORKER_ID", "worker_id"},
	{"EDDY_BROKERS", "brokers"},
	{"EDDY_DATA_DIR", "data_dir"},
	{"EDDY_LISTEN_GRPC", "listen.grpc"},
	{"EDDY_LISTEN_HTTP", "listen.http"},
	{"EDDY_LISTEN_ADVERTISE", "listen.advertise"},
	{"EDDY_PROCESSING_GUARANTEE", "processing_guarantee"},
	{"EDDY_SHUTDOWN_TIMEOUT", "shutdown_timeout"},
	{"EDDY_TOKEN", "auth.token"},
	{"EDDY_LOG_LEVEL", "log.level"},
	{"EDDY_LOG_FORMAT", "log.format"},
	{"EDDY_KAFKA_REPLICATION_FACTOR", "kafka.replication_factor"},
}

// ApplyEnv overrides fields from EDDY_* variables read through getenv (pass
// os.Getenv). Empty variables are ignored.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	for _, e := range EnvVars {
		if v := getenv(e.Name); v != "" {
			if err := c.Set(e.Field, v); err != nil {
				return fmt.Errorf("environment %s: %w", e.Name, err)
			}
		}
	}
	return nil
}

// Set overrides one scalar field by its app-file path, as flags and
// environment variables do.
func (c *Config) Set(field, v string) error {
	switch field {
	case "app":
		c.App = v
	case "worker_id":
		c.WorkerID = v
	case "brokers":
		c.Brokers = v
	case "data_dir":
		c.DataDir = v
	case "listen.grpc":
		c.Listen.GRPC = v
	case "listen.http":
		c.Listen.HTTP = v
	case "listen.advertise":
		c.Listen.Advertise = v
	case "processing_guarantee":
		c.ProcessingGuarantee = v
	case "shutdown_timeout":
		if err := c.ShutdownTimeout.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	case "auth.token":
		c.Auth.Token = v
	case "log.level":
		c.Log.Level = v
	case "log.format":
		c.Log.Format = v
	case "kafka.replication_factor":
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s: want a whole number, got %q", field, v)
		}
		c.Kafka.ReplicationFactor = n
	default:
		return fmt.Errorf("%s: cannot be overridden", field)
	}
	return nil
}
