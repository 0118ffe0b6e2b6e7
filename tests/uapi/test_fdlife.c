// SPDX-License-Identifier: MIT
/*
 * test_fdlife: guestmem objects behave as kernel files (design of
 * src/uapi/file.c; spec kvm-gmem-spec.md §3.2-§3.4, §4.1).
 *
 *  - dup / F_DUPFD / dup2 / SCM_RIGHTS / fork keep an object alive; it is
 *    released when the last reference is closed, however it is closed;
 *  - a guest_memfd keeps its VM alive;
 *  - fork: VM ioctls in the child fail with EIO, guest_memfd file
 *    operations work;
 *  - /proc/self/fd names, fd flags, status flags, reopen;
 *  - non-guestmem fds are untouched; bad pointers give EFAULT;
 *  - concurrent closes and operations do not crash or leak.
 *
 * Built twice from this source (see sysmap.h): "direct" calls
 * guestmem_sys_* and can also read the library's live-object counters;
 * "exec" is a plain-libc program run under `guestmem exec --`.  Both see
 * releases through the library's end of each object's socketpair: an
 * object that is alive holds one fd in /proc/self/fd.
 *
 * Runs under tests/harness: every case in its own process, with a timeout.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#ifdef GM_DIRECT
#include "uapi/uapi.h"
#endif
#include "harness.h"
#include "keeper_table.h"
#include "sysmap.h"

#define PG 4096
#define GMEM_SIZE (4 * PG)
#define CASE_TIMEOUT 20 /* seconds */

/* ---- helpers ----------------------------------------------------------- */

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* The descriptors of the VMM's own table (the thread group leader's). */
static int vmm_fds(void)
{
	int n = count_dir("/proc/self/fd");

	if (n < 0)
		FAIL("opendir /proc/self/fd: %s", strerror(errno));
	return n - 1; /* the directory's own fd */
}

/*
 * The library's own table: its keeper thread's (src/uapi/keeper.c), found
 * by the thread's name; 0 before it starts.
 */
static int keeper_fds(void)
{
	char dir[300];
	int n;

	if (!keeper_fd_dir(dir, sizeof(dir)))
		return 0;
	n = count_dir(dir);
	return n < 0 ? 0 : n;
}

/*
 * Every descriptor behind the VMM's objects: its table and the library's.
 * The peers that tell the library of the last close live in the keeper's
 * table, so they are counted there.
 */
static int nfds(void)
{
	return vmm_fds() + keeper_fds();
}

/* Live objects of a type, or -1 where the test cannot see the library. */
static long live(int type)
{
#ifdef GM_DIRECT
	return gm_uapi_live_objects(type);
#else
	(void)type;
	return -1;
#endif
}

enum { T_SYS = 0, T_VM = 1, T_GMEM = 2 };

#define ASSERT_LIVE(type, n)                          \
	do {                                          \
		if (live(type) >= 0)                  \
			ASSERT_EQ(live(type), (n));   \
	} while (0)

/* Wait up to 3 s for the fd count to come back to @want (watcher release). */
static void wait_nfds(int want)
{
	long long end = test_now_ms() + 3000;
	unsigned step = 0;

	while (nfds() != want && test_now_ms() < end)
		test_nap(&step);
	ASSERT_EQ(nfds(), want);
}

static int create_vm(int kvm);

/*
 * A release the watcher thread must do (a VM closed behind the library's
 * back), waited for: hang-ups are handled in order, so one that was due
 * before it has been handled too.
 */
static void watcher_barrier(int kvm)
{
	int base = nfds(), probe = create_vm(kvm);

	ASSERT_EQ(nfds(), base + 2);
	ASSERT_EQ(syscall(SYS_close, probe), 0);
	wait_nfds(base);
}

static int open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(ioctl(fd, KVM_GET_API_VERSION, 0), 12);
	return fd;
}

static int create_vm(int kvm)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);

	ASSERT_TRUE(vm >= 0);
	return vm;
}

static int create_gmem(int vm)
{
	struct kvm_create_guest_memfd a = { .size = GMEM_SIZE };
	int g = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);

	ASSERT_TRUE(g >= 0);
	return g;
}

static void link_of(int fd, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, size - 1);
	ASSERT_TRUE(n > 0);
	buf[n] = '\0';
}

/* ---- cases ------------------------------------------------------------- */

static void t_create_release(void)
{
	int warm = open_kvm(); /* the first object also starts the watcher */
	int base = nfds();
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);

	ASSERT_LIVE(T_SYS, 2);
	ASSERT_LIVE(T_VM, 1);
	ASSERT_LIVE(T_GMEM, 1);
	/* each object: the application's fd, the library's peer (and storage) */
	ASSERT_TRUE(nfds() >= base + 6);
	ASSERT_EQ(close(g), 0);
	ASSERT_EQ(close(vm), 0);
	ASSERT_EQ(close(kvm), 0);
	/* close() releases synchronously, as the kernel's final fput does */
	ASSERT_EQ(nfds(), base);
	ASSERT_LIVE(T_SYS, 1);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_LIVE(T_GMEM, 0);
	ASSERT_ERRNO(close(vm), EBADF);
	ASSERT_EQ(close(warm), 0);
	ASSERT_LIVE(T_SYS, 0);
}

static void t_dup_keeps_alive(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);
	int base, d = dup(vm);
	struct stat st;

	ASSERT_TRUE(d >= 0);
	ASSERT_EQ(close(vm), 0);
	ASSERT_LIVE(T_VM, 1);
	ASSERT_EQ(fstat(d, &st), 0);
	ASSERT_EQ(st.st_mode, 0600); /* the anonymous inode: no file type */
	ASSERT_EQ(ioctl(d, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	base = nfds();
	ASSERT_EQ(close(d), 0);
	ASSERT_EQ(nfds(), base - 2);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_EQ(close(kvm), 0);
}

static void t_dupfd_dup2(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), p[2];
	int base = nfds();
	int d = fcntl(vm, F_DUPFD_CLOEXEC, 100);

	ASSERT_TRUE(d >= 100);
	ASSERT_EQ(fcntl(d, F_GETFD), FD_CLOEXEC);
	ASSERT_EQ(dup2(vm, 60), 60);
	ASSERT_EQ(close(vm), 0);
	ASSERT_EQ(close(d), 0);
	ASSERT_EQ(ioctl(60, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	ASSERT_LIVE(T_VM, 1);
	/* dup2 over the last reference closes it behind the library's back */
	ASSERT_EQ(pipe(p), 0);
	ASSERT_EQ(dup2(p[0], 60), 60);
	/* vm moved to 60; +pipe pair; the released VM's peer goes */
	wait_nfds(base + 2 - 1);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_ERRNO(ioctl(60, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), ENOTTY);
}

static void t_gmem_keeps_vm(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);
	int base = nfds(), g = create_gmem(vm);

	ASSERT_EQ(close(vm), 0);
	ASSERT_LIVE(T_VM, 0); /* the VM fd is gone; the VM object is not */
	ASSERT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, PG), 0);
	ASSERT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PG), 0);
	ASSERT_ERRNO(fallocate(g, FALLOC_FL_KEEP_SIZE, GMEM_SIZE, PG), EINVAL);
	ASSERT_EQ(close(g), 0);
	/* the guest_memfd, its storage and the VM's two fds are all gone */
	ASSERT_EQ(nfds(), base - 2);
	ASSERT_LIVE(T_GMEM, 0);
	ASSERT_EQ(close(kvm), 0);
}

static void t_raw_close(void)
{
	int kvm = open_kvm(), base = nfds();
	int vm = create_vm(kvm), g = create_gmem(vm);

	/* No wrapper sees these closes: the watcher thread must. */
	ASSERT_EQ(syscall(SYS_close, g), 0);
	ASSERT_EQ(syscall(SYS_close, vm), 0);
	wait_nfds(base);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_LIVE(T_GMEM, 0);
	ASSERT_EQ(syscall(SYS_close, kvm), 0);
	wait_nfds(base - 2);
	ASSERT_LIVE(T_SYS, 0);
}

static void t_fork_eio(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);
	struct kvm_create_guest_memfd a = { .size = PG };
	int status;
	pid_t pid = fork();

	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		struct stat st;

		/* spec §3.2: another process gets EIO, checked first */
		ASSERT_ERRNO(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), EIO);
		ASSERT_ERRNO(ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a), EIO);
		ASSERT_ERRNO(ioctl(vm, KVM_CREATE_GUEST_MEMFD, NULL), EIO);
		/* guest_memfd file operations are not tied to the creator */
		ASSERT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, 2 * PG), 0);
		ASSERT_EQ(fstat(g, &st), 0);
		ASSERT_EQ(st.st_size, GMEM_SIZE);
		/* /dev/kvm is not tied to a process either */
		ASSERT_EQ(ioctl(kvm, KVM_GET_API_VERSION, 0), 12);
		/*
		 * the child runs its own watcher for what it creates (started
		 * with its first object): a raw close is still noticed
		 */
		int k = open_kvm(), base = nfds(), cvm = create_vm(k);

		ASSERT_EQ(ioctl(cvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
		ASSERT_EQ(syscall(SYS_close, cvm), 0);
		wait_nfds(base);
		ASSERT_EQ(syscall(SYS_close, k), 0);
		wait_nfds(base - 2);
		ASSERT_EQ(close(g), 0);
		ASSERT_EQ(close(vm), 0);
		_exit(0); /* the parent's exit-time checks are not ours to run */
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
	/* the child's closes dropped only its references */
	ASSERT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	ASSERT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, PG), 0);
	ASSERT_LIVE(T_VM, 1);
	ASSERT_LIVE(T_GMEM, 1);
}

static void t_fork_child_holds(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), p[2], status;
	int base = nfds();
	char c = 0;
	pid_t pid;

	ASSERT_EQ(pipe(p), 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* hold the inherited VM fd until the parent says go */
		ASSERT_EQ(read(p[0], &c, 1), 1);
		_exit(0);
	}
	ASSERT_EQ(close(vm), 0);
	watcher_barrier(kvm);
	/* the child's reference keeps the file open: no release yet */
	ASSERT_EQ(nfds(), base - 1 + 2);
	ASSERT_LIVE(T_VM, 1);
	ASSERT_EQ(write(p[1], &c, 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
	wait_nfds(base - 2 + 2);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_EQ(close(kvm), 0);
}

static int send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte = 'x';
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return (int)sendmsg(sock, &m, 0);
}

/* By libc's recvmsg, or (@raw) by syscall(2), which the preload does not see. */
static int recv_fd_how(int sock, bool raw)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd;

	if ((raw ? syscall(SYS_recvmsg, sock, &m, 0) : recvmsg(sock, &m, 0)) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static int recv_fd(int sock)
{
	return recv_fd_how(sock, false);
}

/* A protected VM whose guest_memfd backs a memslot: a punch invalidates it. */
static void bound_gmem(int *kvm, int *vm, int *g, void **hva)
{
	struct kvm_create_guest_memfd a = { .size = GMEM_SIZE };
	struct kvm_userspace_memory_region2 r = { .slot = 0, .flags = KVM_MEM_GUEST_MEMFD,
						  .guest_phys_addr = 0, .memory_size = GMEM_SIZE };

	*kvm = open_kvm();
	*vm = ioctl(*kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	ASSERT_TRUE(*vm >= 0);
	*g = ioctl(*vm, KVM_CREATE_GUEST_MEMFD, &a);
	ASSERT_TRUE(*g >= 0);
	*hva = mmap(NULL, GMEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(*hva != MAP_FAILED);
	r.userspace_addr = (uintptr_t)*hva;
	r.guest_memfd = (uint32_t)*g;
	ASSERT_EQ(ioctl(*vm, KVM_SET_USER_MEMORY_REGION2, &r), 0);
}

#ifdef GM_DIRECT
static uint64_t vm_invalidations(int vm);
#define INVALIDATIONS(vm) vm_invalidations(vm)
#else
#define INVALIDATIONS(vm) 0 /* no view of the VM's counters */
#endif

/*
 * What a process that did not create them sees of a guest_memfd, its VM
 * and /dev/kvm (spec §3.2): the guest_memfd is a file like any other,
 * answered by its owner; VM ioctls fail with EIO; /dev/kvm works.  Also
 * run by a separately exec'd program (--receiver).  Returns a count of
 * failed checks, printed on stderr.
 */
#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: %s (errno %d)\n", __FILE__, __LINE__, \
				#cond, errno);                                        \
			bad++;                                                        \
		}                                                                     \
	} while (0)

static int check_not_creator(int kvm, int vm, int g)
{
	struct kvm_create_guest_memfd a = { .size = PG };
	struct stat st;
	char link[64] = "", path[64], buf[8];
	int bad = 0, myvm;
	ssize_t n;

	errno = 0;
	CHECK(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == EIO);
	CHECK(ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a) == -1 && errno == EIO);
	CHECK(ioctl(g, KVM_CHECK_EXTENSION, 0) == -1 && errno == ENOTTY);
	/* the owner's checks, not a socket's ENODEV */
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, 1, PG) == -1 && errno == EINVAL);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, 2 * GMEM_SIZE) == -1 && errno == EINVAL);
	CHECK(fallocate(g, FALLOC_FL_PUNCH_HOLE, 0, PG) == -1 && errno == EOPNOTSUPP);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, 2 * PG) == 0);
	CHECK(fallocate(g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PG) == 0);
	CHECK(fstat(g, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == GMEM_SIZE);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", g);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK(n > 0 && !strcmp(link, "anon_inode:[kvm-gmem]"));
	/* once one is known, every file operation is the object's */
	CHECK(read(g, buf, sizeof(buf)) == -1 && errno == EINVAL);
	CHECK(lseek(vm, 0, SEEK_SET) == 0);
	/* /dev/kvm is no process's: a VM created here is this process's own */
	CHECK(ioctl(kvm, KVM_GET_API_VERSION, 0) == 12);
	myvm = ioctl(kvm, KVM_CREATE_VM, 0);
	CHECK(myvm >= 0 && ioctl(myvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == 1);
	CHECK(close(myvm) == 0);
	return bad;
}

/* Run check_not_creator() in this program exec'd anew, with the fds sent over SCM_RIGHTS. */
static const char *self_exe = "/proc/self/exe";

static int receiver_main(int sock)
{
#ifndef GM_DIRECT
	/*
	 * The first object arrives by raw recvmsg, which the preload does not
	 * see: a raw KVM ioctl on it, the first guestmem call of this image,
	 * is still the object's (the listener looks the socket up), not the
	 * socket's ENOTTY.
	 */
	int kvm = recv_fd_how(sock, true), bad = 0;

	errno = 0;
	CHECK(syscall(SYS_ioctl, kvm, KVM_GET_API_VERSION, 0) == KVM_API_VERSION);
#else
	int kvm = recv_fd(sock), bad = 0;
#endif
	int vm = recv_fd(sock), g = recv_fd(sock);

	if (kvm < 0 || vm < 0 || g < 0) {
		fprintf(stderr, "receiver: no fds\n");
		return 1;
	}
#ifndef GM_DIRECT
	/*
	 * A read or write as the first call on a received object: the
	 * object's EINVAL, not the socket's 0 and success (the preload saw
	 * the descriptors arrive; the C API has no recvmsg of its own).
	 */
	{
		char buf[8] = "";

		errno = 0;
		CHECK(read(g, buf, sizeof(buf)) == -1 && errno == EINVAL);
		CHECK(write(vm, buf, sizeof(buf)) == -1 && errno == EINVAL);
	}
#endif
	bad |= check_not_creator(kvm, vm, g);
	return bad ? 1 : 0;
}

/*
 * @pid, which ran check_not_creator(), exited 0, and its punch ran here,
 * against the VM that binds the file (direct build: its invalidation
 * count moved past @n0); the VM is still the creator's.
 */
static void assert_not_creator_ok(pid_t pid, int vm, int g, uint64_t n0)
{
	int status;

	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
#ifdef GM_DIRECT
	ASSERT_TRUE(INVALIDATIONS(vm) > n0);
#else
	(void)n0;
#endif
	ASSERT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, PG), 0);
	ASSERT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
}

static void t_fork_punch_reaches_owner(void)
{
	int kvm, vm, g;
	void *hva;
	uint64_t n0;
	pid_t pid;

	bound_gmem(&kvm, &vm, &g, &hva);
	n0 = INVALIDATIONS(vm);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0)
		_exit(check_not_creator(kvm, vm, g) ? 1 : 0);
	assert_not_creator_ok(pid, vm, g, n0);
}

/*
 * A VM's stats fd read by another process (a fork child, as a metrics
 * agent would get it): the same bytes as the creator reads, pread at any
 * offset, read at the file position the two share (one open file
 * description), and EFAULT for a bad buffer without moving it.
 */
static void t_stats_in_child(void)
{
	struct kvm_stats_header h;
	int kvm = open_kvm(), vm = create_vm(kvm), st, status;
	pid_t pid;

	st = ioctl(vm, KVM_GET_STATS_FD, 0);
	ASSERT_TRUE(st >= 0);
	ASSERT_EQ(pread(st, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ASSERT_TRUE(h.num_desc > 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		struct kvm_stats_header c;
		char id[KVM_STATS_NAME_SIZE], id2[KVM_STATS_NAME_SIZE];
		int bad = 0;

		errno = 0;
		CHECK(pread(st, &c, sizeof(c), 0) == (ssize_t)sizeof(c));
		CHECK(!memcmp(&c, &h, sizeof(c)));
		CHECK(pread(st, id, sizeof(id), h.id_offset) == (ssize_t)sizeof(id));
		CHECK(read(st, &c, 16) == 16 && !memcmp(&c, &h, 16));
		void *volatile unmapped = (void *)8;

		CHECK(read(st, unmapped, 16) == -1 && errno == EFAULT);
		CHECK(lseek(st, 0, SEEK_CUR) == 16);
		CHECK(read(st, (char *)&c + 16, sizeof(c) - 16) == (ssize_t)sizeof(c) - 16);
		CHECK(!memcmp(&c, &h, sizeof(c)));
		CHECK(read(st, id2, sizeof(id2)) == (ssize_t)sizeof(id2) && !memcmp(id, id2, sizeof(id)));
		_exit(bad ? 1 : 0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
	/* The child's reads moved the position this process sees. */
	ASSERT_EQ(lseek(st, 0, SEEK_CUR), (off_t)(sizeof(h) + KVM_STATS_NAME_SIZE));
	ASSERT_EQ(close(st), 0);
	ASSERT_EQ(close(vm), 0);
	ASSERT_EQ(close(kvm), 0);
}

/* posix_fallocate on a file that is not ours: libc's own answer (and size). */
static void t_posix_fallocate_not_ours(void)
{
	char path[] = "/tmp/gm-fdlife-XXXXXX";
	int fd = mkstemp(path);
	struct stat st;

	ASSERT_TRUE(fd >= 0);
	unlink(path);
	ASSERT_EQ(posix_fallocate(fd, 0, 3 * PG), 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	ASSERT_EQ(st.st_size, 3 * PG);
	ASSERT_EQ(posix_fallocate(fd, -1, PG), EINVAL);
	ASSERT_EQ(close(fd), 0);
}

static void t_scm_rights_exec(void)
{
	int kvm, vm, g, s[2];
	void *hva;
	uint64_t n0;
	pid_t pid;

	bound_gmem(&kvm, &vm, &g, &hva);
	n0 = INVALIDATIONS(vm);
	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		char arg[16];
		int fd = dup(s[1]); /* without O_CLOEXEC: the receiver's */

		/*
		 * An unrelated program: it inherits no object (the guest_memfd
		 * is not close-on-exec), so the fds it receives are its first.
		 */
		if (fd < 3 || syscall(SYS_close_range, 3U, (unsigned)fd - 1, CLOSE_RANGE_CLOEXEC) ||
		    syscall(SYS_close_range, (unsigned)fd + 1, ~0U, CLOSE_RANGE_CLOEXEC))
			_exit(126);
		snprintf(arg, sizeof(arg), "%d", fd);
		execl(self_exe, self_exe, "--receiver", arg, (char *)NULL);
		_exit(127);
	}
	/* a raw write reaches the socket: the owner drops the record */
	ASSERT_EQ(syscall(SYS_write, g, "junk", 4), 4);
	ASSERT_EQ(send_fd(s[0], kvm), 1);
	ASSERT_EQ(send_fd(s[0], vm), 1);
	ASSERT_EQ(send_fd(s[0], g), 1);
	assert_not_creator_ok(pid, vm, g, n0);
}

/*
 * mmap(2) of a 6.18 GUEST_MEMFD_FLAG_MMAP guest_memfd by a process that
 * did not create it (a vhost-user backend mapping the VMM's guest
 * memory): the same pages as the creator's mapping, both ways.  Without
 * INIT_SHARED every touch is a SIGBUS; without MMAP, ENODEV; MAP_PRIVATE,
 * EINVAL, as in the creator.  Before session 15: ENODEV for all.
 */
static void t_mmap_not_ours(void)
{
	struct kvm_create_guest_memfd a = { .size = GMEM_SIZE, .flags = 3 /* MMAP | INIT_SHARED */ };
	int kvm = open_kvm(), vm = create_vm(kvm), g, g_priv, g_plain, status;
	volatile char *p;
	pid_t pid;

	g = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);
	if (g < 0 && errno == EINVAL)
		SKIP("no GUEST_MEMFD_FLAG_MMAP in this profile (6.18 has it)");
	ASSERT_TRUE(g >= 0);
	a.flags = 1; /* MMAP: private, nothing to map */
	g_priv = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);
	ASSERT_TRUE(g_priv >= 0);
	a.flags = 0;
	g_plain = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);
	ASSERT_TRUE(g_plain >= 0);
	p = mmap(NULL, GMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 0x11;
	p[3 * PG] = 0x33;
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		volatile char *q;
		void *r;
		int bad = 0;

		q = mmap(NULL, GMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, g, 0);
		CHECK(q != MAP_FAILED);
		if (q != MAP_FAILED) {
			CHECK(q[0] == 0x11 && q[3 * PG] == 0x33);
			q[PG] = 0x22;
			munmap((void *)q, GMEM_SIZE);
		}
		errno = 0;
		r = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, g, 0);
		CHECK(r == MAP_FAILED && errno == EINVAL);
		errno = 0;
		r = mmap(NULL, PG, PROT_READ, MAP_SHARED, g_plain, 0);
		CHECK(r == MAP_FAILED && errno == ENODEV);
		r = mmap(NULL, PG, PROT_READ, MAP_SHARED, g_priv, 0);
		CHECK(r != MAP_FAILED && test_access_signal(r, false) == SIGBUS);
		_exit(bad ? 1 : 0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
	ASSERT_EQ(p[PG], 0x22); /* the child's write, in the creator's mapping */
	ASSERT_EQ(munmap((void *)p, GMEM_SIZE), 0);
	ASSERT_EQ(close(g_plain), 0);
	ASSERT_EQ(close(g_priv), 0);
	ASSERT_EQ(close(g), 0);
	ASSERT_EQ(close(vm), 0);
	ASSERT_EQ(close(kvm), 0);
}

/*
 * The creator gone (exited, or exec'd: its library ends closed): the VM
 * answers EIO at once, never a hang, as the kernel answers any process
 * but the creator; the guest_memfd is still a file of its size, whose
 * fallocate makes the kernel's checks and succeeds (no VM can map its
 * pages any more).
 */
static int orphan_gmem_checks(int g)
{
	struct stat st;
	int bad = 0;

	errno = 0;
	CHECK(fstat(g, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == GMEM_SIZE);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, PG) == 0);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, GMEM_SIZE - PG, PG) == 0);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2 * GMEM_SIZE) == 0);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, GMEM_SIZE, PG) == -1 && errno == EINVAL);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, 1, PG) == -1 && errno == EINVAL);
	CHECK(fallocate(g, 0, 0, PG) == -1 && errno == EOPNOTSUPP);
	CHECK(fallocate(g, FALLOC_FL_KEEP_SIZE, -PG, PG) == -1 && errno == EINVAL);
	/* glibc's emulation after EOPNOTSUPP: a regular file without pread */
	CHECK(posix_fallocate(g, 0, PG) == ESPIPE);
	CHECK(fstat(g, &st) == 0 && st.st_size == GMEM_SIZE);
	return bad;
}

static void t_owner_gone(void)
{
	int s[2], status, kvm, vm, g;
	pid_t pid;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		void *hva;

		bound_gmem(&kvm, &vm, &g, &hva);
		_exit(send_fd(s[1], vm) == 1 && send_fd(s[1], g) == 1 ? 0 : 1);
	}
	vm = recv_fd(s[0]);
	g = recv_fd(s[0]);
	ASSERT_TRUE(vm >= 0 && g >= 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
	ASSERT_ERRNO(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), EIO);
	ASSERT_ERRNO(ioctl(g, KVM_CHECK_EXTENSION, 0), ENOTTY);
	ASSERT_EQ(orphan_gmem_checks(g), 0);
	ASSERT_EQ(close(g), 0);
	ASSERT_EQ(close(vm), 0);
}

static void t_scm_rights(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), s[2], r, base;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	ASSERT_EQ(send_fd(s[0], vm), 1);
	base = nfds();
	/* in flight inside the socket, the file stays referenced */
	ASSERT_EQ(close(vm), 0);
	ASSERT_EQ(nfds(), base - 1);
	ASSERT_LIVE(T_VM, 1);
	r = recv_fd(s[1]);
	ASSERT_TRUE(r >= 0);
	ASSERT_EQ(ioctl(r, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	ASSERT_EQ(close(r), 0);
	ASSERT_EQ(nfds(), base - 2);
	ASSERT_LIVE(T_VM, 0);
}

static void t_readlink(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);
	char buf[128], path[64];

	link_of(kvm, buf, sizeof(buf));
	ASSERT_STR_EQ(buf, "/dev/kvm");
	link_of(vm, buf, sizeof(buf));
	ASSERT_STR_EQ(buf, "anon_inode:kvm-vm");
	link_of(g, buf, sizeof(buf));
	ASSERT_STR_EQ(buf, "anon_inode:[kvm-gmem]");
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), g);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(readlink(path, buf, sizeof(buf)), 21);
	ASSERT_STR_EQ(buf, "anon_inode:[kvm-gmem]");
	/* truncated without a terminator, like the kernel */
	memset(buf, 'z', sizeof(buf));
	ASSERT_EQ(readlink(path, buf, 4), 4);
	ASSERT_EQ(memcmp(buf, "anonz", 5), 0);
	ASSERT_ERRNO(readlink(path, buf, 0), EINVAL);
	char *volatile bad = (char *)8; /* hide it from the compiler's checks */

	ASSERT_ERRNO(readlink(path, bad, sizeof(buf)), EFAULT);
}

static void t_fd_flags(void)
{
	int k1 = open("/dev/kvm", O_RDWR), k2 = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int vm = create_vm(k1), g = create_gmem(vm);

	ASSERT_TRUE(k1 >= 0 && k2 >= 0);
	ASSERT_EQ(fcntl(k1, F_GETFD), 0);
	ASSERT_EQ(fcntl(k2, F_GETFD), FD_CLOEXEC);
	ASSERT_EQ(fcntl(k1, F_GETFL), 0x8002); /* O_RDWR|O_LARGEFILE */
	ASSERT_EQ(fcntl(vm, F_GETFD), FD_CLOEXEC);
	ASSERT_EQ(fcntl(vm, F_GETFL), O_RDWR);
	ASSERT_EQ(fcntl(g, F_GETFD), 0);
	ASSERT_EQ(fcntl(g, F_GETFL), 0x8002);
	ASSERT_EQ(fcntl(g, F_SETFL, O_NONBLOCK), 0);
	ASSERT_EQ(fcntl(g, F_GETFL), 0x8002 | O_NONBLOCK);
	ASSERT_EQ(fcntl(vm, F_SETFD, 0), 0);
	ASSERT_EQ(fcntl(vm, F_GETFD), 0);
	ASSERT_ERRNO(fcntl(g, F_ADD_SEALS, F_SEAL_WRITE), EINVAL);
	ASSERT_ERRNO(fcntl(g, F_GET_SEALS), EINVAL);
	/* FIOCLEX is the generic ioctl, not a KVM one */
	ASSERT_EQ(ioctl(g, FIOCLEX), 0);
	ASSERT_EQ(fcntl(g, F_GETFD), FD_CLOEXEC);
}

static void t_reopen(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm), k2;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", vm);
	ASSERT_ERRNO(open(path, O_RDWR), ENXIO);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", g);
	ASSERT_ERRNO(open(path, O_RDWR), ENXIO);
	ASSERT_ERRNO(open(path, O_RDONLY), ENXIO);
	/* /dev/kvm is a character device: it opens again */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", kvm);
	k2 = open(path, O_RDWR);
	ASSERT_TRUE(k2 >= 0 && k2 != kvm);
	ASSERT_EQ(ioctl(k2, KVM_GET_API_VERSION, 0), 12);
	ASSERT_EQ(fcntl(k2, F_GETFD), 0);
}

static void t_fstat(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm), g2 = create_gmem(vm);
	struct stat a, b, v, k;

	ASSERT_EQ(fstat(g, &a), 0);
	ASSERT_EQ(fstat(g2, &b), 0);
	ASSERT_EQ(a.st_mode, S_IFREG | 0600);
	ASSERT_EQ(a.st_size, GMEM_SIZE);
	ASSERT_EQ(a.st_blksize, 4096);
	ASSERT_EQ(a.st_blocks, 0);
	ASSERT_EQ(a.st_nlink, 1);
	ASSERT_EQ(a.st_uid, geteuid());
	ASSERT_TRUE(a.st_ino != b.st_ino);
	ASSERT_EQ(a.st_dev, b.st_dev);
	ASSERT_EQ(fstat(vm, &v), 0);
	ASSERT_EQ(v.st_mode, 0600);
	ASSERT_EQ(v.st_dev, a.st_dev); /* one anonymous-inode file system */
	ASSERT_EQ(fstat(kvm, &k), 0);
	ASSERT_TRUE(S_ISCHR(k.st_mode));
	ASSERT_ERRNO(fstat(g, (struct stat *)8), EFAULT);
}

#ifdef GM_DIRECT
/*
 * The guestmem_sys_* calls sys.h gained from src/uapi/syscalls.h, which the
 * exec build reaches through libc: the raw call on fds and paths that are
 * not ours (same answers as libc), the object's answer on ours.
 */
static void sys_calls_from_the_table(const int p[2], const int s[2], int vm)
{
	char c = 'v', link[64], path[64];
	struct iovec iov = { &c, 1 };
	struct stat a, b;
	struct statx sx;

	EXPECT_EQ(guestmem_sys_writev(p[1], &iov, 1), 1);
	c = 0;
	EXPECT_EQ(guestmem_sys_readv(p[0], &iov, 1), 1);
	EXPECT_EQ(c, 'v');
	EXPECT_EQ(guestmem_sys_stat("/", &a), 0);
	EXPECT_EQ(stat("/", &b), 0);
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(guestmem_sys_fstatat(AT_FDCWD, "/", &a, 0), 0);
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(guestmem_sys_statx(AT_FDCWD, "/", 0, STATX_BASIC_STATS, &sx), 0);
	EXPECT_EQ(sx.stx_ino, b.st_ino);
	EXPECT_EQ(guestmem_sys_access("/", R_OK), 0);
	EXPECT_ERRNO(guestmem_sys_access("/nonexistent-guestmem", F_OK), ENOENT);
	EXPECT_EQ(guestmem_sys_faccessat(AT_FDCWD, "/", R_OK, AT_EACCESS), 0);
	EXPECT_EQ(guestmem_sys_euidaccess("/", R_OK), 0);
	EXPECT_EQ(guestmem_sys_shutdown(s[1], SHUT_WR), 0);
	EXPECT_ERRNO(guestmem_sys_shutdown(p[0], SHUT_WR), ENOTSOCK);
	/* Ours: /dev/kvm, the VM's fd and its /proc link. */
	EXPECT_EQ(guestmem_sys_stat("/dev/kvm", &a), 0);
	EXPECT_TRUE(S_ISCHR(a.st_mode));
	EXPECT_ERRNO(guestmem_sys_access("/dev/kvm", X_OK), EACCES);
	EXPECT_ERRNO(guestmem_sys_shutdown(vm, SHUT_WR), ENOTSOCK);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", vm);
	EXPECT_EQ(guestmem_sys_readlinkat(AT_FDCWD, path, link, sizeof(link)),
		  strlen("anon_inode:kvm-vm"));
	EXPECT_EQ(memcmp(link, "anon_inode:kvm-vm", strlen("anon_inode:kvm-vm")), 0);
}
#endif

static void t_passthrough(void)
{
	int p[2], s[2];
	char c = 0;
	struct stat st;

	/* with guestmem objects alive, other fds must stay untouched */
	int kvm = open_kvm(), vm = create_vm(kvm);

	ASSERT_EQ(pipe(p), 0);
	ASSERT_EQ(write(p[1], "q", 1), 1);
	ASSERT_EQ(read(p[0], &c, 1), 1);
	ASSERT_EQ(c, 'q');
	ASSERT_EQ(fstat(p[0], &st), 0);
	ASSERT_TRUE(S_ISFIFO(st.st_mode));
	ASSERT_ERRNO(lseek(p[0], 0, SEEK_SET), ESPIPE);
	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	ASSERT_EQ(fstat(s[0], &st), 0);
	ASSERT_TRUE(S_ISSOCK(st.st_mode));
	ASSERT_EQ(write(s[0], "w", 1), 1);
	ASSERT_EQ(read(s[1], &c, 1), 1);
	ASSERT_EQ(c, 'w');
	ASSERT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
#ifdef GM_DIRECT
	ASSERT_TRUE(!guestmem_sys_is_guestmem_fd(s[0]));
	ASSERT_TRUE(!guestmem_sys_is_guestmem_fd(p[0]));
	ASSERT_TRUE(guestmem_sys_is_guestmem_fd(vm));
	sys_calls_from_the_table(p, s, vm);
#endif
	ASSERT_EQ(close(s[0]), 0);
	ASSERT_EQ(close(p[0]), 0);
	ASSERT_ERRNO(close(p[0]), EBADF);
	ASSERT_ERRNO(read(-1, &c, 1), EBADF);
}

static void t_vm_file_ops(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);
	char c;

	/* the VM and /dev/kvm files have ioctl and a no-op llseek only */
	ASSERT_ERRNO(read(vm, &c, 1), EINVAL);
	ASSERT_ERRNO(write(vm, &c, 1), EINVAL);
	ASSERT_ERRNO(pread(vm, &c, 1, 0), ESPIPE);
	ASSERT_ERRNO(pread(vm, &c, 1, -1), EINVAL);
	ASSERT_EQ(lseek(vm, 100, SEEK_SET), 0);
	ASSERT_ERRNO(lseek(vm, 0, 7), EINVAL);
	ASSERT_TRUE(mmap(NULL, PG, PROT_READ, MAP_SHARED, vm, 0) == MAP_FAILED);
	ASSERT_EQ(errno, ENODEV);
	ASSERT_ERRNO(fallocate(vm, FALLOC_FL_KEEP_SIZE, 0, PG), ENODEV);
	ASSERT_ERRNO(fallocate(vm, FALLOC_FL_KEEP_SIZE, 0, 0), EINVAL);
	ASSERT_ERRNO(ftruncate(vm, 0), EINVAL);
	ASSERT_ERRNO(fsync(vm), EINVAL);
	ASSERT_ERRNO(ioctl(vm, KVM_GET_VCPU_MMAP_SIZE, 0), ENOTTY);
	ASSERT_ERRNO(ioctl(vm, 0xAEFF, 0), ENOTTY);
	ASSERT_ERRNO(read(kvm, &c, 1), EINVAL);
	ASSERT_ERRNO(pread(kvm, &c, 1, 0), EINVAL); /* opened: positional I/O allowed */
	ASSERT_EQ(lseek(kvm, 0, SEEK_END), 0);
	ASSERT_EQ(ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), 12288);
	ASSERT_ERRNO(ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 1), EINVAL);
	ASSERT_ERRNO(ioctl(kvm, KVM_GET_API_VERSION, 1), EINVAL);
	ASSERT_ERRNO(ioctl(kvm, 0xAEFF, 0), EINVAL);
}

static void t_efault(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);

	ASSERT_ERRNO(ioctl(vm, KVM_SET_USER_MEMORY_REGION, (void *)8), EFAULT);
	ASSERT_ERRNO(ioctl(vm, KVM_SET_USER_MEMORY_REGION2, (void *)-4096L), EFAULT);
	ASSERT_ERRNO(ioctl(vm, KVM_CREATE_GUEST_MEMFD, NULL), EFAULT);
	ASSERT_ERRNO(ioctl(vm, KVM_ENABLE_CAP, (void *)16), EFAULT);
	/* VM still fine afterwards */
	ASSERT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
}

/* Threads operating on their own dups while the main thread closes them. */
struct racer {
	int fd;
	long calls;
	int last_errno;
};

static void *race_ioctl(void *arg)
{
	struct racer *r = arg;

	for (;;) {
		int ret = ioctl(r->fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);

		__atomic_fetch_add(&r->calls, 1, __ATOMIC_RELAXED);
		if (ret != 1) {
			r->last_errno = errno;
			return NULL;
		}
	}
}

static void t_concurrent_close(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), base;
	struct racer r[4];
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){ .fd = dup(vm) };
		ASSERT_TRUE(r[i].fd >= 0);
	}
	base = nfds();
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, race_ioctl, &r[i]), 0);
	/* Close once every thread is making calls. */
	for (int i = 0; i < 4; i++)
		ASSERT_WAIT(__atomic_load_n(&r[i].calls, __ATOMIC_RELAXED) > 0, 10000);
	ASSERT_EQ(close(vm), 0);
	for (int i = 0; i < 4; i++) {
		/* half through the wrapper, half behind its back */
		if (i & 1)
			ASSERT_EQ(syscall(SYS_close, r[i].fd), 0);
		else
			ASSERT_EQ(close(r[i].fd), 0);
	}
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
		ASSERT_TRUE(r[i].calls > 0);
		/* a closed fd number: EBADF (or a reused number's answer) */
		ASSERT_TRUE(r[i].last_errno == EBADF || r[i].last_errno == ENOTTY ||
			    r[i].last_errno == EINVAL);
	}
	wait_nfds(base - 4 - 1 - 1);
	ASSERT_LIVE(T_VM, 0);
}

static void *churn(void *arg)
{
	int kvm = *(int *)arg;

	for (int i = 0; i < 100; i++) {
		int vm = ioctl(kvm, KVM_CREATE_VM, 0);
		struct kvm_create_guest_memfd a = { .size = PG };
		int g = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);

		if (vm < 0 || g < 0)
			return (void *)1;
		if (i & 1) {
			syscall(SYS_close, vm);
			syscall(SYS_close, g);
		} else {
			close(g);
			close(vm);
		}
	}
	return NULL;
}

static void t_churn(void)
{
	int kvm = open_kvm(), base = nfds();
	pthread_t t[3];
	void *ret;

	for (int i = 0; i < 3; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, churn, &kvm), 0);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(pthread_join(t[i], &ret), 0);
		ASSERT_TRUE(ret == NULL);
	}
	wait_nfds(base);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_LIVE(T_GMEM, 0);
}

#ifdef GM_DIRECT
static uint64_t vm_invalidations(int vm)
{
	struct gm_file *f = gm_file_lookup(vm);
	uint64_t n;

	ASSERT_TRUE(f != NULL && f->kvm != NULL);
	n = __atomic_load_n(&f->kvm->stat.invalidations, __ATOMIC_RELAXED);
	gm_file_put(f);
	return n;
}
#endif

/* munmap of a memslot's memory is the mmu notifier; other unmaps are not. */
static void t_hva_notify(void)
{
#ifdef GM_DIRECT
	int kvm = open_kvm(), vm = create_vm(kvm);
	size_t sz = 2 << 20;
	char *mem = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0,
						 .memory_size = sz,
						 .userspace_addr = (uintptr_t)mem };
	uint64_t n0;

	ASSERT_TRUE(mem != MAP_FAILED);
	ASSERT_EQ(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	n0 = vm_invalidations(vm);
	ASSERT_EQ(munmap(mem + sz, sz), 0); /* beside the slot */
	ASSERT_EQ(vm_invalidations(vm), n0);
	ASSERT_EQ(munmap(mem + PG, PG), 0); /* inside it */
	ASSERT_EQ(vm_invalidations(vm), n0 + 1);
	ASSERT_EQ(munmap(mem, sz), 0);
	ASSERT_EQ(vm_invalidations(vm), n0 + 2);
#else
	SKIP("exec build: no view of the VM's counters");
#endif
}

/*
 * After exec (the image replaced, the creator's objects gone with the old
 * one): EIO for the VM, as the kernel answers a new mm; the guest_memfd
 * still a file of its size that fallocate checks and accepts.  Run by the
 * exec'd image (--after-exec).
 */
static int after_exec_main(int vm, int g)
{
	struct stat st;
	char buf[8];
	int bad = 0;

	/* the first call on it: the object's answer, not the socket's (0) */
	errno = 0;
	CHECK(read(g, buf, sizeof(buf)) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 && errno == EIO);
	CHECK(fstat(g, &st) == 0 && S_ISREG(st.st_mode));
	bad |= orphan_gmem_checks(g);
#ifndef GM_DIRECT
	/* The same by raw system call: this image shares the old image's
	 * seccomp filter and listener (src/preload/seccomp.c, "exec"). */
	errno = 0;
	CHECK(syscall(SYS_ioctl, vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) == -1 &&
	      errno == EIO);
	CHECK(syscall(SYS_fallocate, g, FALLOC_FL_KEEP_SIZE, 0, PG) == 0);
	errno = 0;
	CHECK(syscall(SYS_fallocate, g, FALLOC_FL_KEEP_SIZE, GMEM_SIZE, PG) == -1 &&
	      errno == EINVAL);
	errno = 0;
	CHECK(syscall(SYS_fallocate, g, 0, 0, PG) == -1 && errno == EOPNOTSUPP);
#endif
	CHECK(close(g) == 0 && close(vm) == 0);
	return bad ? 1 : 0;
}

/* A VMM (the child) that creates a VM and a guest_memfd, then execs itself. */
static void t_exec_self(void)
{
	int status;
	pid_t pid = fork();

	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);
		char a[16], b[16];

		/* A VM fd is close-on-exec: a VMM that keeps it across exec says so. */
		if (fcntl(vm, F_SETFD, 0))
			_exit(2);
		snprintf(a, sizeof(a), "%d", vm);
		snprintf(b, sizeof(b), "%d", g);
		execl(self_exe, self_exe, "--after-exec", a, b, (char *)NULL);
		_exit(127);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);
}

/*
 * A guest_memfd larger than the soft RLIMIT_FSIZE: the kernel does not look
 * at the limit.  Under exec the storage is sized in the guest process,
 * which takes the hard limit; through the C API this process's file is
 * sized by ftruncate, which fails (ENOMEM): the README lists it.
 */
/*
 * A thread that moved to a network namespace of its own after the first
 * object (a sandboxing VMM) still makes objects: the keeper's listener
 * is in the old one, so its library ends are handed over instead.
 */
static void t_other_netns(void)
{
	int kvm = open_kvm(), vm, vcpu, base;
	struct stat st;

	if (unshare(CLONE_NEWNET))
		SKIP("unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)", strerror(errno));
	base = nfds();
	vm = create_vm(kvm);
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(vcpu >= 0);
	ASSERT_EQ(nfds(), base + 4); /* two fds and their two library ends */
	ASSERT_EQ(fstat(vm, &st), 0);
	ASSERT_EQ(st.st_mode, 0600);
	ASSERT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	ASSERT_EQ(close(vcpu), 0);
	ASSERT_EQ(close(vm), 0);
	/* released at close, as with any object */
	ASSERT_EQ(nfds(), base);
	ASSERT_LIVE(T_VM, 0);
	ASSERT_EQ(close(kvm), 0);
}

/*
 * The keeper's listener has a name any local process can read from
 * /proc/net/unix and connect to.  A process that fills its backlog, once
 * or without pause, must not make this process's next create block.
 */
static bool keeper_name(struct sockaddr_un *a, socklen_t *len)
{
	char line[512], want[64];
	FILE *f = fopen("/proc/net/unix", "r");
	bool found = false;

	snprintf(want, sizeof(want), "@guestmem-keeper:%d:", (int)getpid());
	while (f && !found && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, want);

		if (!p)
			continue;
		p[strcspn(p, "\n")] = 0;
		memset(a, 0, sizeof(*a));
		a->sun_family = AF_UNIX;
		memcpy(a->sun_path + 1, p + 1, strlen(p + 1)); /* abstract: leading NUL */
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p));
		found = true;
	}
	if (f)
		fclose(f);
	return found;
}

/* In a child: connect to @a until the backlog refuses; report the count
 * and the errno that stopped it. */
static int fill_backlog(const struct sockaddr_un *a, socklen_t len, bool forever, int report)
{
	int n[2] = { 0, 0 };

	do {
		for (;;) {
			int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0);

			if (s < 0 || connect(s, (const struct sockaddr *)a, len)) {
				n[1] = errno;
				if (s >= 0)
					close(s);
				break;
			}
			n[0]++;
			if (forever)
				close(s); /* the connection stays queued until accepted */
		}
		if (report >= 0) {
			if (write(report, n, sizeof(n)) != sizeof(n))
				return 1;
			close(report);
			report = -1;
		}
	} while (forever);
	pause();
	return 0;
}

static void keeper_backlog_case(bool forever)
{
	int kvm = open_kvm(), p[2], filled[2] = { 0, 0 }, status;
	struct sockaddr_un a;
	socklen_t len = 0;
	pid_t child;

	if (!keeper_name(&a, &len))
		SKIP("the keeper's name is not in /proc/net/unix (no procfs net view)");
	ASSERT_EQ(pipe(p), 0);
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		/* A failed case's process ends without killing it: go with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		close(p[0]);
		_exit(fill_backlog(&a, len, forever, p[1]));
	}
	close(p[1]);
	ASSERT_EQ(read(p[0], filled, sizeof(filled)), (ssize_t)sizeof(filled));
	close(p[0]);
	/* The backlog really was full: connections queued until EAGAIN. */
	ASSERT_TRUE(filled[0] >= 1);
	ASSERT_EQ(filled[1], EAGAIN);
	for (int i = 0; i < 3; i++) {
		int base = nfds(), vm = create_vm(kvm), vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);

		ASSERT_TRUE(vcpu >= 0);
		ASSERT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
		ASSERT_EQ(nfds(), base + 4); /* two fds and their two library ends */
		ASSERT_EQ(close(vcpu), 0);
		ASSERT_EQ(close(vm), 0);
		ASSERT_EQ(nfds(), base);
	}
	ASSERT_EQ(kill(child, SIGKILL), 0);
	ASSERT_EQ(waitpid(child, &status, 0), child);
	ASSERT_EQ(close(kvm), 0);
}

static void t_keeper_backlog_full(void)
{
	keeper_backlog_case(false);
}

static void t_keeper_backlog_kept_full(void)
{
	keeper_backlog_case(true);
}

static void t_fsize_soft_limit(void)
{
	struct kvm_create_guest_memfd a = { .size = 64 << 20 };
	struct rlimit r;
	int kvm = open_kvm(), vm, g;

	vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	ASSERT_TRUE(vm >= 0);
	ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &r), 0);
	if (r.rlim_max != RLIM_INFINITY && r.rlim_max < (rlim_t)a.size)
		SKIP("hard RLIMIT_FSIZE below the size");
	r.rlim_cur = 1 << 20;
	ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &r), 0);
#ifdef GM_DIRECT
	/* The deviation the README lists: ENOMEM, and never SIGXFSZ. */
	ASSERT_ERRNO(ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a), ENOMEM);
	(void)g;
#else
	g = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);
	ASSERT_TRUE(g >= 0);
	ASSERT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 32 << 20, PG), 0);
	ASSERT_EQ(close(g), 0);
#endif
	ASSERT_EQ(close(vm), 0);
	ASSERT_EQ(close(kvm), 0);
}

/* ---- driver ------------------------------------------------------------- */

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--receiver"))
		return receiver_main(atoi(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "--after-exec"))
		return after_exec_main(atoi(argv[2]), atoi(argv[3]));
	test_add_fn("create and release", t_create_release, CASE_TIMEOUT);
	test_add_fn("dup keeps the object alive", t_dup_keeps_alive, CASE_TIMEOUT);
	test_add_fn("F_DUPFD and dup2 references", t_dupfd_dup2, CASE_TIMEOUT);
	test_add_fn("a guest_memfd keeps its VM", t_gmem_keeps_vm, CASE_TIMEOUT);
	test_add_fn("raw close: the watcher releases", t_raw_close, CASE_TIMEOUT);
	test_add_fn("fork: EIO for VM ioctls, gmem file ops work", t_fork_eio, CASE_TIMEOUT);
	test_add_fn("fork: the child's reference keeps it open", t_fork_child_holds, CASE_TIMEOUT);
	test_add_fn("SCM_RIGHTS", t_scm_rights, CASE_TIMEOUT);
	test_add_fn("fork: a child reads the VM's stats fd", t_stats_in_child, CASE_TIMEOUT);
	test_add_fn("posix_fallocate on a file that is not ours", t_posix_fallocate_not_ours,
		    CASE_TIMEOUT);
	test_add_fn("fork: a child's punch reaches the owner's VM", t_fork_punch_reaches_owner,
		    CASE_TIMEOUT);
	test_add_fn("SCM_RIGHTS to an exec'd program", t_scm_rights_exec, CASE_TIMEOUT);
	test_add_fn("the creator gone: the VM EIO at once, the guest_memfd a file", t_owner_gone,
		    CASE_TIMEOUT);
	test_add_fn("mmap of a 6.18 MMAP guest_memfd in another process", t_mmap_not_ours,
		    CASE_TIMEOUT);
	test_add_fn("a guest_memfd above the soft RLIMIT_FSIZE", t_fsize_soft_limit, CASE_TIMEOUT);
	test_add_fn("objects made in another network namespace", t_other_netns, CASE_TIMEOUT);
	test_add_fn("another process fills the keeper's backlog", t_keeper_backlog_full,
		    CASE_TIMEOUT);
	test_add_fn("another process keeps the keeper's backlog full",
		    t_keeper_backlog_kept_full, CASE_TIMEOUT);
	test_add_fn("exec: the objects stay with the old image", t_exec_self, CASE_TIMEOUT);
	test_add_fn("readlink names", t_readlink, CASE_TIMEOUT);
	test_add_fn("fd and status flags", t_fd_flags, CASE_TIMEOUT);
	test_add_fn("reopen via /proc/self/fd", t_reopen, CASE_TIMEOUT);
	test_add_fn("fstat fields", t_fstat, CASE_TIMEOUT);
	test_add_fn("other fds pass through", t_passthrough, CASE_TIMEOUT);
	test_add_fn("VM and /dev/kvm file operations", t_vm_file_ops, CASE_TIMEOUT);
	test_add_fn("EFAULT, not a crash", t_efault, CASE_TIMEOUT);
	test_add_fn("concurrent ioctl and close", t_concurrent_close, CASE_TIMEOUT);
	test_add_fn("create/close churn from threads", t_churn, CASE_TIMEOUT);
	test_add_fn("munmap notifies the VM of its memslot memory only", t_hva_notify, CASE_TIMEOUT);
	/* The profile where everything exists, unless the caller chose one. */
	setenv("GUESTMEM_PROFILE", "linux-6.8", 0);
	setenv("GUESTMEM_CONFIG", "KVM_SW_PROTECTED_VM=y KVM_SMM=y", 0);
	return test_main(argc, argv);
}
