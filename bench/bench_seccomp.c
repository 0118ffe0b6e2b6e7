// SPDX-License-Identifier: MIT
/*
 * `guestmem bench seccomp`: what the preload's seccomp filter
 * (src/preload/seccomp.c) costs a VMM, measured on the filter itself.
 *
 * This binary runs itself under `guestmem exec` several times, alternating
 * GUESTMEM_SECCOMP=0 (no filter: the baseline), the default filter, and
 * GUESTMEM_SECCOMP=files; each run measures, as a VMM would see them:
 *   - the VMM's unrelated system calls: getpid, and a one-byte pipe
 *     write+read (issue 10's goal: within 1.5x of no filter);
 *   - a 4 KiB KVM_SET_MEMORY_ATTRIBUTES through libc (the preload's fast
 *     path, which the filter must not slow) and the same by syscall(2),
 *     which the filter routes to the listener thread;
 *   - mmap+munmap of one anonymous page through libc (the preload's
 *     wrapper, whose call the filter exempts) and by syscall(2) (routed).
 *   - fork + _exit + waitpid, before the process holds any object (its
 *     child starts no listener until its own first object) and after (the
 *     child starts its listener in fork(), its spawner when it wants one).
 * Two more runs of the default filter measure the same in the processes
 * that share the first image's listener: a program a shell execs (the
 * helper receives and forwards its notifications) and a fork child (the
 * first image's listener forwards them).
 * Figures are medians over the runs; every ratio is against a baseline of
 * the same run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "bench.h"

#define SC_RUNS 5
#define SC_N 50000 /* getpid / pipe per run */
#define SC_IOC_N 5000 /* ioctls, map/unmap per run */
#define SC_FORK_N 200 /* fork + _exit + waitpid per run */

enum { M_GETPID, M_PIPE, M_IOCTL_LIBC, M_IOCTL_RAW, M_MAP_LIBC, M_MAP_RAW, M_FORK, M_FORK_BARE,
       M_NR };
enum { F_NONE, F_DEFAULT, F_FILES, F_EXECD, F_FORKED, F_NR };

static const char *const sc_mode_env[F_NR] = { "0", "1", "files", "1", "1" };
static const char *const sc_mode_name[F_NR] = { "0", "1", "files", "1, exec'd by sh",
						 "1, fork child" };

static double sc_per_op(uint64_t t0, long n)
{
	return (double)(bench_now_ns() - t0) / (double)n;
}

/* fork + _exit + waitpid, SC_FORK_N times: ns per round. */
static double sc_forks(void)
{
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < SC_FORK_N; i++) {
		pid_t pid = fork();
		int st;

		if (pid == 0)
			_exit(0);
		if (pid < 0 || waitpid(pid, &st, 0) != pid)
			_exit(10);
	}
	return sc_per_op(t0, SC_FORK_N);
}

/* In the exec'd copy: measure, write M_NR doubles to @out. */
static void sc_child(int out)
{
	struct kvm_memory_attributes a = { .address = 0, .size = 4096, .attributes = 0 };
	struct kvm_userspace_memory_region2 r = { .slot = 0, .memory_size = 2 << 20 };
	double v[M_NR] = { 0 };
	int kvm, vm, p[2];
	char c = 0;
	uint64_t t0;
	void *ram;

	if (getenv("GM_BENCH_SECCOMP_FORK")) {
		/* Measure in a fork child; this first image waits. */
		pid_t pid = fork();
		int st;

		if (pid < 0)
			_exit(2);
		if (pid > 0)
			_exit(waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : 2);
	}
	/* Before any object: a fork child starts nothing in fork(). */
	v[M_FORK_BARE] = sc_forks();
	if (pipe(p))
		_exit(2);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	ram = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r.userspace_addr = (uint64_t)(uintptr_t)ram;
	if (vm < 0 || ram == MAP_FAILED || ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r))
		_exit(3);
	for (int i = 0; i < 1000; i++) /* warm up */
		syscall(SYS_getpid);

	t0 = bench_now_ns();
	for (int i = 0; i < SC_N; i++)
		syscall(SYS_getpid);
	v[M_GETPID] = sc_per_op(t0, SC_N);
	t0 = bench_now_ns();
	for (int i = 0; i < SC_N; i++)
		if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1)
			_exit(4);
	v[M_PIPE] = sc_per_op(t0, SC_N);
	t0 = bench_now_ns();
	for (int i = 0; i < SC_IOC_N; i++) {
		a.attributes = i & 1 ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
		if (ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a))
			_exit(5);
	}
	v[M_IOCTL_LIBC] = sc_per_op(t0, SC_IOC_N);
	/* Without the filter a raw ioctl reaches the socket: nothing to time. */
	t0 = bench_now_ns();
	for (int i = 0; i < SC_IOC_N && strcmp(getenv("GUESTMEM_SECCOMP"), "0"); i++) {
		a.attributes = i & 1 ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
		if (syscall(SYS_ioctl, vm, KVM_SET_MEMORY_ATTRIBUTES, &a))
			_exit(6);
	}
	v[M_IOCTL_RAW] = sc_per_op(t0, SC_IOC_N);
	t0 = bench_now_ns();
	for (int i = 0; i < SC_IOC_N; i++) {
		void *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (q == MAP_FAILED || munmap(q, 4096))
			_exit(7);
	}
	v[M_MAP_LIBC] = sc_per_op(t0, SC_IOC_N);
	t0 = bench_now_ns();
	for (int i = 0; i < SC_IOC_N; i++) {
		void *q = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (q == MAP_FAILED || syscall(SYS_munmap, q, 4096))
			_exit(8);
	}
	v[M_MAP_RAW] = sc_per_op(t0, SC_IOC_N);
	/* Holding objects: the child starts its listener before fork() returns. */
	v[M_FORK] = sc_forks();
	if (write(out, v, sizeof(v)) != (ssize_t)sizeof(v))
		_exit(9);
	_exit(0);
}

/* One exec'd run in mode @f: its M_NR figures, or -errno. */
static int sc_run(int f, double v[M_NR])
{
	char fdbuf[16], self[4096], cmd[4200];
	int p[2], st;
	pid_t pid;
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (len <= 0 || (size_t)len >= sizeof(self) - 1)
		return -EIO;
	self[len] = '\0';
	if (pipe(p))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(p[0]);
		snprintf(fdbuf, sizeof(fdbuf), "%d", p[1]);
		setenv("GM_BENCH_SECCOMP_CHILD", fdbuf, 1);
		setenv("GUESTMEM_SECCOMP", sc_mode_env[f], 1);
		unsetenv("GUESTMEM_BACKING");
		if (f == F_FORKED)
			setenv("GM_BENCH_SECCOMP_FORK", "1", 1);
		if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
			_exit(126);
		/* The shell is the first image; "exec" replaces it with the bench. */
		snprintf(cmd, sizeof(cmd), "exec '%s' bench seccomp", self);
		if (f == F_EXECD)
			execl(self, "guestmem", "exec", "--", "/bin/sh", "-c", cmd, (char *)NULL);
		else
			execl(self, "guestmem", "exec", "--", self, "bench", "seccomp", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	ssize_t n = read(p[0], v, sizeof(double) * M_NR);
	close(p[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)(sizeof(double) * M_NR) || !WIFEXITED(st) || WEXITSTATUS(st))
		return -EIO;
	return 0;
}

static int bench_seccomp_cost(void)
{
	const char *child = getenv("GM_BENCH_SECCOMP_CHILD");
	double v[F_NR][M_NR][SC_RUNS], med[F_NR][M_NR], one[M_NR];

	if (child)
		sc_child(atoi(child)); /* never returns */
	for (int r = 0; r < SC_RUNS; r++)
		for (int f = 0; f < F_NR; f++) {
			bench_progress("seccomp/cost: run %d/%d, GUESTMEM_SECCOMP=%s", r + 1, SC_RUNS,
				       sc_mode_name[f]);
			int e = sc_run(f, one);

			if (e) {
				bench_note("seccomp: the exec'd run failed (%s); no preload here?",
					   strerror(-e));
				return 0;
			}
			for (int m = 0; m < M_NR; m++)
				v[f][m][r] = one[m];
		}
	for (int f = 0; f < F_NR; f++)
		for (int m = 0; m < M_NR; m++)
			med[f][m] = bench_median(v[f][m], SC_RUNS);
	bench_row("getpid, default filter vs none", med[F_DEFAULT][M_GETPID], med[F_NONE][M_GETPID],
		  "ns", "<= 1.5x");
	bench_row("pipe write+read, default filter vs none", med[F_DEFAULT][M_PIPE],
		  med[F_NONE][M_PIPE], "ns", "<= 1.5x");
	bench_row("getpid, files filter vs none", med[F_FILES][M_GETPID], med[F_NONE][M_GETPID],
		  "ns", "<= 1.5x");
	bench_row("pipe write+read, files filter (routed) vs none", med[F_FILES][M_PIPE],
		  med[F_NONE][M_PIPE], "ns", "");
	bench_row("libc SET_MEMORY_ATTRIBUTES 4K, default filter vs none",
		  med[F_DEFAULT][M_IOCTL_LIBC], med[F_NONE][M_IOCTL_LIBC], "ns", "~1x");
	bench_row("raw SET_MEMORY_ATTRIBUTES 4K (notified) vs libc, same run",
		  med[F_DEFAULT][M_IOCTL_RAW], med[F_DEFAULT][M_IOCTL_LIBC], "ns", "");
	bench_row("libc mmap+munmap 4K, default filter vs none", med[F_DEFAULT][M_MAP_LIBC],
		  med[F_NONE][M_MAP_LIBC], "ns", "~1x");
	bench_row("raw mmap+munmap 4K (munmap notified) vs libc, same run",
		  med[F_DEFAULT][M_MAP_RAW], med[F_DEFAULT][M_MAP_LIBC], "ns", "");
	bench_row("raw SET_MEMORY_ATTRIBUTES 4K: a program exec'd by sh vs the first image",
		  med[F_EXECD][M_IOCTL_RAW], med[F_DEFAULT][M_IOCTL_RAW], "ns",
		  "+ a forward by the helper");
	bench_row("raw SET_MEMORY_ATTRIBUTES 4K: a fork child vs the first image",
		  med[F_FORKED][M_IOCTL_RAW], med[F_DEFAULT][M_IOCTL_RAW], "ns",
		  "+ a forward by the parent");
	bench_row("raw mmap+munmap 4K: a program exec'd by sh vs the first image",
		  med[F_EXECD][M_MAP_RAW], med[F_DEFAULT][M_MAP_RAW], "ns", "");
	bench_row("libc mmap+munmap 4K: a program exec'd by sh vs the first image",
		  med[F_EXECD][M_MAP_LIBC], med[F_DEFAULT][M_MAP_LIBC], "ns",
		  "~1x (the gate)");
	bench_row("libc SET_MEMORY_ATTRIBUTES 4K: a program exec'd by sh vs the first image",
		  med[F_EXECD][M_IOCTL_LIBC], med[F_DEFAULT][M_IOCTL_LIBC], "ns", "~1x");
	bench_row("getpid: a program exec'd by sh vs no filter", med[F_EXECD][M_GETPID],
		  med[F_NONE][M_GETPID], "ns", "<= 1.5x");
	bench_row("fork+_exit+waitpid holding objects, default filter vs none",
		  med[F_DEFAULT][M_FORK], med[F_NONE][M_FORK], "ns",
		  "the child's listener starts in fork()");
	bench_row("fork+_exit+waitpid before any object, default filter vs none",
		  med[F_DEFAULT][M_FORK_BARE], med[F_NONE][M_FORK_BARE], "ns",
		  "<= 1.5x; listener at the child's first object");
	bench_note("medians of %d exec'd runs per mode, alternating; \"none\" is GUESTMEM_SECCOMP=0",
		   SC_RUNS);
	return 0;
}

const struct bench_item bench_seccomp_items[] = {
	{ "cost", bench_seccomp_cost },
	{ NULL, NULL },
};
