package main

import (
	"strings"
	"testing"
)

// TestSendUsage: malformed send flags are usage errors (exit 2) naming the
// flag, before any call to the worker.
func TestSendUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"send", "lines", "--header", "novalue", "x"}, `invalid --header "novalue"`},
		{[]string{"send", "lines", "--partition", "-1", "x"}, "invalid --partition -1"},
		{[]string{"send", "lines"}, "accepts 2 arg(s)"},
	} {
		res := runCLI(t, nil, append([]string{"--addr", "127.0.0.1:1"}, tt.args...)...)
		if res.code != exitUsage || !strings.Contains(res.stderr, tt.msg) {
			t.Errorf("workerctl %v: code %v, stderr %q; want usage mentioning %q", tt.args, res.code, res.stderr, tt.msg)
		}
	}
}
