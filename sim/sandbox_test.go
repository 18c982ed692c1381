package sim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/troupe-lab/troupe/console"
	"github.com/troupe-lab/troupe/internal/testenv"
	"github.com/troupe-lab/troupe/lab"
)

func newBoardOn(t *testing.T, name string, o Options) (*Board, *console.Console) {
	t.Helper()
	o.Name = name
	o.Dir = filepath.Join(t.TempDir(), name)
	b, err := New(o)
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	return b, c
}

func TestSandboxRunsAsAnUnprivilegedHostUser(t *testing.T) {
	b, c := newBoardOn(t, "who", Options{})
	assert.Equal(t, "0\n", run(t, b, c, "id -u"), "root of its own user namespace")
	assert.Equal(t, "who\n", run(t, b, c, "hostname"))

	sh := hostPID(t, token(b), pidOf(t, run(t, b, c, "echo $$")))
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sh))
	require.NoError(t, err)
	wantUID, _ := sandboxIDs()
	assert.NotEqual(t, 0, wantUID)
	assert.Regexp(t, fmt.Sprintf(`(?m)^Uid:\s+%d\s+%d\s+%d\s+%d$`, wantUID, wantUID, wantUID, wantUID), string(st))
	if os.Geteuid() == 0 {
		assert.Regexp(t, `(?m)^Groups:\s*$`, string(st), "root's supplementary groups are dropped")
	}
	for _, ns := range []string{"user", "mnt", "pid", "uts", "ipc", "net"} {
		mine, err := os.Readlink("/proc/self/ns/" + ns)
		require.NoError(t, err)
		its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", sh, ns))
		require.NoError(t, err)
		assert.NotEqual(t, mine, its, "the shell shares the %s namespace with the harness", ns)
	}
}

func TestSandboxFileSystem(t *testing.T) {
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "tokens")
	require.NoError(t, os.WriteFile(secret, []byte("admin-token"), 0o644))
	other, _ := newBoardOn(t, "other", Options{})
	require.NoError(t, os.WriteFile(filepath.Join(other.Root(), "mine.txt"), []byte("other's"), 0o644))
	b, c := newBoardOn(t, "fs", Options{})

	for _, p := range []string{secret, secretDir, other.Root(), filepath.Join(other.Root(), "mine.txt"), b.Root(), "/work", "/var/lib", "/home"} {
		assert.Equal(t, "gone\n", run(t, b, c, fmt.Sprintf("test -e '%s' && echo there || echo gone", p)), p)
	}
	// System directories are there, read-only, even for the namespace's root.
	assert.Equal(t, "ok\n", run(t, b, c, "test -x /bin/sh && test -r /etc/passwd && echo ok"))
	for _, p := range []string{"/etc/troupe-probe", "/usr/troupe-probe", "/bin/troupe-probe", "/troupe-probe", "/proc/troupe-probe"} {
		assert.Equal(t, "refused\n", run(t, b, c, fmt.Sprintf("(echo x > %s) 2>/dev/null && echo written || echo refused", p)), p)
	}
	// HOME and /tmp are the board's own, on the host under its root.
	assert.Equal(t, "ok\n", run(t, b, c, "echo h > ~/h.txt && echo t > /tmp/t.txt && echo ok"))
	assert.FileExists(t, filepath.Join(b.Root(), "h.txt"))
	assert.FileExists(t, filepath.Join(b.Root(), "tmp", "t.txt"))
	// A fresh /proc: only the board's processes.
	out := run(t, b, c, "ls /proc | grep -c '^[0-9]'")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	require.NoError(t, err)
	assert.Less(t, n, 10, "the board sees the host's processes")
	// The harness cannot be signalled: its pid means nothing in there.
	assert.Equal(t, "refused\n", run(t, b, c, fmt.Sprintf("kill -0 %d 2>/dev/null && echo signalled || echo refused", os.Getpid())))
}

// TestSandboxLimits: a board's processes and file sizes are bounded as
// its lab says: a fork bomb's forks fail inside the board (the host and
// the board's shell go on), a file stops growing at the bound; a board
// with the defaults is bound by them.
func TestSandboxLimits(t *testing.T) {
	b, c := newBoardOn(t, "bound", Options{Limits: Limits{Processes: 24, FileSize: 1 << 20}})
	limits := "awk '/^Max (processes|file size)/ {print $(NF-2), $(NF-1)}' /proc/self/limits"
	assert.Equal(t, "1048576 1048576\n24 24\n", run(t, b, c, limits), "file size and processes, soft and hard")
	// The bomb in a subshell: a failed fork ends it (not the login
	// shell); counted with built-ins, as nothing can fork then.
	count := "n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n"
	out := run(t, b, c, "(while :; do sleep 30 & done) 2>/dev/null; "+count)
	n, err := strconv.Atoi(strings.TrimSpace(out))
	require.NoError(t, err, out)
	assert.LessOrEqual(t, n, 24, "processes of the board at once")
	assert.GreaterOrEqual(t, n, 20, "the board forks up to its bound")
	assert.Equal(t, "still here\n", run(t, b, c, "kill -9 -1 2>/dev/null; sleep 0.2; echo still here"), "the board works again once they are gone")
	assert.Regexp(t, `(?s)File size limit exceeded.*\nrefused 1048576\n$`, run(t, b, c, "(head -c 3000000 /dev/zero > big) 2>/dev/null && echo written || echo refused $(wc -c < big)"),
		"the writer is stopped at the bound (SIGXFSZ)")
	assert.Equal(t, "raise refused\n", run(t, b, c, "(ulimit -H -p 100000) 2>/dev/null && echo raised || echo raise refused"),
		"the board's root cannot lift its bound")

	d, dc := newBoardOn(t, "defaults", Options{})
	assert.Equal(t, fmt.Sprintf("%d %d\n%d %d\n", DefaultFileSize, DefaultFileSize, DefaultProcesses, DefaultProcesses), run(t, d, dc, limits))
}

// listen serves one TCP connection on addr, answering "pong".
func listen(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("pong\n"))
			_ = conn.Close()
		}
	}()
}

func TestGroupNetworks(t *testing.T) {
	nets := NewNetworks()
	join := func(name, group string) (*Board, *console.Console) {
		b, err := New(Options{Name: name, Dir: filepath.Join(t.TempDir(), name), Networks: nets})
		require.NoError(t, err)
		c := console.New(b.Console(), console.Options{})
		t.Cleanup(func() {
			assert.NoError(t, b.Close())
			_ = c.Close()
		})
		addrs, err := b.JoinGroup(lab.Group{ID: group, Node: name})
		require.NoError(t, err)
		assert.Nil(t, addrs, "nodes keep the lab's loopback addresses")
		require.NoError(t, b.On(ctxT(t, waitTO)))
		login(t, b, c)
		return b, c
	}
	server, cs := join("server", "g1")
	client, cc := join("client", "g1")
	stranger, cx := join("stranger", "g2")

	// A host service on loopback: no board may reach it.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hostPort := hostLn.Addr().(*net.TCPAddr).Port
	require.NoError(t, hostLn.Close())
	listen(t, fmt.Sprintf("127.0.0.1:%d", hostPort))

	// The server node listens on its address; nc stays in the background.
	require.NoError(t, cs.Send("(echo pong | nc -l -N 127.7.0.1 7000 >/dev/null 2>&1 &)\n"))
	expect(t, cs, prompt(server.o.Name))
	connect := func(b *Board, c *console.Console, addr string, port int) string {
		return run(t, b, c, fmt.Sprintf("nc -w 2 -N %s %d </dev/null 2>/dev/null || echo unreachable", addr, port))
	}
	require.Eventually(t, func() bool {
		return connect(client, cc, "127.7.0.1", 7000) == "pong\n"
	}, waitTO, 50*time.Millisecond, "a node of the group reaches another")
	assert.Equal(t, "unreachable\n", connect(stranger, cx, "127.7.0.1", 7000), "another group's node")
	for _, b := range []struct {
		b *Board
		c *console.Console
	}{{server, cs}, {client, cc}, {stranger, cx}} {
		assert.Equal(t, "unreachable\n", connect(b.b, b.c, "127.0.0.1", hostPort), "the host's loopback service from %s", b.b.o.Name)
		assert.Equal(t, "lo\n", run(t, b.b, b.c, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"), "the only interface")
	}
}

func TestRefusalCauseNamesTheSetting(t *testing.T) {
	write := func(dir, name, v string) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644))
	}
	dir := t.TempDir()
	assert.Equal(t, "", refusalCause(dir))
	write(dir, "kernel/apparmor_restrict_unprivileged_userns", "1")
	assert.Equal(t, "kernel.apparmor_restrict_unprivileged_userns=1", refusalCause(dir))
	write(dir, "user/max_user_namespaces", "0")
	assert.Equal(t, "user.max_user_namespaces=0", refusalCause(dir))

	dir = t.TempDir()
	write(dir, "kernel/unprivileged_userns_clone", "0")
	if os.Geteuid() == 0 {
		assert.Equal(t, "", refusalCause(dir), "root is not concerned by it")
	} else {
		assert.Equal(t, "kernel.unprivileged_userns_clone=0", refusalCause(dir))
	}

	old := procSys
	t.Cleanup(func() { procSys = old })
	procSys = t.TempDir()
	write(procSys, "user/max_user_namespaces", "0")
	err := sandboxError(unix.ENOSPC)
	require.ErrorIs(t, err, unix.ENOSPC)
	assert.Contains(t, err.Error(), "kernel refused them (user.max_user_namespaces=0)")
	assert.Contains(t, err.Error(), `sandbox = "none"`)
}

// TestCheckSandbox: the check passes here, and once it has passed the
// process does not build a sandbox for it again.
func TestCheckSandbox(t *testing.T) {
	require.NoError(t, CheckSandbox())
	n := sandboxChecks.Load()
	require.NoError(t, CheckSandbox())
	require.NoError(t, CheckSandbox())
	assert.Equal(t, n, sandboxChecks.Load(), "no sandbox built after a passed check")
}

// TestCheckSandboxRefused runs the check in a user namespace whose
// max_user_namespaces is 0: the kernel refuses, the error says why.
func TestCheckSandboxRefused(t *testing.T) {
	if os.Getenv("TROUPE_SANDBOX_REFUSED") == "1" {
		err := CheckSandbox()
		if err == nil {
			os.Exit(0)
		}
		fmt.Println(err)
		os.Exit(7)
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command("unshare", "--user", "--map-root-user", "sh", "-c",
		`echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" -test.run '^TestCheckSandboxRefused$'`, exe)
	cmd.Env = append(os.Environ(), "TROUPE_SANDBOX_REFUSED=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	assert.Equal(t, 7, ee.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "the kernel refused them (user.max_user_namespaces=0)")
}

// TestNoZombies: orphans of the commands this process runs (power or
// flasher commands) are not adopted and left as zombies by it.
func TestNoZombies(t *testing.T) {
	newBoard(t, "reaper") // sim.New used to make this process a subreaper
	for i := 0; i < 3; i++ {
		// The shell exits at once; its background child becomes an orphan
		// and exits shortly after.
		require.NoError(t, exec.Command("sh", "-c", "sleep 0.05 &").Run())
	}
	self := os.Getpid()
	orphans := func() []int {
		var ps []int
		for _, p := range listProcs() {
			if p.ppid == self {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid)); strings.TrimSpace(string(comm)) == "sleep" {
					ps = append(ps, p.pid)
				}
			}
		}
		return ps
	}
	// Adopted or not, the sleeps end within a second; were they adopted,
	// they would stay as zombies of this process.
	deadline := time.Now().Add(waitTO)
	for len(orphans()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // deadline poll
	}
	assert.Empty(t, orphans(), "orphaned children of our commands left as zombies of this process")
}

// TestSandboxDiesWithItsHarness kills a process that has a board on, with
// SIGKILL: nothing of the board survives it, not even a process in a
// session of its own without the board's environment.
func TestSandboxDiesWithItsHarness(t *testing.T) {
	if os.Getenv("TROUPE_SANDBOX_HARNESS") == "1" {
		b, c := newBoardOn(t, "orphaned", Options{})
		run(t, b, c, "setsid env -i sleep 1718 </dev/null >/dev/null 2>&1 & echo started")
		sh := hostPID(t, token(b), pidOf(t, run(t, b, c, "echo $$")))
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", sh))
		require.NoError(t, err)
		// A process that outlives the harness holds the network's
		// control socket open: no EOF ends the stage, only its death
		// signal (a change of the stage's ids clears it).
		b.nmu.Lock()
		ctl := b.net.ctl
		b.nmu.Unlock()
		holder := exec.Command("sleep", "1720")
		holder.ExtraFiles = []*os.File{ctl}
		require.NoError(t, holder.Start())
		fmt.Printf("HOLDER=%d\n", holder.Process.Pid)
		fmt.Printf("PIDNS=%s\n", ns)
		// The shell becomes a process deaf to the console's hangup: only
		// the death signal can end the board now.
		require.NoError(t, c.Send("trap '' HUP; exec sleep 1719\n"))
		select {} // until killed
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run", "^TestSandboxDiesWithItsHarness$", "-test.timeout", "1m")
	cmd.Env = append(os.Environ(), "TROUPE_SANDBOX_HARNESS=1", "GORACE=atexit_sleep_ms=0")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var ns string
	buf := make([]byte, 4096)
	var got []byte
	deadline := time.Now().Add(waitTO)
	for ns == "" && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if m := regexp.MustCompile(`PIDNS=(pid:\[\d+\])`).FindSubmatch(got); m != nil {
			ns = string(m[1])
		}
		if err != nil {
			break
		}
	}
	require.NotEmpty(t, ns, "the harness did not start its board: %s", got)
	if m := regexp.MustCompile(`HOLDER=(\d+)`).FindSubmatch(got); m != nil {
		if pid, err := strconv.Atoi(string(m[1])); err == nil {
			defer func() { _ = unix.Kill(pid, unix.SIGKILL) }()
		}
	}
	require.Eventually(t, func() bool {
		for _, pid := range inPIDNamespace(ns) {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) == "sleep\x001719\x00" {
				return true
			}
		}
		return false
	}, waitTO, 10*time.Millisecond, "the shell did not become sleep 1719")

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.Eventually(t, func() bool { return len(inPIDNamespace(ns)) == 0 }, waitTO, 10*time.Millisecond,
		"processes of the board outlived its harness: %v", inPIDNamespace(ns))
}

// TestSandboxSymlinkedTmp: a board that turns its tmp into a symlink to a
// host directory gets neither that directory bound as /tmp nor anything
// created or chowned there by the harness.
func TestSandboxSymlinkedTmp(t *testing.T) {
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s3cret"), 0o644))
	b, c := newBoardOn(t, "links", Options{})
	run(t, b, c, "true")
	// What a board process could do between two logins.
	require.NoError(t, os.RemoveAll(filepath.Join(b.Root(), "tmp")))
	require.NoError(t, os.Symlink(outside, filepath.Join(b.Root(), "tmp")))
	require.NoError(t, c.Send("exit\n"))
	login(t, b, c)
	assert.Equal(t, "gone\n", run(t, b, c, "test -e /tmp/secret && echo there || echo gone"))
	fi, err := os.Lstat(filepath.Join(b.Root(), "tmp"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir(), "tmp is a directory again")
	st, err := os.Stat(outside)
	require.NoError(t, err)
	assert.Equal(t, uint32(os.Geteuid()), st.Sys().(*syscall.Stat_t).Uid, "the harness chowned what the link pointed to")
}

// TestSandboxStagesAreNotGo: the processes that build a board's sandbox
// (the network's stage and the init it clones) are the C stage of this
// program (stage.c), not its Go runtime: each has one thread (a Go
// program has several) and its command line does not carry the shell's
// environment (which every user of the host could read there). Nothing is
// executed between the harness and the shell but the network's stage.
func TestSandboxStagesAreNotGo(t *testing.T) {
	b, c := newBoardOn(t, "stages", Options{})
	sh := hostPID(t, token(b), pidOf(t, run(t, b, c, "echo $$")))
	init := ppid(t, sh)
	top := ppid(t, init)
	assert.Equal(t, os.Getpid(), ppid(t, top), "the chain is: harness, the network's stage, init, shell")
	for _, pid := range []int{init, top} {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		require.NoError(t, err)
		assert.Regexp(t, `(?m)^Threads:\s+1$`, string(st), "stage %d runs more than one thread: a Go runtime started", pid)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(cmdline), sandboxArg0+"\x00net\x00"), "%q", cmdline)
		assert.NotContains(t, string(cmdline), token(b), "the token is on the command line")
		assert.NotContains(t, string(cmdline), "TMPDIR", "the environment is on the command line")
	}
	// The shell got its environment all the same.
	assert.Equal(t, token(b)+"\n", run(t, b, c, "echo $"+tokenVar))
}

func ppid(t *testing.T, pid int) int {
	t.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^PPid:\s+(\d+)$`).FindSubmatch(st)
	require.NotNil(t, m, "no PPid of %d", pid)
	p, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return p
}

// TestShellEnvBounded: the shell's environment crosses to the init in a
// memory file of at most maxShellEnv bytes, and no entry hides a NUL.
func TestShellEnvBounded(t *testing.T) {
	f, err := shellEnvFile([]string{"A=1", "B=two"})
	require.NoError(t, err)
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	assert.Equal(t, "A=1\x00B=two\x00", string(b))
	require.NoError(t, f.Close())

	_, err = shellEnvFile([]string{"A=" + strings.Repeat("x", maxShellEnv)})
	assert.ErrorContains(t, err, "shell environment of")
	_, err = shellEnvFile([]string{"A=1\x00B=2"})
	assert.ErrorContains(t, err, "NUL")
}

// BenchmarkCheckSandbox builds a private network and a sandbox that stops
// once its mounts are made (what a board's power-on builds before its
// shell starts); cpu-ms/op is the CPU of the stages (reaped children).
func BenchmarkCheckSandbox(b *testing.B) {
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &before)
	for b.Loop() {
		if err := checkSandbox(); err != nil {
			b.Fatal(err)
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "stages-cpu-ms/op")
}

// TestSandboxHoldsItsNetwork: a running sandbox keeps its network (whose
// stage it dies with) even once its board has joined another group: the
// old network ends only with its last sandbox.
func TestSandboxHoldsItsNetwork(t *testing.T) {
	nets := NewNetworks()
	b, err := New(Options{Name: "mover", Dir: filepath.Join(t.TempDir(), "mover"), Networks: nets})
	require.NoError(t, err)
	c := console.New(b.Console(), console.Options{})
	t.Cleanup(func() {
		assert.NoError(t, b.Close())
		_ = c.Close()
	})
	_, err = b.JoinGroup(lab.Group{ID: "first", Node: "mover"})
	require.NoError(t, err)
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	_, err = b.JoinGroup(lab.Group{ID: "second", Node: "mover"})
	require.NoError(t, err)
	assert.Equal(t, "alive\n", run(t, b, c, "echo alive"), "the shell outlived its board's leaving the network")
	nets.mu.Lock()
	_, first := nets.nets["first"]
	nets.mu.Unlock()
	assert.True(t, first, "the first network ended under a running sandbox")

	require.NoError(t, b.Off(ctxT(t, waitTO)))
	require.Eventually(t, func() bool {
		nets.mu.Lock()
		defer nets.mu.Unlock()
		_, first := nets.nets["first"]
		return !first
	}, waitTO, 10*time.Millisecond, "the first network outlived its last sandbox")
}

// TestShellGetsOnlyItsDescriptors: what a board's shell inherits is its
// console (0, 1, 2) and its side channel (8), nothing of the network's
// stage (its control socket, the reply sockets, other boards' files); the
// init keeps none once the shell runs. A descriptor this process holds
// without close-on-exec (as it may inherit from its own parent) must not
// pass either.
func TestShellGetsOnlyItsDescriptors(t *testing.T) {
	var leak [2]int
	require.NoError(t, syscall.Pipe(leak[:])) // no close-on-exec
	defer syscall.Close(leak[0])
	defer syscall.Close(leak[1])
	b, c := newBoard(t, "fds")
	ch, err := b.OpenMultiNodeChannel()
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	sh := hostPID(t, token(b), pidOf(t, run(t, b, c, "echo $$")))
	fds := func(pid int) map[string]string {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		require.NoError(t, err)
		m := map[string]string{}
		for _, e := range ents {
			m[e.Name()], _ = os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		}
		return m
	}
	assert.Empty(t, fds(ppid(t, sh)), "the init's descriptors")
	got := fds(sh)
	tty := got["0"]
	assert.True(t, strings.HasPrefix(tty, "/dev/pts/"), "%v", got)
	assert.True(t, strings.HasPrefix(got["8"], "socket:"), "%v", got)
	for fd, what := range got {
		switch {
		case fd == "8":
		case what == tty, what == "/dev/tty", what == "/dev/null": // the shell's own (dash keeps its tty at 10+)
		default:
			t.Errorf("the shell has fd %s = %s", fd, what)
		}
	}
}

// TestNetworkStartCopiesNothingOfTroupe: a network's stage must start
// without a fork of troupe (Go forks the whole process to give a child
// namespaces and id maps): every page of troupe would be write-protected
// until written again, each write a page fault (measured: ~10 ms per
// start and ~20 µs per page on a VM whose page-table updates trap: half
// of the harness's CPU in a 1+3 job). Counted as this thread's minor
// faults while it rewrites 16 MiB it wrote before the start.
func TestNetworkStartCopiesNothingOfTroupe(t *testing.T) {
	const size, page = 16 << 20, 4096
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	defer func() { _ = unix.Munmap(mem) }()
	// 4 KiB pages: a fork's copy of a huge page faults once per 2 MiB.
	require.NoError(t, unix.Madvise(mem, unix.MADV_NOHUGEPAGE))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	write := func() int64 {
		var before, after unix.Rusage
		require.NoError(t, unix.Getrusage(unix.RUSAGE_THREAD, &before))
		for i := 0; i < size; i += page {
			mem[i]++
		}
		require.NoError(t, unix.Getrusage(unix.RUSAGE_THREAD, &after))
		return after.Minflt - before.Minflt
	}
	write()
	require.Less(t, write(), int64(size/page/100), "pages written twice fault")
	ns := NewNetworks()
	n, err := ns.join("")
	require.NoError(t, err)
	defer ns.leave(n)
	assert.Less(t, write(), int64(size/page/100), "troupe's pages fault after a network started: it was forked")
}

// TestSpawnRefusesBadHostnames: a hostname the kernel would refuse (or one
// that would split the stage's request) is refused before it is asked.
func TestSpawnRefusesBadHostnames(t *testing.T) {
	ns := NewNetworks()
	n, err := ns.join("")
	require.NoError(t, err)
	defer ns.leave(n)
	dir := t.TempDir()
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer null.Close()
	for _, h := range []string{"", strings.Repeat("h", maxHostname+1), "two words", "new\nline"} {
		_, err := n.spawn(shellSpec{tty: null, root: dir, hostname: h})
		assert.ErrorContains(t, err, "hostname", "%q", h)
	}
}

// TestBoardSessionYieldsToTroupe: a board's shell is in its init's
// session (PID 1 in the sandbox leads it, the console its controlling
// tty), whose scheduling group (the kernel's autogroup) troupe weighs at
// SessionNice: a thousand boards' sessions must not outweigh troupe's a
// thousand to one. Without the weight the autogroup's nice is 0.
func TestBoardSessionYieldsToTroupe(t *testing.T) {
	if _, err := os.Stat("/proc/self/autogroup"); err != nil {
		testenv.Missing(t, "kernel autogroups (CONFIG_SCHED_AUTOGROUP): "+err.Error())
		return
	}
	b, c := newBoardOn(t, "weigh", Options{})
	assert.Equal(t, "1\n", run(t, b, c, "awk '{print $6}' /proc/$$/stat"), "the init's session")
	assert.Equal(t, "ok\n", run(t, b, c, "{ true >/dev/tty; } 2>/dev/null && echo ok"), "a controlling tty")
	sh := hostPID(t, token(b), pidOf(t, run(t, b, c, "echo $$")))
	group, err := os.ReadFile(fmt.Sprintf("/proc/%d/autogroup", sh))
	require.NoError(t, err)
	require.NotEmpty(t, strings.Fields(string(group)), "the board's session is not an autogroup")
	own, err := os.ReadFile("/proc/self/autogroup")
	require.NoError(t, err)
	// The kernel prints nothing for a process of the default group (the
	// root task group: a tree no one in which called setsid since boot,
	// a CI runner's under PID 1, for one); the board's is its own then too.
	if ownGroup := strings.Fields(string(own)); len(ownGroup) > 0 {
		assert.NotEqual(t, ownGroup[0], strings.Fields(string(group))[0], "a group of its own")
	}
	if os.Geteuid() != 0 {
		// Without CAP_SYS_ADMIN the kernel takes one such change per
		// 100 ms on the whole host: not something to assert.
		t.Logf("not root: the board's session is %s", strings.TrimSpace(string(group)))
		return
	}
	assert.Equal(t, fmt.Sprintf("nice %d", SessionNice), strings.Join(strings.Fields(string(group))[1:], " "))
}

// TestShellStartFailureSaysWhy: when the board's shell cannot be started
// (here its console is not a terminal, so it cannot be the session's
// controlling tty), the init says which step failed on the console, and
// the sandbox ends.
func TestShellStartFailureSaysWhy(t *testing.T) {
	ns := NewNetworks()
	n, err := ns.join("")
	require.NoError(t, err)
	defer ns.leave(n)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	bx, err := n.spawn(shellSpec{tty: w, root: dir, hostname: "notty"})
	_ = w.Close()
	require.NoError(t, err)
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	select {
	case <-bx.exited:
	case <-time.After(waitTO):
		t.Fatal("the sandbox did not end")
	}
	assert.Equal(t, "troupe sandbox init: controlling tty: Inappropriate ioctl for device\n", string(out))
}

// TestOffWhileShellStarts powers boards off while their shells are being
// asked for (the login just typed): the request's side channel and
// console stay valid however the two meet (-race watches them), and
// nothing of the power-on survives the power off.
func TestOffWhileShellStarts(t *testing.T) {
	b, c := newBoard(t, "racer")
	for i := 0; i < 20; i++ {
		ch, err := b.OpenMultiNodeChannel()
		require.NoError(t, err)
		require.NoError(t, b.On(ctxT(t, waitTO)))
		expect(t, c, `racer login: $`)
		tok := token(b)
		require.NoError(t, c.Send("root\n"))
		if i%2 == 1 {
			time.Sleep(time.Duration(i) * 100 * time.Microsecond) // vary where the power off lands
		}
		require.NoError(t, b.Off(ctxT(t, waitTO)))
		_ = ch.Close()
		assert.Empty(t, tokenProcs(tok), "processes of power-on %d left", i)
	}
}

// TestSpawnAfterTheStageEnded: a network whose stage has gone (killed)
// refuses new sandboxes, saying so and why.
func TestSpawnAfterTheStageEnded(t *testing.T) {
	ns := NewNetworks()
	n, err := ns.join("")
	require.NoError(t, err)
	defer ns.leave(n)
	require.NoError(t, n.cmd.Process.Kill())
	select {
	case <-n.done:
	case <-time.After(waitTO):
		t.Fatal("the stage did not end")
	}
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer null.Close()
	_, err = n.spawn(shellSpec{tty: null, root: t.TempDir(), hostname: "late"})
	assert.ErrorContains(t, err, "the network's stage has ended: signal: killed")
}

// TestSpawnQueuesWhileTheStageAnswers: more boards than the stage takes
// requests at once wait for it as long as it answers some: a thousand
// boards powered on at once queued longer than the stage's patience, and
// the last ones failed to boot ("the network's stage is busy"). Here one
// request at a time, and a patience far below what the whole queue takes
// but far above one sandbox.
func TestSpawnQueuesWhileTheStageAnswers(t *testing.T) {
	ns := NewNetworks()
	n, err := ns.join("")
	require.NoError(t, err)
	defer ns.leave(n)
	n.slots = make(chan struct{}, 1)
	n.patience = 100 * time.Millisecond
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp"), 0o755))
	const boards = 150
	start := time.Now()
	errs := make(chan error, boards)
	for range boards {
		go func() {
			r, w, err := os.Pipe()
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			bx, err := n.spawn(shellSpec{tty: w, root: dir, hostname: "queued", probe: true})
			_ = w.Close()
			if err != nil {
				errs <- err
				return
			}
			out, _ := io.ReadAll(r)
			select {
			case <-bx.exited:
			case <-time.After(waitTO):
				errs <- errors.New("a probe sandbox did not end")
				return
			}
			if string(out) != "ok\n" {
				errs <- fmt.Errorf("probe said %q", out)
				return
			}
			errs <- nil
		}()
	}
	for range boards {
		assert.NoError(t, <-errs)
	}
	took := time.Since(start)
	t.Logf("%d sandboxes one at a time in %s", boards, took)
	if took < 2*n.patience {
		t.Logf("the queue took less than twice the patience: this run did not test the wait")
	}
}

// TestSpawnBusyWhenTheStageStalls: a stage that answers nothing for its
// patience is busy, and the error says for how long.
func TestSpawnBusyWhenTheStageStalls(t *testing.T) {
	ns := NewNetworks()
	n, err := ns.join("")
	require.NoError(t, err)
	defer ns.leave(n)
	n.patience = 100 * time.Millisecond
	for range maxSpawning {
		n.slots <- struct{}{} // requests that never get their answer
	}
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer null.Close()
	_, err = n.spawn(shellSpec{tty: null, root: t.TempDir(), hostname: "stalled"})
	assert.ErrorContains(t, err, "the network's stage is busy: no request answered for")
	for range maxSpawning {
		<-n.slots
	}
}

// BenchmarkSpawnSandbox asks one network's stage for sandboxes that stop
// once their mounts are made (a board's namespaces and file system, without
// its shell), one after the other: the stage's clone, the init's mounts
// and the sandbox's end.
func BenchmarkSpawnSandbox(b *testing.B) {
	ns := NewNetworks()
	n, err := ns.join("")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.leave(n)
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		bx, err := n.spawn(shellSpec{tty: w, root: dir, hostname: "probe", probe: true})
		_ = w.Close()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(r)
		_ = r.Close()
		<-bx.exited
		if string(out) != "ok\n" {
			b.Fatalf("probe said %q", out)
		}
	}
}

// TestShellsGoneWithTheirStage: when a network's stage dies under a
// running board (killed), its sandboxes die with it, the console shows a
// fresh login prompt (what the test shell takes as its shell's death),
// and the next login shows why no shell starts.
func TestShellsGoneWithTheirStage(t *testing.T) {
	b, c := newBoard(t, "orphan")
	require.NoError(t, b.On(ctxT(t, waitTO)))
	login(t, b, c)
	b.nmu.Lock()
	n := b.net
	b.nmu.Unlock()
	require.NotNil(t, n)
	require.NoError(t, n.cmd.Process.Kill())
	expect(t, c, `orphan login: $`)
	require.NoError(t, c.Send("root\n"))
	expect(t, c, `troupe sim: no shell: .*the network's stage has ended: signal: killed`)
}
