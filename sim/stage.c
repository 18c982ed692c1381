// The sandbox stages of a sim board, run before the Go runtime starts.
//
// troupe re-executes itself with argv[0] = "troupe-sandbox" to build a
// board's sandbox. Starting the Go runtime and every package's init of
// this program costs some 40 ms of CPU per start, more than all the rest
// of a board's boot: so the stages are this constructor, which runs when
// the C library starts the program, does its stage and exits without
// returning to Go (the way runc builds its containers' namespaces). Any
// other start of the program returns at once.
//
// Stages (argv[1]):
//
//	net PARENT
//	    the holder of a network: run by troupe in new user and network
//	    namespaces (clone flags and id maps set by Go), it brings the
//	    loopback up, says "ok" on stdout and waits for EOF on stdin.
//	board PARENT NETPID PRESERVE HOSTNAME NICE PROBE MN
//	    joins the network's user and network namespaces, makes new user,
//	    mount, PID, UTS and IPC namespaces and forks the board's init
//	    (PID 1): hostname, file system (buildRoot), /bin/sh -i on the
//	    console (stdin/out/err) as a child of its own, reaper of every
//	    orphan; this process waits for the init and exits with its status.
//
// Descriptors: 3 this program (closed), 4 where the init writes its pid
// on the host, 5 the shell's environment (NUL-separated, read to EOF: not
// on the command line, which every user of the host can read), 6 the
// board's end of its MultiNode side channel when MN is 1 (the shell gets
// it as SHELL_MN_FD). Errors: a line on stderr, exit status 125.

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
#define REPORT_FD 4
#define ENV_FD 5
#define MN_FD 6
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
		snprintf(dst, sizeof dst, "/dev/%s", *d);
		snprintf(src, sizeof src, "/oldroot/dev/%s", *d);
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
		snprintf(dst, sizeof dst, "/dev/%s", links[i][0]);
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
		snprintf(src, sizeof src, "/oldroot/%s", *d);
		snprintf(dst, sizeof dst, "/%s", *d);
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

// read_env reads the shell's environment from ENV_FD: NUL-separated
// entries, at most ENV_MAX bytes.
static char **read_env(void) {
	char *buf = malloc(ENV_MAX + 1);
	if (buf == NULL)
		die("environment");
	size_t n = 0;
	for (;;) {
		ssize_t r = read(ENV_FD, buf + n, ENV_MAX - n);
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
	close(ENV_FD);
	buf[n] = '\0';
	size_t count = 0;
	for (size_t i = 0; i < n; i++)
		count += buf[i] == '\0';
	char **env = calloc(count + 2, sizeof *env);
	if (env == NULL)
		die("environment");
	size_t k = 0;
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
		env[k++] = buf + i;
	return env;
}

// shell starts /bin/sh -i on the console: a session of its own with the
// console as its controlling tty, niced, the side channel at SHELL_MN_FD.
static pid_t shell(char **env, int nice, int mn) {
	pid_t pid = fork();
	check(pid, "fork shell");
	if (pid > 0)
		return pid;
	check(setsid(), "setsid");
	check(ioctl(0, TIOCSCTTY, 0), "controlling tty");
	// What the shell starts inherits it. (Refused only when this process
	// runs nicer still: then so does the shell.)
	setpriority(PRIO_PROCESS, 0, nice);
	if (mn) {
		check(dup2(MN_FD, SHELL_MN_FD), "side channel");
		close(MN_FD);
	}
	char *argv[] = {"/bin/sh", "-i", NULL};
	execve(argv[0], argv, env);
	die("exec /bin/sh");
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

// board_init is PID 1 of a board.
static void board_init(const char *hostname, int nice, int probe, int mn) {
	// Our pid on the host, from the host's /proc (still mounted).
	char self[32];
	ssize_t n = readlink("/proc/self", self, sizeof self - 1);
	check(n, "own pid");
	if (write(REPORT_FD, self, n) != n)
		die("report pid");
	close(REPORT_FD);
	char **env = read_env();
	check(sethostname(hostname, strlen(hostname)), "hostname");
	build_root();
	if (probe)
		_exit(0);
	// Signals from inside the namespace reach PID 1 only when it handles
	// them: it does not (SIGKILL from the host still ends it, and with it
	// every process of the board). The shell is not PID 1 itself: a
	// board's shell must die of kill -9 $$.
	pid_t sh = shell(env, nice, mn);
	close(0);
	close(1);
	close(2);
	if (mn)
		close(MN_FD);
	exit_like(sh);
}

static void board(int argc, char **argv) {
	stage = "board";
	if (argc != 9) {
		errno = 0;
		die("want 7 arguments, have %d", argc - 2);
	}
	pid_t parent = number(argv[2]), net = number(argv[3]);
	int preserve = number(argv[4]);
	const char *hostname = argv[5];
	int nice = number(argv[6]), probe = number(argv[7]), mn = number(argv[8]);
	close(EXE_FD);

	// The network's user namespace maps its root to the sandbox uid.
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/user", net);
	int userns = open(path, O_RDONLY | O_CLOEXEC);
	check(userns, "open %s", path);
	snprintf(path, sizeof path, "/proc/%d/ns/net", net);
	int netns = open(path, O_RDONLY | O_CLOEXEC);
	check(netns, "open %s", path);
	check(setns(userns, CLONE_NEWUSER), "join the network's user namespace");
	check(setns(netns, CLONE_NEWNET), "join the network namespace");
	close(userns);
	close(netns);
	if (!preserve) {
		// Run as the namespace's root (the sandbox uid on the host),
		// without the host's supplementary groups.
		check(setgroups(0, NULL), "setgroups");
		check(setgid(0), "setgid");
		check(setuid(0), "setuid");
	}
	// A change of credentials clears the death signal: arm it again, so
	// the sandbox dies with troupe however it dies. It also made this
	// process not dumpable, which makes its /proc files root's: the id
	// maps below could not be written (an exec would have undone it).
	die_with_parent(parent);
	check(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable");

	uid_t uid = geteuid();
	gid_t gid = getegid();
	check(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC), "new namespaces");
	char map[64];
	write_file("/proc/self/setgroups", "deny");
	snprintf(map, sizeof map, "0 %u 1", uid);
	write_file("/proc/self/uid_map", map);
	snprintf(map, sizeof map, "0 %u 1", gid);
	write_file("/proc/self/gid_map", map);

	// The init dies with this process. getppid says 0 across the PID
	// namespace: whether this process still lived once the death signal
	// was armed is told by the write end of alive, which only it holds.
	int alive[2];
	check(pipe2(alive, O_CLOEXEC), "pipe");
	pid_t init = fork();
	check(init, "fork init");
	if (init == 0) {
		stage = "init";
		close(alive[1]);
		die_with_parent(0);
		struct pollfd p = {.fd = alive[0], .events = POLLIN};
		if (poll(&p, 1, 0) != 0) {
			errno = 0;
			die("parent gone");
		}
		close(alive[0]);
		board_init(hostname, nice, probe, mn);
	}
	close(alive[0]);
	close(REPORT_FD);
	close(ENV_FD);
	if (mn)
		close(MN_FD);
	exit_like(init);
}

static void net(int argc, char **argv) {
	stage = "net";
	if (argc != 3) {
		errno = 0;
		die("want 1 argument, have %d", argc - 2);
	}
	die_with_parent(number(argv[2]));
	close(EXE_FD);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	check(fd, "loopback");
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "lo");
	check(ioctl(fd, SIOCGIFFLAGS, &ifr), "loopback");
	ifr.ifr_flags |= IFF_UP;
	check(ioctl(fd, SIOCSIFFLAGS, &ifr), "loopback up");
	close(fd);
	if (write(1, "ok\n", 3) != 3)
		die("say ok");
	close(1);
	char buf[256];
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(0);
	}
}

__attribute__((constructor)) static void troupe_sandbox_stage(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 2 || strcmp(argv[0], "troupe-sandbox") != 0)
		return;
	if (strcmp(argv[1], "board") == 0)
		board(argc, argv);
	if (strcmp(argv[1], "net") == 0)
		net(argc, argv);
	errno = 0;
	die("unknown stage %s", argv[1]);
}
