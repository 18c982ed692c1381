// The sandbox stage of a sim network and its boards, run before the Go
// runtime starts.
//
// troupe re-executes itself with argv[0] = "troupe-sandbox" to hold a
// network and to build its boards' sandboxes. Starting the Go runtime and
// every package's init of this program costs some 40 ms of CPU per start,
// more than all the rest of a board's boot: so the stage is this
// constructor, which runs when the C library starts the program, does its
// work and exits without returning to Go (the way runc builds its
// containers' namespaces). Any other start of the program returns at once.
//
//	net PARENT
//	    run by troupe: unshares new user and network namespaces (troupe
//	    writes their id maps, enter_namespaces), brings the loopback up,
//	    says "ok" on stdout, then makes the network's boards (a zygote): each request read on
//	    its control socket (fd 0, SOCK_SEQPACKET) is cloned into a board's
//	    init, PID 1 of new user, mount, PID, UTS and IPC namespaces nested
//	    in the network's (no exec, no fork of a middle stage: every process
//	    start is milliseconds of a board's boot in a VM). EOF on the control
//	    socket ends it; its boards die with it (death signal), and it dies
//	    with troupe.
//
// A request: the text "HOSTNAME NICE PROBE MN NPROC FSIZE" and, as SCM_RIGHTS, the
// descriptors [reply, console, root, env] plus [side channel] when MN is 1:
// reply, a socket where the answer goes ("ok PID" with the init's pidfd,
// or "error MESSAGE"); console, the init's and shell's stdin/out/err;
// root, the board's root directory (bound as HOME); env, the shell's
// environment (NUL-separated, read to EOF: not on a command line, which
// every user of the host can read); the side channel, the shell's fd
// SHELL_MN_FD. The init leads the board's session (the console its
// controlling tty; the stage answers once the session exists, for troupe
// to weigh its scheduling group), makes the hostname and file system
// (build_root), starts /bin/sh -i on the console as a child of its own
// (the foreground process group) and reaps every orphan; PROBE 1: it says
// "ok" on the console once the file system is built and exits instead.
// NPROC and FSIZE bound the board (0: no bound): its processes at once
// (RLIMIT_NPROC, counted per user namespace: per board) and the bytes of
// any one file it writes (RLIMIT_FSIZE), both hard limits.
// Errors of an init: a line on the console, exit status 125.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#define EXE_FD 3
#define SHELL_MN_FD 8 // sim.MultiNodeFD
#define ENV_MAX (1 << 20)
#define SANDBOX_HOME "/root"

struct troupe_mount_attr {
	unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

static const char *stage = "stage";

static void die(const char *fmt, ...) {
	int e = errno;
	va_list ap;
	fprintf(stderr, "troupe sandbox %s: ", stage);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (e != 0)
		fprintf(stderr, ": %s", strerror(e));
	fputc('\n', stderr);
	_exit(125);
}

#define check(expr, ...)                                                       \
	do {                                                                   \
		if ((expr) < 0)                                                \
			die(__VA_ARGS__);                                      \
	} while (0)

static long number(const char *s) {
	char *end;
	errno = 0;
	long n = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0')
		die("bad number %s", s);
	return n;
}

// dieWithParent arms SIGKILL for when the parent dies, and dies now if it
// already has.
static void die_with_parent(pid_t parent) {
	check(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "parent death signal");
	if (parent != 0 && getppid() != parent) {
		errno = 0;
		die("parent gone");
	}
}

static void write_file(const char *path, const char *s) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	check(fd, "open %s", path);
	size_t n = strlen(s);
	if (write(fd, s, n) != (ssize_t)n)
		die("write %s", path);
	close(fd);
}

// join writes a then b into buf (size n, the result cut to fit): no
// snprintf in an init, whose large frames and locale reads are page
// faults of a fresh process (each a trap to the hypervisor in a VM).
static const char *join(char *buf, size_t n, const char *a, const char *b) {
	size_t la = strnlen(a, n - 1);
	memcpy(buf, a, la);
	size_t lb = strnlen(b, n - 1 - la);
	memcpy(buf + la, b, lb);
	buf[la + lb] = '\0';
	return buf;
}

static int clone_tree(const char *path, unsigned flags) {
	return syscall(SYS_open_tree, AT_FDCWD, path, flags | OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE);
}

// attach moves the detached tree fd to dst (made as a directory when dir),
// nosuid, and read-only and nodev all the way down when read_only.
static void attach(int fd, const char *dst, int dir, int read_only) {
	if (dir && mkdir(dst, 0755) < 0 && errno != EEXIST)
		die("mkdir %s", dst);
	struct troupe_mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID};
	if (read_only)
		attr.attr_set |= MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
	check(syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr), "%s: set attributes", dst);
	check(syscall(SYS_move_mount, fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH), "%s: move mount", dst);
	close(fd);
}

static void bind_path(const char *src, const char *dst, int dir, int read_only) {
	int fd = clone_tree(src, 0);
	check(fd, "%s", src);
	attach(fd, dst, dir, read_only);
}

static const char *system_dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", NULL};
static const char *devices[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

static void build_dev(void) {
	check(mkdir("/dev", 0755), "mkdir /dev");
	check(mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k"), "/dev");
	char src[64], dst[64];
	for (const char **d = devices; *d; d++) {
		join(dst, sizeof dst, "/dev/", *d);
		join(src, sizeof src, "/oldroot/dev/", *d);
		int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		check(fd, "create %s", dst);
		close(fd);
		bind_path(src, dst, 0, 0);
	}
	check(mkdir("/dev/pts", 0755), "mkdir /dev/pts");
	check(mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"), "devpts");
	check(mkdir("/dev/shm", 01777), "mkdir /dev/shm");
	check(mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m"), "/dev/shm");
	static const char *links[][2] = {
	    {"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
	    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		join(dst, sizeof dst, "/dev/", links[i][0]);
		check(symlink(links[i][1], dst), "symlink %s", dst);
	}
}

// build_root makes the board's file system: a read-only tmpfs root with
// the host's system directories bound read-only, the board's root
// directory (the cwd at entry) as HOME, its tmp as /tmp, a fresh /proc, a
// minimal /dev with a private devpts. Nothing else of the host is
// reachable.
static void build_root(void) {
	int home = clone_tree(".", 0);
	check(home, "board root");
	// The board's own processes may have made tmp a symlink: never follow it.
	int tmp = clone_tree("tmp", AT_SYMLINK_NOFOLLOW);
	check(tmp, "board tmp");
	struct stat st;
	if (fstat(tmp, &st) < 0 || !S_ISDIR(st.st_mode)) {
		errno = 0;
		die("board tmp: not a directory");
	}
	check(mount("", "/", "", MS_REC | MS_PRIVATE, ""), "make / private");
	check(mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m"), "root tmpfs");
	check(mkdir("/tmp/oldroot", 0700), "mkdir oldroot");
	check(syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot"), "pivot_root");
	check(chdir("/"), "chdir /");
	char src[64], dst[64], target[4096];
	for (const char **d = system_dirs; *d; d++) {
		join(src, sizeof src, "/oldroot/", *d);
		join(dst, sizeof dst, "/", *d);
		if (lstat(src, &st) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(src, target, sizeof target - 1);
			check(n, "readlink %s", src);
			target[n] = '\0';
			check(symlink(target, dst), "symlink %s", dst);
		} else if (S_ISDIR(st.st_mode)) {
			bind_path(src, dst, 1, 1);
		}
	}
	attach(home, SANDBOX_HOME, 1, 0);
	attach(tmp, "/tmp", 1, 0);
	build_dev();
	static const char *tmpfs[] = {"/run", "/var", "/var/tmp", NULL};
	for (const char **d = tmpfs; *d; d++) {
		if (mkdir(*d, 0755) < 0 && errno != EEXIST)
			die("mkdir %s", *d);
	}
	check(mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m"), "/run");
	check(mount("tmpfs", "/var/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m"), "/var/tmp");
	// proc needs a fully visible proc in the namespace: mount it before the
	// old root goes.
	check(mkdir("/proc", 0555), "mkdir /proc");
	check(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""), "/proc");
	check(umount2("/oldroot", MNT_DETACH), "detach old root");
	check(rmdir("/oldroot"), "remove old root");
	check(mount("", "/", "", MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, ""), "read-only root");
	check(chdir(SANDBOX_HOME), "chdir %s", SANDBOX_HOME);
}

// env_buf holds an init's environment (see read_env), in the stage's
// zero-filled data: an init's first malloc would set up the C library's
// heap in it, page faults of a fresh process (see join).
static char env_buf[ENV_MAX + 1];
static char *env_ptrs[ENV_MAX / 2 + 2];

// read_env reads the shell's environment from fd: NUL-separated entries,
// at most ENV_MAX bytes.
static char **read_env(int fd) {
	char *buf = env_buf;
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, ENV_MAX - n);
		if (r < 0 && errno == EINTR)
			continue;
		check(r, "read environment");
		if (r == 0)
			break;
		n += r;
		if (n == ENV_MAX) {
			errno = 0;
			die("environment over %d bytes", ENV_MAX);
		}
	}
	close(fd);
	buf[n] = '\0';
	// An entry kept is at least one byte and its NUL: at most ENV_MAX / 2
	// (empty ones are no entries).
	size_t k = 0;
	for (size_t i = 0, l; i < n; i += l + 1) {
		l = strlen(buf + i);
		if (l > 0)
			env_ptrs[k++] = buf + i;
	}
	env_ptrs[k] = NULL;
	return env_ptrs;
}

// child_fail ends the shell's child before its exec: the failed step on
// the console (fd 2), by system calls only (see shell).
static void child_fail(const char *what) {
	static const char prefix[] = "troupe sandbox init: ";
	const char *reason = strerrordesc_np(errno);
	struct iovec v[] = {
		{(void *)prefix, sizeof prefix - 1}, {(void *)what, strlen(what)}, {": ", 2},
		{(void *)reason, strlen(reason)}, {"\n", 1},
	};
	(void)!writev(2, v, 5);
	_exit(125);
}

// shell starts /bin/sh -i on the console: in the init's session, its
// process group in the foreground, niced, the side channel (mn, if not
// -1) at SHELL_MN_FD. vfork: the child borrows the init's memory until its
// exec instead of copying it (a copy's page tables, made and torn down
// again at the exec, cost more than the rest of the start in a VM). So it
// makes system calls only, and fails through child_fail.
static pid_t shell(char **env, int nice, int mn) {
	char *argv[] = {"/bin/sh", "-i", NULL};
	pid_t pid = vfork();
	check(pid, "start shell");
	if (pid > 0)
		return pid;
	// The init's session, the console its controlling tty: the shell's
	// process group is the one in the foreground (SIGTTOU held: a
	// background group may not take the terminal otherwise).
	if (setpgid(0, 0) < 0)
		child_fail("process group");
	sigset_t ttou, old;
	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	sigprocmask(SIG_BLOCK, &ttou, &old);
	if (tcsetpgrp(0, getpid()) < 0)
		child_fail("foreground");
	sigprocmask(SIG_SETMASK, &old, NULL);
	// What the shell starts inherits it. (Refused only when this process
	// runs nicer still: then so does the shell.)
	setpriority(PRIO_PROCESS, 0, nice);
	if (mn == SHELL_MN_FD) {
		// Received there (close-on-exec): dup2 would leave it so.
		if (fcntl(mn, F_SETFD, 0) < 0)
			child_fail("side channel");
	} else if (mn >= 0) {
		if (dup2(mn, SHELL_MN_FD) < 0)
			child_fail("side channel");
		close(mn);
	}
	execve(argv[0], argv, env);
	child_fail("exec /bin/sh");
	return -1;
}

// exit_like reaps children until child exits, then exits with its status
// (128 + the signal that killed it).
static void exit_like(pid_t child) {
	for (;;) {
		int status;
		pid_t pid = wait(&status);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0)
			_exit(126);
		if (pid == child)
			_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}

// zygote_pidfd is the network stage's own pidfd: an init polls it once
// its death signal is armed, to know that its parent still lived then.
static int zygote_pidfd = -1;

// A board request (see the top of this file).
struct request {
	int reply, console, root, env, mn; // mn: -1 without a side channel
	int session;                       // the init writes a byte here once its session exists
	char hostname[65];
	int nice, probe;
	unsigned long long nproc, fsize; // 0: no bound
};

// limit sets resource r's soft and hard limit to n (0: leaves it).
static void limit(int r, unsigned long long n, const char *what) {
	if (n == 0)
		return;
	struct rlimit l = {.rlim_cur = n, .rlim_max = n};
	check(setrlimit(r, &l), "limit %s", what);
}

// board_init is PID 1 of a board, just cloned by the network stage into
// its new namespaces.
static void board_init(struct request *r) {
	stage = "init";
	// The console first: from here on errors go there.
	if (dup2(r->console, 0) < 0 || dup2(r->console, 1) < 0 || dup2(r->console, 2) < 0)
		_exit(125);
	close(r->console);
	close(r->reply);
	signal(SIGCHLD, SIG_DFL); // the init reaps its own (wait)
	check(prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "death signal");
	struct pollfd p = {.fd = zygote_pidfd, .events = POLLIN};
	if (poll(&p, 1, 0) != 0) {
		errno = 0;
		die("the network's stage is gone");
	}
	close(zygote_pidfd);
	// The board's session (with the kernel's autogroups, its scheduling
	// group, which troupe weighs against its own once told it exists) and
	// its controlling tty.
	check(setsid(), "setsid");
	if (!r->probe)
		check(ioctl(0, TIOCSCTTY, 0), "controlling tty");
	if (write(r->session, "s", 1) != 1)
		die("tell the stage");
	close(r->session);
	// root in the new user namespace: the network's root, the sandbox
	// uid on the host.
	write_file("/proc/self/setgroups", "deny");
	write_file("/proc/self/uid_map", "0 0 1");
	write_file("/proc/self/gid_map", "0 0 1");
	check(sethostname(r->hostname, strlen(r->hostname)), "hostname");
	char **env = read_env(r->env);
	close(r->root);
	build_root();
	if (r->probe) {
		if (write(1, "ok\n", 3) != 3)
			die("say ok");
		_exit(0);
	}
	limit(RLIMIT_NPROC, r->nproc, "processes");
	limit(RLIMIT_FSIZE, r->fsize, "file size");
	// Signals from inside the namespace reach PID 1 only when it handles
	// them: it does not (SIGKILL from the host still ends it, and with it
	// every process of the board). The shell is not PID 1 itself: a
	// board's shell must die of kill -9 $$.
	pid_t sh = shell(env, r->nice, r->mn);
	close(0);
	close(1);
	close(2);
	if (r->mn >= 0)
		close(r->mn);
	exit_like(sh);
}

// answer sends text, and fd when not -1, on the reply socket.
static int answer(int reply, const char *text, int fd) {
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(reply, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -1 : 0;
}

// parse fills r from the request's text and descriptors; it returns an
// error message, or NULL.
static const char *parse(struct request *r, char *text, int *fds, int nfds) {
	char *save = NULL, *f[6];
	for (int i = 0; i < 6; i++) {
		f[i] = strtok_r(i == 0 ? text : NULL, " ", &save);
		if (f[i] == NULL)
			return "want HOSTNAME NICE PROBE MN NPROC FSIZE";
	}
	if (strtok_r(NULL, " ", &save) != NULL)
		return "want HOSTNAME NICE PROBE MN NPROC FSIZE";
	size_t hn = strlen(f[0]);
	if (hn == 0 || hn >= sizeof r->hostname)
		return "bad hostname";
	memcpy(r->hostname, f[0], hn + 1);
	char *end;
	r->nice = strtol(f[1], &end, 10);
	if (*end != '\0')
		return "bad nice";
	r->probe = strcmp(f[2], "1") == 0;
	int mn = strcmp(f[3], "1") == 0;
	errno = 0;
	r->nproc = strtoull(f[4], &end, 10);
	if (*end != '\0' || errno != 0 || f[4][0] == '-')
		return "bad NPROC";
	r->fsize = strtoull(f[5], &end, 10);
	if (*end != '\0' || errno != 0 || f[5][0] == '-')
		return "bad FSIZE";
	if (nfds != (mn ? 5 : 4))
		return "wrong number of descriptors";
	r->reply = fds[0], r->console = fds[1], r->root = fds[2], r->env = fds[3];
	r->mn = mn ? fds[4] : -1;
	return NULL;
}

#define REQ_MAX 256
#define REQ_FDS 5

// spawn serves one request: the board's init is cloned into new user,
// mount, PID, UTS and IPC namespaces (PID 1 there), and its pidfd goes
// back on the reply socket.
static void spawn(char *text, int *fds, int nfds) {
	struct request r;
	const char *bad = parse(&r, text, fds, nfds);
	if (bad != NULL) {
		if (nfds > 0) {
			char msg[128];
			snprintf(msg, sizeof msg, "error bad request: %s", bad);
			answer(fds[0], msg, -1);
		}
		return;
	}
	// The board's root is the cwd of the init (build_root binds it): set
	// before the clone, so that the new mount namespace has it (a
	// directory of the old one cannot be bound there).
	if (fchdir(r.root) < 0) {
		char msg[256];
		snprintf(msg, sizeof msg, "error board root: %s", strerror(errno));
		answer(r.reply, msg, -1);
		return;
	}
	int session[2];
	if (pipe2(session, O_CLOEXEC) < 0) {
		char msg[256];
		snprintf(msg, sizeof msg, "error session pipe: %s", strerror(errno));
		answer(r.reply, msg, -1);
		return;
	}
	r.session = session[1];
	int pidfd = -1;
	long pid = syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
	                                  CLONE_PIDFD | SIGCHLD,
	                   NULL, &pidfd, NULL, 0);
	if (pid < 0) {
		char msg[256];
		snprintf(msg, sizeof msg, "error new namespaces: %s", strerror(errno));
		close(session[0]);
		close(session[1]);
		answer(r.reply, msg, -1);
		return;
	}
	if (pid == 0) {
		close(session[0]);
		board_init(&r); // never returns
	}
	// The answer waits for the init's session (or its end: EOF): troupe
	// sets the session's scheduling weight by the init's pid.
	close(session[1]);
	char b;
	while (read(session[0], &b, 1) < 0 && errno == EINTR)
		;
	close(session[0]);
	char ok[32];
	snprintf(ok, sizeof ok, "ok %ld", pid);
	// Nobody is there to watch it: it must not run.
	if (answer(r.reply, ok, pidfd) < 0)
		syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	close(pidfd);
}

// reap reaps the inits that have exited (troupe watches them on their
// pidfds). Reaped here rather than by the kernel, their CPU counts in
// this stage's children's, and so in troupe's once it reaps the stage.
static void reap(int sig) {
	(void)sig;
	int e = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = e;
}

// zygote serves the control socket (fd 0) until EOF.
static void zygote(void) {
	struct sigaction sa = {.sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
	sigemptyset(&sa.sa_mask);
	check(sigaction(SIGCHLD, &sa, NULL), "SIGCHLD");
	zygote_pidfd = syscall(SYS_pidfd_open, getpid(), 0);
	check(zygote_pidfd, "own pidfd");
	for (;;) {
		char text[REQ_MAX + 1];
		union {
			char buf[CMSG_SPACE(REQ_FDS * sizeof(int))];
			struct cmsghdr align;
		} u;
		struct iovec iov = {.iov_base = text, .iov_len = REQ_MAX};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
		ssize_t n = recvmsg(0, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0); // EOF: troupe ended the network
		int fds[REQ_FDS], nfds = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (int i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (nfds < REQ_FDS)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		}
		text[n] = '\0';
		if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
			if (nfds > 0)
				answer(fds[0], "error bad request: too long", -1);
		} else {
			spawn(text, fds, nfds);
		}
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
}

// enter_namespaces moves the stage into new user and network namespaces
// (troupe starts it in its own: Go would fork all of troupe for them),
// says "unshared" and waits for troupe to write its id maps (troupe is in
// the parent namespace, as the kernel wants) and say "mapped" on the
// control socket. Root on the host is mapped to nobody (sim.sandboxIDs):
// the stage then takes the namespace's root ids and drops root's
// supplementary groups.
static void enter_namespaces(void) {
	check(unshare(CLONE_NEWUSER | CLONE_NEWNET), "new user and network namespaces");
	if (write(1, "unshared\n", 9) != 9)
		die("say unshared");
	char m[16];
	ssize_t k = recv(0, m, sizeof m, 0);
	if (k != 6 || memcmp(m, "mapped", 6) != 0) {
		if (k >= 0)
			errno = 0;
		die("id maps: no word from troupe");
	}
	if (getuid() != 0 || getgid() != 0) {
		check(setgroups(0, NULL), "drop supplementary groups");
		check(setresgid(0, 0, 0), "setresgid");
		check(setresuid(0, 0, 0), "setresuid");
		// A change of ids makes a process undumpable: its /proc files
		// root's, its boards' inits could not write their own id maps.
		// Dumpable as when Go set the ids before the exec.
		check(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable");
	}
}

static void net(int argc, char **argv) {
	stage = "net";
	if (argc != 3) {
		errno = 0;
		die("want 1 argument, have %d", argc - 2);
	}
	pid_t parent = number(argv[2]);
	die_with_parent(parent);
	enter_namespaces();
	// A change of ids cleared the death signal: armed again.
	die_with_parent(parent);
	// Nothing but its standard descriptors passes to the boards: not this
	// program (EXE_FD), nor what troupe's own parent let it inherit.
	check(syscall(SYS_close_range, EXE_FD, ~0U, 0), "close descriptors");
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	check(fd, "loopback");
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "lo");
	check(ioctl(fd, SIOCGIFFLAGS, &ifr), "loopback");
	ifr.ifr_flags |= IFF_UP;
	check(ioctl(fd, SIOCSIFFLAGS, &ifr), "loopback up");
	close(fd);
	// stdout stays open (a pipe troupe reads to its end): a descriptor
	// received later must never take the number of a standard one.
	if (write(1, "ok\n", 3) != 3)
		die("say ok");
	zygote();
}

__attribute__((constructor)) static void troupe_sandbox_stage(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || strcmp(argv[0], "troupe-sandbox") != 0)
		return;
	if (strcmp(argv[1], "net") == 0)
		net(argc, argv);
	errno = 0;
	die("unknown stage %s", argv[1]);
}
