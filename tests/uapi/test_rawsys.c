// SPDX-License-Identifier: MIT
/*
 * test_rawsys: raw system calls under `guestmem exec` (src/preload/seccomp.c).
 *
 * A plain-libc VMM-style program, run under `guestmem exec` twice: with the
 * default filter (KVM ioctls, fallocate, the address-space calls) and with
 * GUESTMEM_SECCOMP=files (also the file and socket calls).  The guest is
 * tests/guests/rawsys_guest.c.
 *
 *  - raw munmap, free() of malloc'ed guest RAM, and raw mprotect of memslot
 *    memory while the vCPU runs: the mmu notifier zaps the translations
 *    first, so the guest's next access ends KVM_RUN with EFAULT, as in the
 *    kernel (without the zap, the guest's access through the stale
 *    translation would kill this process with SIGSEGV);
 *  - fallocate by syscall(2) and posix_fallocate on a guest_memfd;
 *  - file and socket calls by syscall(2) on a guest_memfd and a VM fd:
 *    the kernel's errno with GUESTMEM_SECCOMP=files, and never a hang;
 *  - what is not ours still works: fallocate and ioctl on a regular file, a
 *    fork child's and an exec'd program's memory calls.
 *  - `test_rawsys-exec fork` / `fork-parent-gone`: all of the above in a
 *    fork child that makes its own VM, its parent waiting, or exec'd at
 *    once (the image that installed the filter gone, as when a VMM
 *    daemonizes).
 *  - `test_rawsys-exec madvise` (no C guest: machine code, so memslot RAM
 *    is converted to a shared mapping): a raw madvise DONTNEED or FREE of
 *    that RAM reads back zeros, as through the madvise wrapper.
 *
 * The cases run in this one process, one after the other: the harness's
 * fork per case would put each in a child, whose raw calls the listener
 * does not model (README).  TAP output.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <sys/sendfile.h>
#include <malloc.h>
#include <pthread.h>
#include <dirent.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#define MSZ (2UL << 20)

static int nr_test, nr_failed;
static bool files_mode;

static void check(bool ok, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void check(bool ok, const char *name, const char *fmt, ...)
{
	nr_test++;
	if (!ok)
		nr_failed++;
	printf("%s %d - %s", ok ? "ok" : "not ok", nr_test, name);
	if (!ok && fmt) {
		va_list ap;

		printf(" # ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	printf("\n");
	fflush(stdout);
}

static void die(const char *what)
{
	printf("Bail out! %s: %s\n", what, strerror(errno));
	exit(1);
}

/* "ok" or "-1 ENAME" for a libc-style result. */
static const char *res(long r, int e)
{
	static char buf[32];

	if (r >= 0)
		snprintf(buf, sizeof(buf), "%ld", r);
	else
		snprintf(buf, sizeof(buf), "-1 %s", strerrorname_np(e));
	return buf;
}

struct vm {
	int kvm, fd, vcpu;
	struct kvm_run *run;
	size_t run_size;
	char *ram; /* the memslot's host memory */
};

static void vm_open(struct vm *m, char *ram)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0,
						 .memory_size = MSZ };
	struct kvm_regs regs;
	long sz;

	m->ram = ram;
	m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm < 0)
		die("open /dev/kvm");
	m->fd = ioctl(m->kvm, KVM_CREATE_VM, 0);
	if (m->fd < 0)
		die("KVM_CREATE_VM");
	r.userspace_addr = (uint64_t)(uintptr_t)ram;
	if (ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r))
		die("KVM_SET_USER_MEMORY_REGION");
	m->vcpu = ioctl(m->fd, KVM_CREATE_VCPU, 0);
	if (m->vcpu < 0)
		die("KVM_CREATE_VCPU");
	sz = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	m->run_size = (size_t)sz;
	m->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	if (m->run == MAP_FAILED)
		die("mmap kvm_run");
	if (ioctl(m->vcpu, KVM_GET_REGS, &regs))
		die("KVM_GET_REGS");
	regs.rdi = 0x1000; /* the guest's words: gpa 0x1000 and 0x1008 */
	if (ioctl(m->vcpu, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS");
}

static void vm_close(struct vm *m)
{
	munmap(m->run, m->run_size);
	close(m->vcpu);
	close(m->fd);
	close(m->kvm);
}

/* What the VMM's other thread does to the memory once the guest runs. */
enum change { CH_MUNMAP, CH_FREE, CH_MPROTECT };

struct changer {
	struct vm *m;
	enum change how;
	void *malloc_block;
	long ret;
	int err;
	sem_t done; /* posted once KVM_RUN has returned */
};

static void *changer_main(void *arg)
{
	struct changer *c = arg;
	volatile uint64_t *counter = (volatile uint64_t *)(c->m->ram + 0x1008);

	/* The guest has run a while: translations are installed. */
	for (int i = 0; i < 10000 && *counter < 1000; i++)
		usleep(1000);
	switch (c->how) {
	case CH_MUNMAP:
		c->ret = syscall(SYS_munmap, c->m->ram, MSZ);
		break;
	case CH_FREE:
		free(c->malloc_block); /* malloc's own munmap, from libc */
		c->ret = 0;
		break;
	case CH_MPROTECT:
		c->ret = syscall(SYS_mprotect, c->m->ram, MSZ, PROT_READ);
		break;
	}
	c->err = errno;
	/*
	 * Stay until KVM_RUN returns: a thread's exit drops its stack pages
	 * (glibc's madvise, routed to a worker the listener may start), and
	 * a thread started now could map its stack where the guest RAM was;
	 * the guest would then read that memory, as under KVM.
	 */
	while (sem_wait(&c->done) && errno == EINTR)
		;
	return NULL;
}

/* Run the guest while another thread changes its memory: KVM_RUN's answer. */
static void run_while(const char *name, enum change how)
{
	struct changer c = { .how = how };
	struct vm m;
	pthread_t t;
	char *ram;
	int r, e;

	if (how == CH_FREE) {
		/* An mmapped chunk (the threshold is fixed, so it stays one). */
		mallopt(M_MMAP_THRESHOLD, 128 * 1024);
		c.malloc_block = malloc(2 * MSZ);
		if (!c.malloc_block)
			die("malloc");
		ram = (char *)(((uintptr_t)c.malloc_block + MSZ - 1) & ~(MSZ - 1));
	} else {
		ram = mmap(NULL, MSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (ram == MAP_FAILED)
			die("mmap");
	}
	vm_open(&m, ram);
	c.m = &m;
	sem_init(&c.done, 0, 0);
	pthread_create(&t, NULL, changer_main, &c);
	do {
		r = ioctl(m.vcpu, KVM_RUN, 0);
		e = errno;
	} while (r < 0 && e == EINTR);
	sem_post(&c.done);
	pthread_join(t, NULL);
	sem_destroy(&c.done);
	check(c.ret == 0, name, "the change itself failed: %s", res(c.ret, c.err));
	check(r == -1 && e == EFAULT, name, "KVM_RUN: %s, exit %u; expected -1 EFAULT", res(r, e),
	      m.run->exit_reason);
	vm_close(&m);
	if (how == CH_MPROTECT)
		munmap(ram, MSZ);
}

/* ---- a raw KVM_RUN and signals ---------------------------------------- */

static void on_alarm(int sig)
{
	(void)sig;
}

/*
 * The guest never exits by itself: a signal must end a raw KVM_RUN with
 * EINTR, as it ends the kernel's, whether or not the handler asks for
 * restarts; afterwards the vCPU is free (KVM_GET_REGS does not wait).
 */
static void raw_run_signal(bool restart)
{
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0 };
	/*
	 * Every 200 ms: a signal that lands before the listener has received
	 * the call is absorbed by the kernel's restart of the notification
	 * (README), so one signal alone could miss the guest.
	 */
	struct itimerval it = { .it_value = { 0, 200000 }, .it_interval = { 0, 200000 } },
			 off = { 0 };
	struct kvm_regs regs;
	struct vm m;
	char *ram = mmap(NULL, MSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long r;
	int e;

	if (ram == MAP_FAILED)
		die("mmap");
	vm_open(&m, ram);
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	errno = 0;
	r = syscall(SYS_ioctl, m.vcpu, KVM_RUN, 0);
	e = errno;
	setitimer(ITIMER_REAL, &off, NULL);
	check(r == -1 && e == EINTR,
	      restart ? "a signal (SA_RESTART) ends a raw KVM_RUN with EINTR"
		      : "a signal ends a raw KVM_RUN with EINTR",
	      "got %s", res(r, e));
	alarm(10); /* a vCPU still held by the listener's worker would hang here */
	check(ioctl(m.vcpu, KVM_GET_REGS, &regs) == 0, "the vCPU is free after the signal", NULL);
	/* The next raw KVM_RUN enters the guest again; a second signal ends it. */
	setitimer(ITIMER_REAL, &it, NULL);
	do {
		errno = 0;
		r = syscall(SYS_ioctl, m.vcpu, KVM_RUN, 0);
		e = errno;
	} while (0);
	setitimer(ITIMER_REAL, &off, NULL);
	alarm(0);
	check(r == -1 && e == EINTR, "the next raw KVM_RUN runs until the next signal", "got %s",
	      res(r, e));
	check(*(volatile uint64_t *)(ram + 0x1008) > 0, "the guest ran", NULL);
	signal(SIGALRM, SIG_DFL);
	vm_close(&m);
	munmap(ram, MSZ);
}

/* ---- guest_memfd: fallocate, posix_fallocate, file and socket calls ---- */

static int gmem_create(int vm, uint64_t size)
{
	struct kvm_create_guest_memfd g = { .size = size };

	return ioctl(vm, KVM_CREATE_GUEST_MEMFD, &g);
}

static void expect(const char *name, long r, int e, const char *want)
{
	const char *got = res(r, e);

	check(strcmp(got, want) == 0, name, "got %s, expected %s", got, want);
}

#define RAW(expr)                  \
	({                         \
		errno = 0;         \
		long r_ = (expr);  \
		rr_errno = errno;  \
		r_;                \
	})
static int rr_errno;
#define EXPECT(name, expr, want)                      \
	do {                                          \
		long v_ = RAW(expr);                  \
		expect(name, v_, rr_errno, want);     \
	} while (0)

/* The socket calls and in-kernel copies on a guest_memfd and a VM fd. */
static void socket_and_copy_calls(bool raw, int g, int vm, int fd, int p[2])
{
	char buf[16] = { 0 }, name[128];
	struct msghdr mh = { .msg_iov = &(struct iovec){ buf, 8 }, .msg_iovlen = 1 };
	socklen_t len = 4;
	loff_t off = 0;
	off_t soff = 0;

#define NAME(what) (snprintf(name, sizeof(name), "%s %s", raw ? "raw" : "libc", what), name)
	EXPECT(NAME("recv on a guest_memfd"),
	       raw ? syscall(SYS_recvfrom, g, buf, 8, 0, NULL, NULL) : recv(g, buf, 8, 0),
	       "-1 ENOTSOCK");
	EXPECT(NAME("send on a guest_memfd"),
	       raw ? syscall(SYS_sendto, g, buf, 8, MSG_NOSIGNAL, NULL, 0)
		   : send(g, buf, 8, MSG_NOSIGNAL),
	       "-1 ENOTSOCK");
	EXPECT(NAME("recvmsg on a VM fd"),
	       raw ? syscall(SYS_recvmsg, vm, &mh, 0) : recvmsg(vm, &mh, 0), "-1 ENOTSOCK");
	EXPECT(NAME("sendmsg on a VM fd"),
	       raw ? syscall(SYS_sendmsg, vm, &mh, 0) : sendmsg(vm, &mh, 0), "-1 ENOTSOCK");
	EXPECT(NAME("shutdown on a guest_memfd"),
	       raw ? syscall(SYS_shutdown, g, SHUT_RDWR) : shutdown(g, SHUT_RDWR), "-1 ENOTSOCK");
	EXPECT(NAME("getsockopt on a VM fd"),
	       raw ? syscall(SYS_getsockopt, vm, SOL_SOCKET, SO_TYPE, buf, &len)
		   : getsockopt(vm, SOL_SOCKET, SO_TYPE, buf, &len),
	       "-1 ENOTSOCK");
	EXPECT(NAME("listen on a guest_memfd"),
	       raw ? syscall(SYS_listen, g, 1) : listen(g, 1), "-1 ENOTSOCK");
	EXPECT(NAME("splice guest_memfd -> pipe"),
	       raw ? syscall(SYS_splice, g, NULL, p[1], NULL, 8, 0) : splice(g, NULL, p[1], NULL, 8, 0),
	       "-1 EINVAL");
	EXPECT(NAME("splice guest_memfd (offset) -> pipe"),
	       raw ? syscall(SYS_splice, g, &off, p[1], NULL, 8, 0) : splice(g, &off, p[1], NULL, 8, 0),
	       "-1 EINVAL");
	EXPECT(NAME("splice pipe (offset) -> guest_memfd"),
	       raw ? syscall(SYS_splice, p[0], &off, g, NULL, 8, 0) : splice(p[0], &off, g, NULL, 8, 0),
	       "-1 ESPIPE");
	EXPECT(NAME("splice, len 0"),
	       raw ? syscall(SYS_splice, g, NULL, p[1], NULL, 0, 0) : splice(g, NULL, p[1], NULL, 0, 0),
	       "0");
	EXPECT(NAME("tee guest_memfd -> pipe"),
	       raw ? syscall(SYS_tee, g, p[1], 8, 0) : tee(g, p[1], 8, 0), "-1 EINVAL");
	EXPECT(NAME("sendfile from a guest_memfd"),
	       raw ? syscall(SYS_sendfile, p[1], g, NULL, 8) : sendfile(p[1], g, NULL, 8),
	       "-1 EINVAL");
	EXPECT(NAME("sendfile from a guest_memfd with an offset"),
	       raw ? syscall(SYS_sendfile, p[1], g, &soff, 8) : sendfile(p[1], g, &soff, 8),
	       "-1 ESPIPE");
	EXPECT(NAME("sendfile into a VM fd"),
	       raw ? syscall(SYS_sendfile, vm, fd, NULL, 8) : sendfile(vm, fd, NULL, 8), "-1 EINVAL");
	EXPECT(NAME("copy_file_range guest_memfd -> regular file"),
	       raw ? syscall(SYS_copy_file_range, g, NULL, fd, NULL, 8, 0)
		   : copy_file_range(g, NULL, fd, NULL, 8, 0),
	       "-1 EXDEV");
	EXPECT(NAME("copy_file_range VM fd -> regular file"),
	       raw ? syscall(SYS_copy_file_range, vm, NULL, fd, NULL, 8, 0)
		   : copy_file_range(vm, NULL, fd, NULL, 8, 0),
	       "-1 EINVAL");
#undef NAME
}

static void gmem_cases(void)
{
	int kvm, vm, g, p[2], fd;
	char buf[16] = { 0 };
	char path[] = "/tmp/test_rawsys.XXXXXX";
	struct stat st;

	kvm = open("/dev/kvm", O_RDWR);
	vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	if (vm < 0)
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
	g = gmem_create(vm, 16 * 4096);
	if (kvm < 0 || vm < 0 || g < 0)
		die("guest_memfd");

	EXPECT("raw fallocate KEEP_SIZE on a guest_memfd",
	       syscall(SYS_fallocate, g, FALLOC_FL_KEEP_SIZE, 0L, 4096L), "0");
	EXPECT("raw fallocate PUNCH_HOLE on a guest_memfd",
	       syscall(SYS_fallocate, g, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0L, 4096L), "0");
	EXPECT("raw fallocate beyond EOF on a guest_memfd",
	       syscall(SYS_fallocate, g, FALLOC_FL_KEEP_SIZE, 16 * 4096L, 4096L), "-1 EINVAL");
	EXPECT("raw fallocate mode 0 on a guest_memfd", syscall(SYS_fallocate, g, 0, 0L, 4096L),
	       "-1 EOPNOTSUPP");
	EXPECT("raw ioctl KVM_CHECK_EXTENSION on the VM",
	       syscall(SYS_ioctl, vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD), "1");
	EXPECT("raw ioctl KVM_CREATE_VCPU then raw close",
	       (fd = (int)syscall(SYS_ioctl, vm, KVM_CREATE_VCPU, 0)) >= 0 ? syscall(SYS_close, fd) : -1,
	       "0");
	/*
	 * posix_fallocate: fallocate(mode 0) is EOPNOTSUPP on a guest_memfd, so
	 * glibc emulates: fstat (a regular file), then pread of each block,
	 * which a guest_memfd refuses with ESPIPE; a zero length is the
	 * kernel's EINVAL (fallocate checks it before the mode).  The preload
	 * answers posix_fallocate itself (its fallback's calls are libc's own).
	 */
	{
		int pe = posix_fallocate(g, 0, 4096);

		expect("posix_fallocate on a guest_memfd", pe ? -1 : 0, pe, "-1 ESPIPE");
		pe = posix_fallocate(g, 4096, 0);
		expect("posix_fallocate of 0 bytes", pe ? -1 : 0, pe, "-1 EINVAL");
		pe = posix_fallocate(g, 0, 64 * 4096);
		expect("posix_fallocate past a guest_memfd's end", pe ? -1 : 0, pe, "-1 ESPIPE");
		pe = posix_fallocate(g, -1, 4096);
		expect("posix_fallocate at a negative offset", pe ? -1 : 0, pe, "-1 EINVAL");
	}
	fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp");
	unlink(path);
	EXPECT("posix_fallocate on a regular file (not ours)", posix_fallocate(fd, 0, 8192), "0");
	EXPECT("raw fallocate on a regular file (not ours)",
	       syscall(SYS_fallocate, fd, 0, 0L, 16384L), "0");
	fstat(fd, &st);
	check(st.st_size == 16384, "the regular file grew", "size %lld", (long long)st.st_size);
	EXPECT("raw KVM-numbered ioctl on a regular file (not ours)",
	       syscall(SYS_ioctl, fd, KVM_CHECK_EXTENSION, 0), "-1 ENOTTY");

	/* Never a hang: an unrouted read/recv/splice meets a socket shut for writing. */
	alarm(20);
	if (pipe(p))
		die("pipe");
	/* Through libc (the preload's wrappers): exact in both modes. */
	socket_and_copy_calls(false, g, vm, fd, p);
	if (files_mode) {
		/* By syscall(2): exact only when the filter routes them. */
		EXPECT("raw read on a guest_memfd", syscall(SYS_read, g, buf, 8), "-1 EINVAL");
		EXPECT("raw write on a guest_memfd", syscall(SYS_write, g, buf, 8), "-1 EINVAL");
		EXPECT("raw pread on a guest_memfd", syscall(SYS_pread64, g, buf, 8, 0), "-1 ESPIPE");
		EXPECT("raw pwrite on a guest_memfd", syscall(SYS_pwrite64, g, buf, 8, 0), "-1 ESPIPE");
		EXPECT("raw lseek on a guest_memfd", syscall(SYS_lseek, g, 0, SEEK_SET), "-1 ESPIPE");
		EXPECT("raw read on a VM fd", syscall(SYS_read, vm, buf, 8), "-1 EINVAL");
		/* A VM fd's llseek is noop_llseek: its position, 0. */
		EXPECT("raw lseek on a VM fd", syscall(SYS_lseek, vm, 0, SEEK_SET), "0");
		EXPECT("raw fstat of a guest_memfd is a regular file",
		       (syscall(SYS_fstat, g, &st), S_ISREG(st.st_mode)), "1");
		socket_and_copy_calls(true, g, vm, fd, p);
	} else {
		/* Not routed: a socket's answers, but at once (README). */
		EXPECT("raw read on a guest_memfd returns at once", syscall(SYS_read, g, buf, 8), "0");
		EXPECT("raw recvfrom on a guest_memfd returns at once",
		       syscall(SYS_recvfrom, g, buf, 8, 0, NULL, NULL), "0");
		EXPECT("raw splice from a guest_memfd returns at once",
		       syscall(SYS_splice, g, NULL, p[1], NULL, 8, SPLICE_F_NONBLOCK), "0");
	}
	alarm(0);
	close(p[0]);
	close(p[1]);
	close(fd);
	close(g);
	close(vm);
	close(kvm);
}

/* ---- what is not ours ------------------------------------------------- */

static void other_process_cases(void)
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		/* A fork child's memory calls: CONTINUE (its own mm). */
		void *p = mmap(NULL, MSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED || syscall(SYS_mprotect, p, MSZ, PROT_READ) ||
		    syscall(SYS_munmap, p, MSZ))
			_exit(1);
		void *q = malloc(4 * MSZ);
		free(q);
		_exit(3);
	}
	waitpid(pid, &st, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "a fork child's raw munmap/mprotect and free",
	      "status 0x%x", st);
	/* An exec'd program: ld.so's mprotect and libc's munmap work. */
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exec /bin/sh -c 'exit 7'", (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "a program exec'd by a fork child runs",
	      "status 0x%x", st);
}

/* ---- madvise of converted RAM ----------------------------------------- */

/*
 * Run without a C guest: the vCPU's first KVM_RUN of machine code (a HLT)
 * makes memslot RAM MAP_SHARED (src/core/gmemfd.h).  A raw madvise that
 * drops pages must then act as on anonymous memory, as the madvise
 * wrapper does: DONTNEED reads back zeros, FREE (which the host refuses
 * on a shared mapping) succeeds and zeroes too.
 */
static void put64(char *mem, uint64_t gpa, uint64_t v)
{
	memcpy(mem + gpa, &v, 8);
}

static void madvise_converted_cases(void)
{
	char *ram = mmap(NULL, MSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_segment cs = { .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1,
				  .s = 1, .l = 1, .g = 1 };
	struct kvm_segment ds = { .limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1,
				  .s = 1, .db = 1, .g = 1 };
	char *p = ram + 0x40000; /* the pages madvised */
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vm m;
	long r;

	if (ram == MAP_FAILED)
		die("mmap");
	/* 64-bit paging: gpa 0-2 MiB mapped 1:1 by one large page; hlt at 0x10000. */
	put64(ram, 0x1000, 0x2000 | 3);
	put64(ram, 0x2000, 0x3000 | 3);
	put64(ram, 0x3000, 0x000000 | 0x83);
	put64(ram, 0x6008, 0x00af9b000000ffffULL);
	put64(ram, 0x6010, 0x00cf93000000ffffULL);
	ram[0x10000] = (char)0xf4;
	memset(p, 'm', 3 * 4096);
	vm_open(&m, ram);
	if (ioctl(m.vcpu, KVM_GET_SREGS, &sregs) || ioctl(m.vcpu, KVM_GET_REGS, &regs))
		die("KVM_GET_SREGS");
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
	sregs.tr = (struct kvm_segment){ .limit = 0x67, .type = 11, .present = 1 };
	sregs.gdt.base = 0x6000;
	sregs.gdt.limit = 23;
	sregs.cr0 = 0x80050033;
	sregs.cr3 = 0x1000;
	sregs.cr4 = 0x620;
	sregs.efer = 0x500;
	regs.rip = 0x10000;
	regs.rsp = 0x30000;
	regs.rflags = 2;
	if (ioctl(m.vcpu, KVM_SET_SREGS, &sregs) || ioctl(m.vcpu, KVM_SET_REGS, &regs))
		die("KVM_SET_SREGS");
	r = ioctl(m.vcpu, KVM_RUN, 0);
	check(r == 0 && m.run->exit_reason == KVM_EXIT_HLT, "a machine-code guest runs to HLT",
	      "KVM_RUN %s, exit %u", res(r, errno), m.run->exit_reason);
	EXPECT("raw madvise(MADV_DONTNEED) of converted guest RAM",
	       syscall(SYS_madvise, p, 4096, MADV_DONTNEED), "0");
	check(p[0] == 0 && p[4095] == 0 && p[4096] == 'm',
	      "MADV_DONTNEED: the page reads back zeros, its neighbour is kept", "got %#x, %#x",
	      p[0], p[4096]);
	EXPECT("raw madvise(MADV_FREE) of converted guest RAM",
	       syscall(SYS_madvise, p + 4096, 4096, MADV_FREE), "0");
	check(p[4096] == 0 && p[2 * 4096] == 'm',
	      "MADV_FREE: the page reads back zeros, its neighbour is kept", "got %#x, %#x",
	      p[4096], p[2 * 4096]);
	vm_close(&m);
	munmap(ram, MSZ);
}

/* Whether the parent runs "wait" now (its first image is gone). */
static bool parent_waits(void)
{
	char path[64], buf[256] = "";
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)getppid());
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	return n > strlen(buf) + 1 && !strcmp(buf + strlen(buf) + 1, "wait");
}

/*
 * "fork-burst": a fork child's threads make raw ioctls all at once, more
 * than the host queues for its listener (net.unix.max_dgram_qlen, 10):
 * every one must get the object's answer, none a stranger's.
 */
#define BURST_THREADS 32
#define BURST_CALLS 50
static int burst_kvm;
static int burst_wrong;
static pthread_barrier_t burst_start;

static void *burst_main(void *arg)
{
	(void)arg;
	/* All at once: threads coming and going meanwhile are "fork-churn". */
	pthread_barrier_wait(&burst_start);
	for (int i = 0; i < BURST_CALLS; i++)
		if (syscall(SYS_ioctl, burst_kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
			__atomic_fetch_add(&burst_wrong, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void burst_cases(void)
{
	pthread_t t[BURST_THREADS];
	struct timespec t0, t1;
	int n = 0;

	burst_kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (burst_kvm < 0)
		die("open /dev/kvm");
	pthread_barrier_init(&burst_start, NULL, BURST_THREADS + 1);
	for (int i = 0; i < BURST_THREADS; i++)
		n += !pthread_create(&t[i], NULL, burst_main, NULL);
	if (n < BURST_THREADS)
		die("pthread_create");
	pthread_barrier_wait(&burst_start);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	check(n == BURST_THREADS && !burst_wrong,
	      "a fork child's burst of raw ioctls, all answered by the object", "%d threads, %d wrong",
	      n, burst_wrong);
	printf("# %d raw ioctls in %.0f ms\n", n * BURST_CALLS,
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	close(burst_kvm);
}

/*
 * "fork-churn": in fresh fork children (a listener with no worker yet),
 * threads come and go while raw ioctls are pending, so the listener needs
 * new workers while other threads free their stacks.  glibc frees cached
 * stacks with munmap under the lock that starting a thread takes; that
 * munmap is routed, so a listener that started workers itself would wait
 * for a lock whose holder waits for the listener.
 */
#define CHURN_FORKS 6
#define CHURN_ROUNDS 4
#define CHURN_THREADS 24
#define CHURN_CALLS 10

static void *churn_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < CHURN_CALLS; i++)
		if (syscall(SYS_ioctl, burst_kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
			__atomic_fetch_add(&burst_wrong, 1, __ATOMIC_RELAXED);
	return NULL;
}

static int churn_child(bool inherited)
{
	int made = 0;

	if (!inherited)
		burst_kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (burst_kvm < 0)
		return 2;
	for (int r = 0; r < CHURN_ROUNDS; r++) {
		pthread_t t[CHURN_THREADS];
		int n = 0;

		/* No barrier: the first threads call while later ones start. */
		for (int i = 0; i < CHURN_THREADS; i++)
			n += !pthread_create(&t[n], NULL, churn_main, NULL);
		for (int i = 0; i < n; i++)
			pthread_join(t[i], NULL);
		made += n;
	}
	close(burst_kvm);
	return made == CHURN_ROUNDS * CHURN_THREADS && !burst_wrong ? 0 : 1;
}

/*
 * @inherited: the children use the parent's /dev/kvm and make no object of
 * their own, so their listener starts in fork() and its spawner only when
 * the first raw ioctl wants a worker, while the threads churn.
 */
static void churn_cases(bool inherited)
{
	int ok = 0;

	burst_kvm = inherited ? open("/dev/kvm", O_RDWR | O_CLOEXEC) : -1;
	for (int f = 0; f < CHURN_FORKS; f++) {
		pid_t pid = fork();
		int st;

		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(churn_child(inherited));
		ok += waitpid(pid, &st, 0) == pid && WIFEXITED(st) && !WEXITSTATUS(st);
	}
	if (inherited)
		close(burst_kvm);
	check(ok == CHURN_FORKS,
	      inherited ? "threads started and gone while raw ioctls on an inherited fd are pending"
			: "threads started and gone while a fork child's raw ioctls are pending",
	      "%d of %d children answered right", ok, CHURN_FORKS);
}

/* Whether a thread of process @pid is named @comm. */
static bool has_thread(pid_t pid, const char *comm)
{
	char path[300], buf[32];
	struct dirent *e;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && !found && (e = readdir(d))) {
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, e->d_name);
		f = fopen(path, "r");
		if (f && fgets(buf, sizeof(buf), f))
			found = !strncmp(buf, comm, strlen(comm)) && buf[strlen(comm)] == '\n';
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return found;
}

/*
 * How many descriptors at or above 512 (where guestmem keeps its own, in a
 * process that never opens that many) libc's fcntl finds open: each of
 * guestmem's must answer EBADF, as one the program never had.
 */
static int own_fds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		n += e->d_name[0] != '.' && fd >= 512 && fd != dirfd(d) &&
		     fcntl(fd, F_GETFD) != -1;
	}
	if (d)
		closedir(d);
	return n;
}

static bool parent_has_thread(const char *comm)
{
	return has_thread(getppid(), comm);
}

/*
 * The abstract name "guestmem-sc:<session>[:<pid>]" of this session's
 * helper (@pid < 0) or of process @pid's listener, in *@a; its length, or
 * 0 outside a session.
 */
static socklen_t session_addr(struct sockaddr_un *a, int pid)
{
	const char *session = getenv("GUESTMEM_SECCOMP_SESSION");
	int n;

	if (!session)
		return 0;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	n = pid < 0 ? snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "guestmem-sc:%s", session)
		    : snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "guestmem-sc:%s:%d",
			       session, pid);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/*
 * Whether the parent's new image has joined the session: its listener
 * thread runs (so the old image, and its name, are gone: they are until
 * exec returns, after /proc shows the new command line) and its name is
 * bound.
 */
static bool parent_joined(void)
{
	struct sockaddr_un a;
	socklen_t len = session_addr(&a, (int)getppid());
	int s;
	bool ok;

	if (!len || !parent_has_thread("gm-sc-listener"))
		return false;
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	/* One byte: its listener takes it for a wake-up. */
	ok = s >= 0 && sendto(s, "", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len) == 1;
	if (s >= 0)
		close(s);
	return ok;
}

/* The pid of this session's helper (guestmem's, not ours): who answers its name. */
static pid_t session_helper(void)
{
	struct sockaddr_un a;
	socklen_t alen = session_addr(&a, -1);
	struct ucred cr = { 0 };
	socklen_t len = sizeof(cr);
	int s;

	if (!alen)
		return -1;
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, alen) ||
	    getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len))
		cr.pid = -1;
	if (s >= 0)
		close(s); /* what it sent is closed with it */
	return cr.pid;
}

/*
 * "helper-gone", exec'd by the first image (a shell's `exec`): once that
 * image is gone the session's helper receives this image's routed calls.
 * Killed too (the VMM can: same user), nobody receives: the routed calls
 * must fail, not wait for ever: raw KVM ioctls with EIO (the guestmem side
 * is gone), the others with ENOSYS (the kernel's answer once nobody holds
 * the listener); the libc calls go on working.
 */
static void helper_gone_cases(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	pid_t helper = session_helper();
	long r;
	int e, i;
	void *p;

	if (kvm < 0)
		die("open /dev/kvm");
	r = syscall(SYS_ioctl, kvm, KVM_GET_API_VERSION, 0);
	check(r == KVM_API_VERSION, "the helper answers a raw ioctl", "%s", res(r, errno));
	check(helper > 0 && helper != getpid(), "the session's helper is found", "pid %d", helper);
	if (helper <= 0)
		return;
	kill(helper, SIGKILL);
	for (i = 0; i < 5000 && kill(helper, 0) == 0; i++)
		usleep(1000);
	/* A hang is the failure: SIGALRM ends the test. */
	alarm(30);
	r = syscall(SYS_ioctl, kvm, KVM_GET_API_VERSION, 0);
	e = errno;
	check(r == -1 && e == EIO, "with nobody to receive, a raw KVM ioctl fails with EIO",
	      "%s", res(r, e));
	/* Only KVM's: another type's raw ioctl still reaches the kernel. */
	{
		int pfd[2], avail = -1;

		if (pipe(pfd))
			die("pipe");
		r = syscall(SYS_ioctl, pfd[0], FIONREAD, &avail);
		check(r == 0 && avail == 0, "a raw FIONREAD on a pipe still answers", "%s",
		      res(r, errno));
		close(pfd[0]);
		close(pfd[1]);
	}
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	r = syscall(SYS_munmap, p, 4096);
	e = errno;
	check(r == -1 && e == ENOSYS, "a raw munmap fails with ENOSYS", "%s", res(r, e));
	r = ioctl(kvm, KVM_GET_API_VERSION, 0);
	check(r == KVM_API_VERSION, "the libc ioctl still answers", "%s", res(r, errno));
	/* The preload's wrappers make their calls through the gate: exempt. */
	r = munmap(p, 4096);
	check(r == 0, "libc munmap still unmaps", "%s", res(r, errno));
	r = close(kvm);
	check(r == 0, "libc close still closes", "%s", res(r, errno));
	alarm(0);
}

int main(int argc, char **argv)
{
	const char *mode = getenv("GUESTMEM_SECCOMP");
	bool closed;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "madvise")) {
		madvise_converted_cases();
		printf("1..%d\n", nr_test);
		return nr_failed ? 1 : 0;
	}

	files_mode = mode && !strcmp(mode, "files");
	/*
	 * "fork": everything runs in a fork child, which creates its own VM (a
	 * VMM that forks before it makes its VM).  "fork-parent-gone": the
	 * same, and the parent's image is gone at once, as when a VMM
	 * daemonizes: it execs "wait PID", which reports the child's status.
	 * "fork-closed": the same, the child first closing every descriptor
	 * from 3 up with a raw close_range (glibc's closefrom() makes that
	 * call itself), guestmem's copies included: a child that holds no
	 * object starts its listener only before its first object, so the
	 * kernel makes the call, and that first object gets the listener back
	 * from the session's helper.
	 */
	/*
	 * "raw-fork-exec": a raw fork child (no fork handler runs in it) holds
	 * a copy of this image's name socket while this image execs itself.
	 * The new image's first routed calls (ld.so's) are forwarded to that
	 * name, into the child's copy, and lost when the child exits: they must
	 * be sent again and answered, not wait for ever.
	 */
	if (argc > 1 && !strcmp(argv[1], "raw-fork-exec")) {
		long pid = syscall(SYS_fork);
		char arg[24];

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			struct timespec ts = { 0, 300 * 1000 * 1000 };

			syscall(SYS_nanosleep, &ts, NULL);
			syscall(SYS_exit_group, 0);
		}
		snprintf(arg, sizeof(arg), "%ld", pid);
		execl("/proc/self/exe", argv[0], "raw-fork-exec-done", arg, (char *)NULL);
		die("exec");
	}
	if (argc > 2 && !strcmp(argv[1], "raw-fork-exec-done")) {
		int st;

		check(waitpid((pid_t)atoi(argv[2]), &st, 0) > 0 && WIFEXITED(st) && !WEXITSTATUS(st),
		      "an image exec'd while a raw fork child held its name runs", NULL);
		printf("1..%d\n", nr_test);
		return nr_failed ? 1 : 0;
	}
	if (argc > 1 && !strcmp(argv[1], "fork-churn")) {
		churn_cases(false);
		churn_cases(true);
		printf("1..%d\n", nr_test);
		return nr_failed ? 1 : 0;
	}
	if (argc > 1 && !strcmp(argv[1], "fork-burst")) {
		pid_t pid = fork();
		int st;

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			burst_cases();
			printf("1..%d\n", nr_test);
			exit(nr_failed ? 1 : 0);
		}
		if (waitpid(pid, &st, 0) != pid)
			die("waitpid");
		return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	}
	/* The same in a fork child, the first image gone at once ("wait"). */
	if (argc > 1 && !strcmp(argv[1], "helper-gone-fork")) {
		pid_t pid = fork();
		char arg[16];

		if (pid < 0)
			die("fork");
		if (pid > 0) {
			snprintf(arg, sizeof(arg), "%d", (int)pid);
			execl("/proc/self/exe", argv[0], "wait", arg, (char *)NULL);
			die("exec");
		}
		/* Exec'd and joined: killed before, the helper could leave the
		 * new image's own start-up calls to nobody (ENOSYS in ld.so). */
		/* 20 s: a parent image left without a listener is named here
		 * (and its stderr line, if any, says why), not a timeout. */
		struct timespec t0, now;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (!parent_waits() || !parent_joined()) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec >= 20) {
				printf("Bail out! the parent's exec'd image has no listener after 20 s\n");
				return 1;
			}
			usleep(1000);
		}
	}
	if (argc > 1 && (!strcmp(argv[1], "helper-gone") || !strcmp(argv[1], "helper-gone-fork"))) {
		helper_gone_cases();
		printf("1..%d\n", nr_test);
		return nr_failed ? 1 : 0;
	}
	if (argc > 2 && !strcmp(argv[1], "wait")) {
		int st;

		if (waitpid((pid_t)atoi(argv[2]), &st, 0) < 0)
			die("waitpid");
		return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	}
	closed = argc > 1 && !strcmp(argv[1], "fork-closed");
	if (argc > 1 && (!strcmp(argv[1], "fork") || !strcmp(argv[1], "fork-parent-gone") ||
			 closed)) {
		bool gone = !strcmp(argv[1], "fork-parent-gone");
		pid_t pid = fork();
		char arg[16];
		int st;

		if (pid < 0)
			die("fork");
		if (pid > 0 && gone) {
			snprintf(arg, sizeof(arg), "%d", (int)pid);
			execl("/proc/self/exe", argv[0], "wait", arg, (char *)NULL);
			die("exec");
		}
		if (pid > 0) {
			if (waitpid(pid, &st, 0) != pid)
				die("waitpid");
			return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		}
		while (gone && !parent_waits())
			usleep(1000);
	}
	if (closed) {
		long r;

		check(!has_thread(getpid(), "gm-sc-listener") &&
			      !has_thread(getpid(), "gm-sc-spawner"),
		      "a fork child that holds no object starts no thread in fork()", NULL);
		r = syscall(SYS_close_range, 3, ~0U, 0);
		check(r == 0, "a raw close_range(3, ~0) before its first object", "%s",
		      res(r, errno));
	}
	run_while("raw munmap of memslot memory while the vCPU runs", CH_MUNMAP);
#ifdef __SANITIZE_ADDRESS__
	/* ASan's free() keeps the memory (quarantine): no munmap to route. */
	check(true, "free() of malloc'ed guest RAM while the vCPU runs # SKIP ASan's free", NULL);
#else
	run_while("free() of malloc'ed guest RAM while the vCPU runs", CH_FREE);
#endif
	run_while("raw mprotect(PROT_READ) of guest RAM while the vCPU stores", CH_MPROTECT);
	raw_run_signal(false);
	raw_run_signal(true);
	gmem_cases();
	other_process_cases();
	if (closed) {
		check(has_thread(getpid(), "gm-sc-listener"),
		      "its listener started before its first object, on the helper's copy", NULL);
		check(own_fds_open() == 0, "... and every descriptor of guestmem's it took is hidden",
		      "%d answer fcntl", own_fds_open());
	}
	printf("1..%d\n", nr_test); /* the plan at the end: valid TAP */
	return nr_failed ? 1 : 0;
}
