package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espgw/espgw/control"
	"github.com/espgw/espgw/internal/testutil"
)

func TestJournalHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newJournalHandler(&buf, slog.LevelDebug)).With("conn", "mega").WithGroup("sa")
	log.Debug("d", "spi", 1)
	log.Info("i")
	log.Warn("w")
	log.Error("e", "err", "a\nb")
	want := "<7>level=DEBUG msg=d conn=mega sa.spi=1\n" +
		"<6>level=INFO msg=i conn=mega\n" +
		"<4>level=WARN msg=w conn=mega\n" +
		"<3>level=ERROR msg=e conn=mega sa.err=\"a\\nb\"\n"
	if buf.String() != want {
		t.Errorf("journal lines:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestUnderJournal(t *testing.T) {
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "a"))
	g, _ := os.Create(filepath.Join(dir, "b"))
	defer f.Close()
	defer g.Close()
	t.Setenv("JOURNAL_STREAM", journalStream(t, f.Name()))
	if !underJournal(f) {
		t.Error("stderr is the JOURNAL_STREAM file: want the journal format")
	}
	if underJournal(g) {
		t.Error("stderr redirected elsewhere (JOURNAL_STREAM inherited): want plain text")
	}
	if underJournal(&bytes.Buffer{}) {
		t.Error("not a file: want plain text")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if underJournal(f) {
		t.Error("no JOURNAL_STREAM: want plain text")
	}
}

// journalStream is $JOURNAL_STREAM for the file name: "device:inode".
func journalStream(t *testing.T, name string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// TestRunSystemd runs `espgw run` as systemd would: $NOTIFY_SOCKET is a unixgram socket
// this test reads, stderr is the $JOURNAL_STREAM. READY=1 comes once the control socket
// answers; a reload is RELOADING=1 then READY=1 with the new tunnel count, also when it
// fails; SIGTERM sends STOPPING=1. Every log line carries a priority and no timestamp.
func TestRunSystemd(t *testing.T) {
	testutil.RequireFile(t, "/sys/kernel/btf/vmlinux", "kernel BTF for the eBPF programs", "linux-image-amd64")
	left := testutil.NewNetNS(t, "espgw-sd-l")
	right := testutil.NewNetNS(t, "espgw-sd-r")
	testutil.Veth(t, left, "wan0", "192.0.2.1/24", right, "wan0", "192.0.2.2/24")
	t.Setenv("ESPGW_TEST_MAIN", "1")

	dir := t.TempDir()
	notifyPath := filepath.Join(dir, "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	recv := func(what string) string {
		t.Helper()
		buf := make([]byte, 4096)
		notify.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := notify.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s on NOTIFY_SOCKET: %v", what, err)
		}
		return string(buf[:n])
	}
	logPath := filepath.Join(dir, "espgw.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", notifyPath)
	t.Setenv("JOURNAL_STREAM", journalStream(t, logPath))

	g := &gateway{dir: dir, cfg: filepath.Join(dir, "espgw.yaml"), sock: filepath.Join(dir, "espgw.sock"),
		args: []string{"192.0.2.1", "192.0.2.2", "10.10.1.1/32", "10.10.1.1/32", "10.20.0.0/24"}}
	g.writeConfig(t, "")
	g.proc = testutil.StartProcess(t, left, logPath, os.Args[0], "run", "-c", g.cfg, "--log-level", "debug")

	if got, want := recv("READY=1"), "READY=1\nSTATUS=running: 1 connections, 1 tunnels, userspace datapath\n"; got != want {
		t.Fatalf("notification %q, want %q", got, want)
	}
	c, err := control.Dial(context.Background(), g.sock)
	if err == nil {
		_, err = c.Status(context.Background())
	}
	if err != nil {
		t.Fatalf("READY=1 was sent but the control socket does not answer: %v", err)
	}

	reload := func(wantStatus string) {
		t.Helper()
		if err := syscall.Kill(g.proc.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if got := recv("RELOADING=1"); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\nSTATUS=reloading .*espgw.yaml\n$`).MatchString(got) {
			t.Errorf("notification %q, want RELOADING=1, MONOTONIC_USEC and STATUS", got)
		}
		if got, want := recv("READY=1 after the reload"), "READY=1\nSTATUS="+wantStatus+"\n"; got != want {
			t.Errorf("notification %q, want %q", got, want)
		}
	}
	g.writeConfig(t, "      db: {local_subnet: 10.10.1.1/32, remote_subnet: 10.30.0.0/24, proposals: [aes128-sha1]}\n")
	reload("running: 1 connections, 2 tunnels, userspace datapath")
	g.writeConfig(t, "      db: {local_subnet: 10.10.1.1/33}\n")
	reload("reload failed (see the log), running the previous configuration: 1 connections, 2 tunnels, userspace datapath")

	if err := g.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := recv("STOPPING=1"), "STOPPING=1\nSTATUS=stopping: removing SAs, policies and addresses\n"; got != want {
		t.Errorf("notification %q, want %q", got, want)
	}

	log := strings.TrimSpace(g.proc.Log())
	for _, line := range strings.Split(log, "\n") {
		if !regexp.MustCompile(`^<[3467]>level=`).MatchString(line) || strings.Contains(line, "time=") {
			t.Errorf("log line %q: want a <priority> prefix and no time", line)
		}
	}
	for _, want := range []string{`<6>level=INFO msg="espgw running"`, `<7>level=DEBUG `, `<3>level=ERROR msg="reload failed`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
