package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// --extpass output is read into one bounded buffer: a command that prints
// too much, or never stops, is refused at once instead of being buffered
// until it ends.
func TestExtpassOutputBounded(t *testing.T) {
	for _, tc := range []struct {
		cmd, want, err string
	}{
		{cmd: "printf 'hunter2\\nignored'", want: "hunter2"},
		{cmd: "head -c 4096 /dev/zero | tr '\\0' a", want: strings.Repeat("a", 4096)},
		{cmd: "head -c 4097 /dev/zero | tr '\\0' a", err: "more than 4096 bytes"},
		{cmd: "yes", err: "more than 4096 bytes"},
		{cmd: "echo pw; exit 3", err: "--extpass command failed"},
	} {
		a := &app{extpass: tc.cmd, stderr: io.Discard}
		type result struct {
			pw  []byte
			err error
		}
		done := make(chan result, 1)
		go func() {
			pw, err := a.runExtpass(a.extpass)
			done <- result{pw, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("--extpass %q: still reading after 20s", tc.cmd)
		}
		switch {
		case tc.err != "" && (r.err == nil || !strings.Contains(r.err.Error(), tc.err)):
			t.Errorf("--extpass %q: %q, %v; want error %q", tc.cmd, r.pw, r.err, tc.err)
		case tc.err == "" && (r.err != nil || string(r.pw) != tc.want):
			t.Errorf("--extpass %q: %q, %v; want %q", tc.cmd, r.pw, r.err, tc.want)
		}
	}
}
