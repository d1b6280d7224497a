package server

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LimitListener returns a listener that keeps at most max connections of
// l open: one accepted past it is closed at once (the client sees the
// connection reset) rather than left waiting in the backlog, and logged at
// most once a minute. Safe for concurrent use, as net.Listener is.
func LimitListener(l net.Listener, max int, name string, log *slog.Logger) net.Listener {
	return &limitListener{Listener: l, max: int64(max), name: name, log: log}
}

type limitListener struct {
	net.Listener
	max    int64
	name   string
	log    *slog.Logger
	open   atomic.Int64
	logged atomic.Int64 // unix seconds of the last "at the limit" log
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			_ = c.Close()
			now := time.Now().Unix()
			if last := l.logged.Load(); now-last >= 60 && l.logged.CompareAndSwap(last, now) {
				l.log.Warn("connection refused: the listener is at limits.max_connections", "listener", l.name,
					"max_connections", l.max, "peer", c.RemoteAddr().String())
			}
			continue
		}
		return &limitedConn{Conn: c, l: l}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
