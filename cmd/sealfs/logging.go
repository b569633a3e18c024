package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Three ways to log, by who reads it:
//   - people at a terminal (every command but the mount daemon): one plain
//     sentence per message, "sealfs: warning: …", details in parentheses;
//   - the systemd journal (a daemon or foreground mount whose stderr is the
//     journal stream): syslog priority prefixes ("<4>"), no time stamps,
//     which the journal adds itself (sd-daemon(3));
//   - the mount daemon's log file: slog's text format with time stamps.

// newLogger is the logger for people at a terminal.
func newLogger(w io.Writer, debug bool) *slog.Logger {
	return slog.New(&lineHandler{w: w, level: levelFor(debug), journal: false, mu: new(sync.Mutex)})
}

// daemonLogger is the logger of a mount: to the journal when w is the
// journal's stream, else slog text with time stamps (a log file, or a
// foreground mount's stderr).
func daemonLogger(w io.Writer, debug bool) *slog.Logger {
	if isJournal(w) {
		return slog.New(&lineHandler{w: w, level: levelFor(debug), journal: true, mu: new(sync.Mutex)})
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: levelFor(debug)}))
}

func levelFor(debug bool) slog.Level {
	if debug {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// isJournal reports whether w is the stream systemd connected to the
// journal: $JOURNAL_STREAM holds its device and inode (systemd.exec(5)).
func isJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	env := os.Getenv("JOURNAL_STREAM")
	if !ok || env == "" {
		return false
	}
	dev, ino, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return false
	}
	return dev == strconv.FormatUint(st.Dev, 10) && ino == strconv.FormatUint(st.Ino, 10)
}

// lineHandler writes one line per record, for people or for the journal.
type lineHandler struct {
	w       io.Writer
	level   slog.Level
	journal bool
	attrs   []slog.Attr
	group   string
	mu      *sync.Mutex
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), h.grouped(as)...)
	return &c
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = h.group + name + "."
	return &c
}

func (h *lineHandler) grouped(as []slog.Attr) []slog.Attr {
	if h.group == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: h.group + a.Key, Value: a.Value}
	}
	return out
}

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := h.attrs
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, h.grouped([]slog.Attr{a})...)
		return true
	})
	var b bytes.Buffer
	if h.journal {
		fmt.Fprintf(&b, "<%d>%s", priority(r.Level), r.Message)
		for _, a := range attrs {
			fmt.Fprintf(&b, " %s=%s", a.Key, strconv.Quote(a.Value.String()))
		}
	} else {
		b.WriteString("sealfs: ")
		switch {
		case r.Level >= slog.LevelError:
			b.WriteString("error: ")
		case r.Level >= slog.LevelWarn:
			b.WriteString("warning: ")
		case r.Level < slog.LevelInfo:
			b.WriteString("debug: ")
		}
		b.WriteString(r.Message)
		if len(attrs) > 0 {
			parts := make([]string, len(attrs))
			for i, a := range attrs {
				parts[i] = a.Key + ": " + a.Value.String()
			}
			b.WriteString(" (" + strings.Join(parts, ", ") + ")")
		}
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(b.Bytes())
	return err
}

// priority maps a level to syslog's: debug 7, info 6, warning 4, error 3.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}
