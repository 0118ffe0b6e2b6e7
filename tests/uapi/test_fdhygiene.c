// SPDX-License-Identifier: MIT
/*
 * test_fdhygiene: a VMM that closes what it did not open must not disturb
 * guestmem (issue 10, item 2; src/lib/ownfd.h).
 *
 * A plain-libc VMM-style program run under `guestmem exec` (one meson test
 * per case, GM_TEST_NOFORK=1: raw system calls are routed only for the
 * VMM's own process, not a forked case).  A SW_PROTECTED VM runs machine
 * code with private memory in a guest_memfd.  Then the program closes
 * every descriptor it did not open (by a close() loop, close_range,
 * closefrom, or raw syscall(2) variants), dup2()s a file of its own over
 * every free low number, and opens its "disk image".  The guest then
 * writes and reads private memory, the VMM punches the guest_memfd
 * (guestmem's backing file) and the guest reads zeros: the image stays
 * intact and the guest gets its own bytes.  Before, guestmem's backing
 * memfd was one of the closed numbers and the image took it over.
 *
 * `vmm_table_holds_objects`: what the VMM's table holds while the guest
 * runs: one socket per object, no memfd but the converted memslot RAM's
 * (kvm_run and ring pages are kept by mapping alone, the storage by the
 * guest process), no pidfd, and the objects' library ends and the guest
 * process's pidfd in the
 * keeper thread's table instead (src/uapi/keeper.c).
 *
 * `own_fds_answer_ebadf`: every call on one of guestmem's descriptors
 * answers as on a number that is not open (dup2 onto one: EBUSY), and its
 * /proc/self/fd link as a missing one (ENOENT).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <guestmem/sys.h>

/* x86_vm.h speaks guestmem_sys_*: here the plain calls, routed by exec. */
#define guestmem_sys_open open
#define guestmem_sys_ioctl ioctl
#define guestmem_sys_mmap mmap
#define guestmem_sys_munmap munmap
#define guestmem_sys_close close
#include "../unit/x86_vm.h"
#include "keeper_table.h"

#define PORT2 0x11
#define IMAGE_SIZE (1 << 20)
#define PRIV 0x200000ULL

struct setup {
	struct vm m;
	int gmem;
	void *shared;
	char image_path[64];
};

static void code(struct vm *m, uint64_t gpa, const uint8_t *bytes, size_t n)
{
	memcpy(m->mem + gpa, bytes, n);
}

static bool is_keep(int fd, const int *keep, int n)
{
	for (int i = 0; i < n; i++)
		if (keep[i] == fd)
			return true;
	return false;
}

/* The VM: private page at PRIV in a guest_memfd slot. */
static void setup_vm(struct setup *s)
{
	static const uint8_t c[] = {
		0xc7, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0x5a, 0x5a, 0x00, 0x00, /* movl $0x5a5a, PRIV */
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, /* 1: mov PRIV, %eax */
		0x66, 0xba, PORT2, 0x00,		  /* mov $PORT2, %dx */
		0xef,					  /* out %eax, (%dx) */
		0xeb, 0xf2,				  /* jmp 1b */
	};
	struct kvm_create_guest_memfd cg = { .size = 0x200000 };
	struct kvm_memory_attributes attr = { .address = PRIV, .size = 0x1000,
					      .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };
	struct kvm_userspace_memory_region2 r2 = { .slot = 1, .flags = KVM_MEM_GUEST_MEMFD,
						   .guest_phys_addr = PRIV,
						   .memory_size = 0x200000 };

	vm_create(&s->m, KVM_X86_SW_PROTECTED_VM, false);
	s->gmem = ioctl(s->m.fd, KVM_CREATE_GUEST_MEMFD, &cg);
	ASSERT_TRUE(s->gmem >= 0);
	s->shared = mmap(NULL, 0x200000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(s->shared != MAP_FAILED);
	r2.guest_memfd = (uint32_t)s->gmem;
	r2.userspace_addr = (uintptr_t)s->shared;
	ASSERT_EQ(ioctl(s->m.fd, KVM_SET_USER_MEMORY_REGION2, &r2), 0);
	ASSERT_EQ(ioctl(s->m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	code(&s->m, CODE, c, sizeof(c));
	vm_start(&s->m, CODE);
}

static uint32_t guest_reads(struct setup *s)
{
	uint32_t v;

	expect_io(&s->m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&v, pio_data(&s->m), 4);
	return v;
}

enum how { LIBC_LOOP, CLOSE_RANGE, CLOSEFROM, RAW_LOOP, RAW_CLOSE_RANGE };

/* Close every fd from 3 up that is not in @keep, the way @how says. */
static void close_all_but(enum how how, const int *keep, int n)
{
	int max = (int)sysconf(_SC_OPEN_MAX), lo = 3;

	switch (how) {
	case LIBC_LOOP:
	case RAW_LOOP:
		for (int fd = 3; fd < max; fd++)
			if (is_keep(fd, keep, n))
				continue;
			else if (how == LIBC_LOOP)
				close(fd);
			else
				syscall(SYS_close, fd);
		return;
	case CLOSEFROM:
	case CLOSE_RANGE:
	case RAW_CLOSE_RANGE:
		/* The gaps between the kept numbers, then from the last one on. */
		for (int fd = 3; fd <= max; fd++) {
			if (fd < max && !is_keep(fd, keep, n))
				continue;
			if (fd > lo) {
				if (how == RAW_CLOSE_RANGE)
					ASSERT_EQ(syscall(SYS_close_range, lo, fd - 1, 0), 0);
				else
					ASSERT_EQ(close_range((unsigned)lo, (unsigned)fd - 1, 0), 0);
			}
			lo = fd + 1;
		}
		if (how == CLOSEFROM)
			closefrom(lo);
		else if (how == RAW_CLOSE_RANGE)
			ASSERT_EQ(syscall(SYS_close_range, lo, ~0U, 0), 0);
		else
			ASSERT_EQ(close_range((unsigned)lo, ~0U, 0), 0);
		return;
	}
}

static void hygiene(enum how how)
{
	static char block[IMAGE_SIZE];
	struct setup s;
	int img, spare, keep[5];
	char *back;

	setup_vm(&s);
	ASSERT_EQ(guest_reads(&s), 0x5a5a); /* the guest process and backing exist */
	keep[0] = s.m.kvm, keep[1] = s.m.fd, keep[2] = s.m.vcpu, keep[3] = s.gmem;
	close_all_but(how, keep, 4);

	/* The VMM's own files over every free low number, then its image. */
	snprintf(s.image_path, sizeof(s.image_path), "/tmp/gm-fdhygiene-%d", (int)getpid());
	img = open(s.image_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ASSERT_TRUE(img >= 0);
	unlink(s.image_path);
	memset(block, 0xa5, sizeof(block));
	ASSERT_EQ(pwrite(img, block, sizeof(block), 0), (ssize_t)sizeof(block));
	keep[4] = img;
	spare = dup(img);
	ASSERT_TRUE(spare >= 0);
	for (int fd = 3; fd < 64; fd++)
		if (!is_keep(fd, keep, 5) && fd != spare)
			ASSERT_EQ(dup2(spare, fd), fd);

	/* The guest's private page still holds its write... */
	ASSERT_EQ(guest_reads(&s), 0x5a5a);
	/* ...a punch of the guest_memfd frees it: zeros from now on. */
	ASSERT_EQ(fallocate(s.gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
	ASSERT_EQ(guest_reads(&s), 0);

	back = malloc(IMAGE_SIZE);
	ASSERT_TRUE(back != NULL);
	ASSERT_EQ(pread(img, back, IMAGE_SIZE, 0), (ssize_t)IMAGE_SIZE);
	ASSERT_TRUE(memcmp(back, block, IMAGE_SIZE) == 0);
	free(back);
	/* Nothing the guest wrote reached the VMM's shared view either. */
	ASSERT_EQ(*(volatile uint32_t *)s.shared, 0);
}

TEST(by_close_loop)
{
	hygiene(LIBC_LOOP);
}

TEST(by_close_range)
{
	hygiene(CLOSE_RANGE);
}

TEST(by_closefrom)
{
	hygiene(CLOSEFROM);
}

TEST(by_raw_close_loop)
{
	hygiene(RAW_LOOP);
}

TEST(by_raw_close_range)
{
	hygiene(RAW_CLOSE_RANGE);
}

/* readlink of /proc/self/fd/N or /proc/self/task/T/fd/N, raw (unhidden). */
static bool fd_link(const char *dir, const char *name, char *buf, size_t size)
{
	char path[320];
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	n = syscall(SYS_readlink, path, buf, size - 1);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* A guestmem object's end: its abstract name (src/uapi/remote.c), raw. */
static bool is_object(int fd)
{
	struct sockaddr_un a;
	socklen_t len = sizeof(a);

	return syscall(SYS_getsockname, fd, &a, &len) == 0 && len > sizeof(sa_family_t) + 1 &&
	       a.sun_path[0] == '\0' && !strncmp(a.sun_path + 1, "guestmem-file:", 14);
}

TEST(vmm_table_holds_objects)
{
	int objects[] = { 0, 0, 0, 0 }, n_obj = 0, n_sock_own = 0, n_keeper = 0, n_peers = 0;
	int n_pidfds = 0, n_ram = 0;
	char link[256], kdir[300];
	struct setup s;
	struct dirent *e;
	DIR *d;

	setup_vm(&s);
	ASSERT_EQ(guest_reads(&s), 0x5a5a);
	objects[0] = s.m.kvm, objects[1] = s.m.fd, objects[2] = s.m.vcpu, objects[3] = s.gmem;

	d = opendir("/proc/self/fd");
	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d) ||
		    !fd_link("/proc/self/fd", e->d_name, link, sizeof(link)))
			continue;
		/*
		 * No memfd: not even the file that memslot RAM the VMM
		 * allocated privately became, so the guest process can map
		 * it (README "Memslot RAM"), which the keeper keeps.
		 */
		ASSERT_MSG(!strstr(link, "memfd:"), "fd %d is %s", fd, link);
		/* The guest process's pidfd is the keeper's (src/gproc/gproc.c). */
		ASSERT_MSG(strcmp(link, "anon_inode:[pidfd]"), "fd %d is %s", fd, link);
		if (is_object(fd)) {
			ASSERT_MSG(is_keep(fd, objects, 4), "fd %d is an object we did not make", fd);
			n_obj++;
		} else if (fd < 512 && !strncmp(link, "socket:", 7)) {
			n_sock_own++;
		}
	}
	closedir(d);
	ASSERT_EQ(n_obj, 4); /* /dev/kvm, the VM, its vCPU, the guest_memfd: once each */
	ASSERT_EQ(n_sock_own, 0);

	/* Their library ends: in the keeper's table, with its listener and epoll set. */
	ASSERT_MSG(keeper_fd_dir(kdir, sizeof(kdir)), "no gm-keeper thread");
	d = opendir(kdir);
	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !fd_link(kdir, e->d_name, link, sizeof(link)))
			continue;
		n_keeper++;
		n_peers += !strncmp(link, "socket:", 7);
		n_pidfds += !strcmp(link, "anon_inode:[pidfd]");
		n_ram += !!strstr(link, "memfd:guestmem-ram");
	}
	closedir(d);
	/* A peer per object, the listener, and the link to the spawner whose
	 * child the VM's guest process is (src/gproc/spawner.h). */
	ASSERT_EQ(n_peers, 4 + 1 + 1);
	ASSERT_EQ(n_pidfds, 1);	    /* the VM's guest process */
	ASSERT_TRUE(n_ram >= 1);    /* the converted memslot RAM */
	ASSERT_EQ(n_keeper, 4 + 4 + n_ram); /* and the epoll set */
}

/* guestmem's descriptors: the numbers at or above the floor we did not open. */
static int own_fds(int *out, int max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d)) && n < max) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd >= 512 && fd != dirfd(d))
			out[n++] = fd;
	}
	closedir(d);
	return n;
}

/* How many of @dir's entries (a /proc fd directory) link to @what. */
static int count_links(const char *dir, const char *what)
{
	char link[256];
	struct dirent *e;
	DIR *d = opendir(dir);
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && fd_link(dir, e->d_name, link, sizeof(link)) &&
		    !strcmp(link, what))
			n++;
	closedir(d);
	return n;
}

/* Whether @efd's counter is zero (the watcher consumed what was written). */
static bool efd_consumed(int efd)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/*
 * An irqfd's watcher (its epoll set, stop eventfd and the copy of the
 * VMM's eventfd) lives in the keeper's table, not the VMM's: the VMM
 * sees only the eventfd it made.  Signalling it still injects.
 */
TEST(irqfd_watcher_out_of_vmm_table)
{
	char kdir[300];
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm, efd, k_ep, k_efd;
	struct kvm_irqfd irqfd = { .gsi = 5 };
	uint64_t one = 1;

	ASSERT_TRUE(kvm >= 0);
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	ASSERT_TRUE(vm >= 0);
	ASSERT_EQ(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_TRUE(efd >= 0);
	/* The keeper's own (its epoll set of object ends) before the irqfd. */
	ASSERT_MSG(keeper_fd_dir(kdir, sizeof(kdir)), "no gm-keeper thread");
	k_ep = count_links(kdir, "anon_inode:[eventpoll]");
	k_efd = count_links(kdir, "anon_inode:[eventfd]");
	irqfd.fd = (uint32_t)efd;
	ASSERT_EQ(ioctl(vm, KVM_IRQFD, &irqfd), 0);

	EXPECT_EQ(count_links("/proc/self/fd", "anon_inode:[eventpoll]"), 0);
	EXPECT_EQ(count_links("/proc/self/fd", "anon_inode:[eventfd]"), 1); /* ours */
	EXPECT_EQ(count_links(kdir, "anon_inode:[eventpoll]"), k_ep + 1);
	EXPECT_EQ(count_links(kdir, "anon_inode:[eventfd]"), k_efd + 2); /* copy, stop */

	/* The watcher, there, still sees a signal: it consumes the counter. */
	ASSERT_EQ(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
	ASSERT_WAIT(efd_consumed(efd), 5000);

	irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
	ASSERT_EQ(ioctl(vm, KVM_IRQFD, &irqfd), 0);
	EXPECT_EQ(count_links(kdir, "anon_inode:[eventfd]"), k_efd + 1); /* the stop */
	EXPECT_EQ(close(vm), 0);
	/* Released (the keeper sees the last close): the watcher's go too. */
	ASSERT_WAIT(count_links(kdir, "anon_inode:[eventpoll]") == k_ep, 5000);
	EXPECT_EQ(count_links(kdir, "anon_inode:[eventfd]"), k_efd);
	close(efd);
	close(kvm);
}

TEST(own_fds_answer_ebadf)
{
	struct setup s;
	int fds[256], n;
	struct stat st;
	char c, link[64], path[64], buf[64];

	setup_vm(&s);
	ASSERT_EQ(guest_reads(&s), 0x5a5a);
	n = own_fds(fds, 256);
	ASSERT_MSG(n >= 3, "guestmem holds %d descriptors at or above 512", n);
	for (int i = 0; i < n; i++) {
		int fd = fds[i];

		ASSERT_ERRNO(close(fd), EBADF);
		ASSERT_ERRNO(syscall(SYS_close, fd), EBADF);
		ASSERT_ERRNO(fcntl(fd, F_GETFD), EBADF);
		ASSERT_ERRNO(fstat(fd, &st), EBADF);
		ASSERT_ERRNO(read(fd, &c, 1), EBADF);
		ASSERT_ERRNO(dup(fd), EBADF);
		ASSERT_ERRNO(syscall(SYS_dup, fd), EBADF);
		ASSERT_ERRNO(dup2(fd, 100), EBADF);
		ASSERT_ERRNO(dup2(0, fd), EBUSY);
		ASSERT_ERRNO(syscall(SYS_dup3, 0, fd, 0), EBUSY);
		ASSERT_TRUE(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED);
		ASSERT_EQ(errno, EBADF);
		/* Its /proc link is not there either (the kernel: no such fd)... */
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ASSERT_ERRNO(open(link, O_RDONLY), ENOENT);
		ASSERT_ERRNO(stat(link, &st), ENOENT);
		ASSERT_ERRNO(readlink(link, buf, sizeof(buf)), ENOENT);
		ASSERT_ERRNO(access(link, F_OK), ENOENT);
		snprintf(path, sizeof(path), "/dev/fd/%d", fd);
		ASSERT_ERRNO(open(path, O_RDONLY), ENOENT);
		/* ...but it is still open: guestmem keeps using it. */
		ASSERT_EQ(syscall(SYS_faccessat, AT_FDCWD, link, F_OK), 0);
	}
	/* As fd arguments of KVM ioctls: not open (fget fails: EBADF). */
	{
		struct kvm_userspace_memory_region2 r2 = {
			.slot = 5, .flags = KVM_MEM_GUEST_MEMFD, .guest_phys_addr = 1ULL << 32,
			.memory_size = 4096, .userspace_addr = (uintptr_t)s.shared,
			.guest_memfd = (uint32_t)fds[0] };
		struct kvm_ioeventfd io = { .addr = 0x99, .len = 1, .fd = fds[0],
					    .flags = KVM_IOEVENTFD_FLAG_PIO };

		ASSERT_ERRNO(ioctl(s.m.fd, KVM_SET_USER_MEMORY_REGION2, &r2), EBADF);
		ASSERT_ERRNO(ioctl(s.m.fd, KVM_IOEVENTFD, &io), EBADF);
	}
	/* Not ours: the kernel's own answers. */
	ASSERT_ERRNO(close_range(10, 5, 0), EINVAL);
	ASSERT_EQ(guest_reads(&s), 0x5a5a);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
