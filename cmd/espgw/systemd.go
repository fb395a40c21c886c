package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espgw/espgw/daemon"
)

// systemd integration (sd_notify(3), sd-daemon(3)); nothing here acts outside systemd.

// sdNotifier sends daemon lifecycle steps to $NOTIFY_SOCKET; nil when it is unset.
func sdNotifier(log *slog.Logger) func(daemon.NotifyState, string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' { // abstract namespace
		addr = "\x00" + addr[1:]
	}
	return func(state daemon.NotifyState, status string) {
		var msg string
		switch state {
		case daemon.NotifyReady:
			msg = "READY=1\n"
		case daemon.NotifyReloading:
			// MONOTONIC_USEC lets Type=notify-reload (systemd >= 253) match it to the reload
			msg = fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\n", monotonicUsec())
		case daemon.NotifyStopping:
			msg = "STOPPING=1\n"
		}
		msg += "STATUS=" + strings.ReplaceAll(status, "\n", " ") + "\n"
		if err := sdNotify(addr, msg); err != nil {
			log.Warn("sd_notify failed", "socket", os.Getenv("NOTIFY_SOCKET"), "err", err)
		}
	}
}

// sdNotify sends one datagram to the unixgram socket addr.
func sdNotify(addr, msg string) error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(msg))
	return err
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / int64(time.Microsecond)
}

// underJournal reports whether w is the stream systemd connected to the journal: the
// device and inode in $JOURNAL_STREAM are w's (a child with redirected stderr inherits
// the variable but not the stream).
func underJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	dev, ino, found := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok || !found {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// journalHandler writes records as slog.TextHandler does, without the time (journald
// stamps every line) and prefixed with the level's syslog priority (<3> error, <4> warn,
// <6> info, <7> debug), which journald strips and stores as PRIORITY.
type journalHandler struct {
	text slog.Handler // writes into *buf
	mu   *sync.Mutex  // guards buf and w, shared by WithAttrs/WithGroup copies
	buf  *bytes.Buffer
	w    io.Writer
}

func newJournalHandler(w io.Writer, level slog.Leveler) *journalHandler {
	buf := new(bytes.Buffer)
	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	return &journalHandler{text: slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: noTime}),
		mu: new(sync.Mutex), buf: buf, w: w}
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.text.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	h.buf.WriteString(syslogPriority(r.Level))
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.w.Write(h.buf.Bytes())
	return err
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{text: h.text.WithAttrs(as), mu: h.mu, buf: h.buf, w: h.w}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{text: h.text.WithGroup(name), mu: h.mu, buf: h.buf, w: h.w}
}

// syslogPriority is the sd-daemon(3) prefix for l.
func syslogPriority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}
