/* SPDX-License-Identifier: MIT */
/*
 * The routes one process has into another's memory and descriptors, for
 * the tests that show the guest process closed to the VMM (test_gproc,
 * tests/uapi/test_isolation.c).
 */
#ifndef TESTS_UNIT_PROC_ROUTES_H
#define TESTS_UNIT_PROC_ROUTES_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
	ROUTE_PROC_MEM = 1 << 0,  /* pread of /proc/PID/mem at @addr */
	ROUTE_VM_READV = 1 << 1,  /* process_vm_readv at @addr */
	ROUTE_PROC_FD = 1 << 2,	  /* a listing of /proc/PID/fd */
	ROUTE_MAP_FILES = 1 << 3, /* a listing of /proc/PID/map_files */
	ROUTE_GETFD = 1 << 4,	  /* pidfd_getfd of its descriptor 3 */
	ROUTE_PTRACE = 1 << 5,	  /* PTRACE_SEIZE */
	ROUTE_ALL = (1 << 6) - 1,
};

static inline int proc_dir_listed(pid_t pid, const char *dir)
{
	char path[64];
	DIR *d;
	int listed;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, dir);
	d = opendir(path);
	if (!d)
		return 0;
	listed = readdir(d) != NULL;
	closedir(d);
	return listed;
}

/* Each route into @pid that worked, as ROUTE_* bits (@addr: mapped there). */
static inline int proc_routes(pid_t pid, uint64_t addr)
{
	char path[64], byte;
	struct iovec local = { &byte, 1 }, remote = { (void *)(uintptr_t)addr, 1 };
	int bits = 0, fd;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, &byte, 1, (off_t)addr) == 1)
			bits |= ROUTE_PROC_MEM;
		close(fd);
	}
	if (process_vm_readv(pid, &local, 1, &remote, 1, 0) == 1)
		bits |= ROUTE_VM_READV;
	if (proc_dir_listed(pid, "fd"))
		bits |= ROUTE_PROC_FD;
	if (proc_dir_listed(pid, "map_files"))
		bits |= ROUTE_MAP_FILES;
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd >= 0) {
		int got = (int)syscall(SYS_pidfd_getfd, fd, 3, 0);

		if (got >= 0) {
			bits |= ROUTE_GETFD;
			close(got);
		}
		close(fd);
	}
	if (ptrace(PTRACE_SEIZE, pid, 0, 0) == 0) {
		bits |= ROUTE_PTRACE;
		ptrace(PTRACE_DETACH, pid, 0, 0);
	}
	return bits;
}

#endif
