package transport

import (
	"context"
	"log/slog"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Option configures what NewAdmin, NewProducer and NewConsumer inject into
// a client (logger, error log). Options are applied in order; the last one
// of a kind wins.
type Option func(*options)

type options struct {
	logger *slog.Logger
	errs   *ErrorLog
}

// WithLogger sets the logger for lifecycle, rebalance and error records,
// and for librdkafka's own log lines (key "component"="librdkafka").
// Default: a logger that discards everything. A nil logger keeps the
// default.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithErrorLog sets the ErrorLog that the client records Kafka errors in;
// share one between the clients of a worker so the status RPC shows them
// together. Default: a new ErrorLog of DefaultErrorLogSize entries per
// client, reachable through the client's Errors method. A nil ErrorLog
// keeps the default.
func WithErrorLog(e *ErrorLog) Option {
	return func(o *options) {
		if e != nil {
			o.errs = e
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.errs == nil {
		o.errs = NewErrorLog(0)
	}
	return o
}

// ForwardLogs turns librdkafka log events into slog records until ch is
// closed (which the client does when it is closed), then closes the
// returned channel. librdkafka uses syslog levels: 0-3 are errors, 4
// warnings, 5 notices (slog Info), 6 info and 7 debug (both slog Debug:
// librdkafka's info is chatty, e.g. telemetry ids). Connection trouble is logged at
// level 3 and also arrives as an error event (which reporter logs), so
// levels up to 4 become Warn here rather than Error, except connection
// failures (tag FAIL), which become Debug.
//
// It is exported for packages that run librdkafka clients of their own, so
// every client logs the same way (the worker's clients all live in this
// package now, ChangelogReader included).
func ForwardLogs(ch chan kafka.LogEvent, logger *slog.Logger, client string) <-chan struct{} {
	done := make(chan struct{})
	if ch == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		for ev := range ch {
			level := slog.LevelDebug
			switch {
			case ev.Tag == "FAIL":
				// A broker connection failed: the same news arrives as
				// an error event, which reporter logs (and dedups).
			case ev.Level <= 4:
				level = slog.LevelWarn
			case ev.Level == 5:
				level = slog.LevelInfo
			}
			logger.LogAttrs(context.Background(), level, ev.Message,
				slog.String("component", "librdkafka"),
				slog.String("client", client),
				slog.String("tag", ev.Tag),
				slog.String("instance", ev.Name))
		}
	}()
	return done
}
