// SPDX-License-Identifier: MIT
/*
 * test_isolation: a VMM under `guestmem exec` cannot reach the guest's
 * private memory (issue 10).  A plain-libc program: x86 guest code writes
 * 4 KiB of private memory with words made from a seed, in a software-
 * protected VM; the VMM then tries every route a process has to memory
 * and to files, and a forked child tries again:
 *
 *   - its own mappings (/proc/self/maps) and descriptors (/proc/self/fd);
 *   - every byte of its own readable memory (through /proc/self/mem);
 *   - the guest process, which does hold the pages: /proc/PID/mem,
 *     process_vm_readv, /proc/PID/fd, /proc/PID/map_files, pidfd_getfd,
 *     ptrace.
 *
 * None may show a private word or succeed.  Then the guest reads the page
 * back and must find exactly what it wrote.  The secret words never exist
 * in the VMM: it keeps only their images under a bijection, and maps each
 * word it scans the same way before looking it up.
 *
 * Run as root (CI), the scenario runs in a child that became uid 65534
 * first: CAP_SYS_PTRACE passes every check, and nothing in user space
 * holds against root (see the README).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <grp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <guestmem/sys.h>

/* A libc program: the x86_vm.h helpers through libc, which the preload routes. */
#define guestmem_sys_open open
#define guestmem_sys_close close
#define guestmem_sys_ioctl ioctl
#define guestmem_sys_mmap mmap
#define guestmem_sys_munmap munmap
#include "../unit/x86_vm.h"
#include "../unit/proc_routes.h"

#define PRIV_GPA 0x200000ULL
#define PRIV_SIZE 0x200000ULL
#define NWORDS 512 /* one page of secret words */
#define SEED 0x9e3779b97f4a7c15ULL
#define PORT_WRITTEN 0x10
#define PORT_CHECKED 0x11

/*
 * The guest, at CODE, in long mode: rdi = seed.  Writes NWORDS xorshift64
 * words to PRIV_GPA, OUT to PORT_WRITTEN; then checks them, OUT to
 * PORT_CHECKED with al = 0 if every word read back as written; HLT.
 * No secret word is left in a register at an exit: registers are not
 * private memory (the VMM reads them with KVM_GET_REGS, as with KVM).
 */
extern const uint8_t guest_begin[], guest_end[];
__asm__(".pushsection .rodata\n"
	"guest_begin:\n"
	"	mov %rdi, %rax\n"
	"	mov $0x200000, %esi\n"
	"	mov $512, %ecx\n"
	"1:	mov %rax, %rdx\n shl $13, %rdx\n xor %rdx, %rax\n"
	"	mov %rax, %rdx\n shr $7, %rdx\n xor %rdx, %rax\n"
	"	mov %rax, %rdx\n shl $17, %rdx\n xor %rdx, %rax\n"
	"	mov %rax, (%rsi)\n"
	"	add $8, %rsi\n"
	"	dec %ecx\n"
	"	jnz 1b\n"
	"	xor %eax, %eax\n" /* registers are the VMM's to read (KVM_GET_REGS) */
	"	mov $0x10, %edx\n"
	"	out %al, (%dx)\n"
	"	mov %rdi, %rax\n"
	"	mov $0x200000, %esi\n"
	"	mov $512, %ecx\n"
	"	xor %r8d, %r8d\n"
	"2:	mov %rax, %rdx\n shl $13, %rdx\n xor %rdx, %rax\n"
	"	mov %rax, %rdx\n shr $7, %rdx\n xor %rdx, %rax\n"
	"	mov %rax, %rdx\n shl $17, %rdx\n xor %rdx, %rax\n"
	"	mov (%rsi), %r9\n"
	"	xor %rax, %r9\n"
	"	or %r9, %r8\n"
	"	add $8, %rsi\n"
	"	dec %ecx\n"
	"	jnz 2b\n"
	"	xor %eax, %eax\n"
	"	test %r8, %r8\n"
	"	setnz %al\n"
	"	mov $0x11, %edx\n"
	"	out %al, (%dx)\n"
	"	hlt\n"
	"guest_end:\n"
	".popsection");

/* ---- the secret, kept only as images ---------------------------------------- */

/* A bijection of 64-bit words (odd multiplier, then an added constant). */
static uint64_t image(uint64_t w)
{
	return w * 0xd6e8feb86659fd93ULL + 0x5851f42d4c957f2dULL;
}

static uint64_t images[NWORDS]; /* sorted */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void make_images(void)
{
	uint64_t x = SEED;

	for (int i = 0; i < NWORDS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		images[i] = image(x);
	}
	qsort(images, NWORDS, sizeof(images[0]), cmp_u64);
}

static bool is_secret(uint64_t w)
{
	uint64_t key = image(w);

	return bsearch(&key, images, NWORDS, sizeof(images[0]), cmp_u64) != NULL;
}

/* ---- routes through this process ------------------------------------------- */

/* Lines of /proc/self/maps naming a guest_memfd's storage (a memfd). */
static int private_mappings(void)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0;

	ASSERT_TRUE(f != NULL);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "guestmem-gmem") || strstr(line, "secretmem");
	fclose(f);
	return n;
}

/* Descriptors of a guest_memfd's storage in /proc/self/fd (not the
 * guest_memfd's own fd, "anon_inode:[kvm-gmem]", which is the VMM's). */
static int private_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[300], target[256];
	int n = 0;

	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d))) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		/* Raw: the preload hides guestmem's own descriptors from libc. */
		len = syscall(SYS_readlink, path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		n += strstr(target, "guestmem-gmem") || strstr(target, "secretmem");
	}
	closedir(d);
	return n;
}

static sigjmp_buf load_fault;

static void on_load_fault(int sig)
{
	siglongjmp(load_fault, sig);
}

/*
 * Secret words in [lo, hi) read by plain loads: what /proc/self/mem
 * cannot read (memfd_secret pages, which the kernel will not pin) a load
 * still can.  A fault (a file mapping past its end) ends the range.
 */
static long secrets_by_load(unsigned long lo, unsigned long hi)
{
	struct sigaction sa = { .sa_handler = on_load_fault }, old_segv, old_bus;
	volatile long found = 0;
	volatile unsigned long a = lo;

	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	if (!sigsetjmp(load_fault, 1))
		for (; a < hi; a += 8)
			found += is_secret(*(volatile uint64_t *)a);
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return found;
}

/* Secret words anywhere in this process's readable memory. */
static long secrets_in_memory(void)
{
	static uint64_t buf[1 << 13];
	char line[512], perms[8];
	unsigned long lo, hi;
	long found = 0;
	FILE *maps = fopen("/proc/self/maps", "r");
	int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);

	ASSERT_TRUE(maps != NULL && mem >= 0);
	while (fgets(line, sizeof(line), maps)) {
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
		    strstr(line, "[vvar"))
			continue;
		/*
		 * A sanitizer's shadow: terabytes of unnamed memory.  Nothing
		 * of guestmem's is that large and unnamed (its reservations
		 * are PROT_NONE; file mappings are named).
		 */
		if (hi - lo > (1UL << 32) && !strchr(line, '/'))
			continue;
#ifdef __SANITIZE_ADDRESS__
		/*
		 * ASan's shadow on x86-64 (one byte per eight, never data) is
		 * all of [0x7fff8000, 0x10007fff8000), in pieces that touched
		 * parts split below 4 GiB: reading them took over a minute
		 * with the machine busy.  Nothing else can be mapped there.
		 */
		if (lo >= 0x7fff8000UL && hi <= 0x10007fff8000UL && !strchr(line, '/'))
			continue;
#endif
		for (unsigned long a = lo; a < hi; a += sizeof(buf)) {
			size_t want = hi - a < sizeof(buf) ? hi - a : sizeof(buf);
			ssize_t n = pread(mem, buf, want, (off_t)a);

			if (n <= 0) {
				found += secrets_by_load(a, hi);
				break;
			}
			for (size_t i = 0; i < (size_t)n / 8; i++)
				found += is_secret(buf[i]);
		}
	}
	memset(buf, 0, sizeof(buf));
	close(mem);
	fclose(maps);
	return found;
}

/* ---- routes to the guest process ------------------------------------------- */

/* The VM's guest process: this process's child running the stub. */
static pid_t guest_process(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char want[32];
	pid_t found = -1;

	/* The stub names itself after the process it serves: "gproc:PID". */
	snprintf(want, sizeof(want), "gproc:%d\n", (int)getpid());
	ASSERT_TRUE(d != NULL);
	while ((e = readdir(d)) && found < 0) {
		char path[300], buf[32];
		ssize_t n;
		int fd;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (!strcmp(buf, want))
			found = atoi(e->d_name);
	}
	closedir(d);
	return found;
}

/* ---- the scenario ------------------------------------------------------------- */

static void run_until(struct vm *m, uint16_t port)
{
	ASSERT_EQ(ioctl(m->vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(m->run->io.port, port);
}

/*
 * A software-protected VM with PRIV_SIZE of private memory at PRIV_GPA
 * (a guest_memfd, returned), the guest at CODE, run until it wrote its
 * private page.
 */
static uint8_t *priv_view; /* the private range's shared view (its memslot's host memory) */

static int private_vm_written(struct vm *m)
{
	struct kvm_create_guest_memfd g = { .size = PRIV_SIZE };
	struct kvm_memory_attributes attr = { .address = PRIV_GPA, .size = PRIV_SIZE,
					      .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };
	struct kvm_userspace_memory_region2 r = { .slot = 1, .flags = KVM_MEM_GUEST_MEMFD,
						  .guest_phys_addr = PRIV_GPA,
						  .memory_size = PRIV_SIZE };
	struct kvm_regs regs;
	void *shared;
	int gfd;

	vm_create(m, KVM_X86_SW_PROTECTED_VM, false);
	gfd = ioctl(m->fd, KVM_CREATE_GUEST_MEMFD, &g);
	ASSERT_TRUE(gfd >= 0);
	shared = mmap(NULL, PRIV_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(shared != MAP_FAILED);
	priv_view = shared;
	r.userspace_addr = (uintptr_t)shared;
	r.guest_memfd = (uint32_t)gfd;
	ASSERT_EQ(ioctl(m->fd, KVM_SET_USER_MEMORY_REGION2, &r), 0);
	ASSERT_EQ(ioctl(m->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	memcpy(m->mem + CODE, guest_begin, (size_t)(guest_end - guest_begin));
	vm_start(m, CODE);
	ASSERT_EQ(ioctl(m->vcpu, KVM_GET_REGS, &regs), 0);
	regs.rdi = SEED;
	ASSERT_EQ(ioctl(m->vcpu, KVM_SET_REGS, &regs), 0);
	run_until(m, PORT_WRITTEN);
	return gfd;
}

static void scenario(void)
{
	struct vm m;
	pid_t gp, child;
	int status;

	make_images();
	private_vm_written(&m);
	/* The guest wrote its private page; the guest process holds it. */
	gp = guest_process();
	ASSERT_TRUE(gp > 0);
	EXPECT_EQ(private_mappings(), 0);
	EXPECT_EQ(private_fds(), 0);
	EXPECT_EQ(secrets_in_memory(), 0);
	EXPECT_EQ(proc_routes(gp, PRIV_GPA), 0);
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0)
		_exit((private_mappings() ? 1 : 0) | (private_fds() ? 2 : 0) |
		      (secrets_in_memory() ? 4 : 0) | (proc_routes(gp, PRIV_GPA) ? 8 : 0));
	ASSERT_EQ(waitpid(child, &status, 0), child);
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0);
	/* The guest reads back exactly what it wrote. */
	run_until(&m, PORT_CHECKED);
	EXPECT_EQ(((uint8_t *)m.run)[m.run->io.data_offset], 0);
	/* The scan finds a secret word where there is one. */
	volatile uint64_t *probe = malloc(sizeof(*probe));
	uint64_t x = SEED;

	ASSERT_TRUE(probe != NULL);
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*probe = x;
	x = 0;
	EXPECT_TRUE(secrets_in_memory() >= 1);
	*probe = 0;
	free((void *)probe);
}

/* The scenario as a user that is not root, in a child if we are root. */
TEST(private_memory_unreachable)
{
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		scenario();
		return;
	}
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* A user's VMM, dumpable as any process it starts (setuid cleared it). */
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534) ||
		    prctl(PR_SET_DUMPABLE, 1))
			_exit(99);
		scenario();
		_exit(test_failed() ? 1 : 0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

/*
 * The guest process is not the VMM's: the spawner `guestmem exec` started
 * (guestmemd) is its parent, in a session of its own.  Run with --user
 * (GM_TEST_GUEST_UID names that user), it is another user's, and the VMM
 * can neither signal it, nor renice it, nor read or set its limits; the
 * guest still reads back what it wrote.
 */
static int not_ours(void)
{
	const char *want_uid = getenv("GM_TEST_GUEST_UID");
	char path[64], name[32] = "";
	struct rlimit rl;
	struct vm m;
	pid_t gp, parent;
	int bad = 0, fd;
	ssize_t n;

	private_vm_written(&m);
	gp = guest_process();
	if (gp <= 0)
		return 1;
	parent = (pid_t)test_proc_status(gp, "PPid");
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)parent);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = fd < 0 ? -1 : read(fd, name, sizeof(name) - 1);
	if (fd >= 0)
		close(fd);
	if (n > 0)
		name[n] = '\0';
	bad |= (parent == getpid() || strcmp(name, "guestmemd\n")) << 1;
	bad |= (getsid(gp) == getsid(0)) << 2;
	/* The user --user asked for, else the VMM's own, as its child's would be. */
	bad |= (test_proc_status(gp, "Uid") != (want_uid ? atol(want_uid) : (long)getuid())) << 3;
	/* Root reaches every process: these need a VMM that is not root. */
	if (want_uid && geteuid() != 0) {
		bad |= !(kill(gp, SIGKILL) == -1 && errno == EPERM) << 4;
		bad |= !(setpriority(PRIO_PROCESS, (id_t)gp, 19) == -1 && errno == EPERM) << 5;
		bad |= !(prlimit(gp, RLIMIT_AS, NULL, &rl) == -1 && errno == EPERM) << 6;
	}
	/* The guest reads back exactly what it wrote. */
	run_until(&m, PORT_CHECKED);
	bad |= (((uint8_t *)m.run)[m.run->io.data_offset] != 0) << 7;
	vm_close(&m);
	return bad;
}

static void expect_not_ours(void)
{
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		EXPECT_EQ(not_ours(), 0);
		return;
	}
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* A user's VMM (root passes every check); bits: see not_ours(). */
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(99);
		_exit(not_ours());
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

TEST(guest_process_not_ours)
{
	expect_not_ours();
}

/*
 * The same for a VMM that closes every descriptor it did not open before
 * it makes its first VM (a daemon's start): the spawner's door is
 * guestmem's from the image's start, so the close skips it.
 */
TEST(guest_process_not_ours_after_close_range)
{
	ASSERT_EQ(close_range(3, ~0U, 0), 0);
	expect_not_ours();
}

/*
 * The same with a raw close_range (glibc's closefrom() makes that call
 * itself).  This case runs in a fork child of an image that holds no
 * object, whose listener starts only before its first object: nobody
 * answers the call for guestmem, the spawner's door goes with everything
 * else, and the first object gets it back from the session's helper
 * (which gives it to its own user only: run as root, this VMM stays root,
 * and what only a VMM that is not root can check is
 * guest_process_not_ours's).
 */
TEST(guest_process_not_ours_after_raw_close_range)
{
	ASSERT_EQ(syscall(SYS_close_range, 3, ~0U, 0), 0);
	EXPECT_EQ(not_ours(), 0);
}

/* Exited (a zombie: gproc reaps it when the VM goes) or gone. */
static bool process_gone(pid_t pid)
{
	char path[64], state;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	state = test_stat_state(path);
	return !state || state == 'Z' || state == 'X';
}

/*
 * The VMM may kill the guest process (same uid): what needed it fails
 * with EIO, at once; nothing hangs or kills the VMM; what the private
 * memory held is gone with it.
 */
TEST(guest_process_killed)
{
	struct vm m;
	int gfd = private_vm_written(&m), r;
	pid_t gp = guest_process();

	ASSERT_TRUE(gp > 0);
	ASSERT_EQ(kill(gp, SIGKILL), 0);
	/* SIGKILL is delivered asynchronously: wait for the process to be gone. */
	for (unsigned step = 0; !process_gone(gp);)
		test_nap(&step);
	/* A VMM's loop: a signal (the harness's, a child's) interrupts KVM_RUN. */
	for (int i = 0; i < 100 && (r = ioctl(m.vcpu, KVM_RUN, 0)) == -1 && errno == EINTR; i++)
		;
	EXPECT_EQ(r, -1);
	EXPECT_EQ(errno, EIO);
	/* the VM is dead, as KVM's after kvm_vm_dead(): EIO from now on */
	errno = 0;
	EXPECT_EQ(ioctl(m.fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), -1);
	EXPECT_EQ(errno, EIO);
	/*
	 * The guest_memfd lives on, as the kernel's does after kvm_vm_dead():
	 * fallocate succeeds (nothing can map the pages any more), with both
	 * backings, at its first page (allocated ahead before the death) and
	 * far past it; a punch frees what went with the holder.
	 */
	EXPECT_EQ(fallocate(gfd, FALLOC_FL_KEEP_SIZE, PRIV_SIZE / 2, 4096), 0);
	EXPECT_EQ(fallocate(gfd, FALLOC_FL_KEEP_SIZE, PRIV_SIZE - 4096, 4096), 0);
	EXPECT_EQ(fallocate(gfd, FALLOC_FL_KEEP_SIZE, 0, PRIV_SIZE), 0);
	EXPECT_EQ(fallocate(gfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PRIV_SIZE), 0);
	EXPECT_EQ(fallocate(gfd, FALLOC_FL_KEEP_SIZE, PRIV_SIZE, 4096), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(close(gfd), 0);
	vm_close(&m);
}

/*
 * KVM's emulator reads and writes guest memory through the memslot's host
 * mapping: an emulated instruction's operand in private memory is the
 * shared view's, never a private byte.  Here OUTSB's source: the byte the
 * VMM put at the shared address, not the guest's private word there.
 * (Before session 15 KVM_RUN failed with EFAULT.)
 */
TEST(emulated_access_to_private_memory)
{
	static const uint8_t outsb[] = {
		0xbe, 0x00, 0x00, 0x20, 0x00, /* mov $0x200000, %esi */
		0xba, 0x10, 0x00, 0x00, 0x00, /* mov $0x10, %edx */
		0xb9, 0x01, 0x00, 0x00, 0x00, /* mov $1, %ecx */
		0xf3, 0x6e,		      /* rep outsb */
		0xf4,			      /* hlt */
	};
	struct vm m;
	int gfd = private_vm_written(&m);

	priv_view[0] = 0xa7;
	memcpy(m.mem + CODE + 0x1000, outsb, sizeof(outsb));
	vm_start(&m, CODE + 0x1000);
	ASSERT_EQ(ioctl(m.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_IO);
	EXPECT_EQ(m.run->io.direction, KVM_EXIT_IO_OUT);
	EXPECT_EQ(m.run->io.port, 0x10);
	EXPECT_EQ(m.run->io.size, 1);
	EXPECT_EQ(m.run->io.count, 1);
	EXPECT_EQ(*((uint8_t *)m.run + m.run->io.data_offset), 0xa7);
	EXPECT_EQ(close(gfd), 0);
	vm_close(&m);
}

/*
 * The CPU's own accesses reach private memory, as KVM lets the hardware
 * walk page tables and deliver events through stage-2: a guest whose
 * page tables, IDT and stack are all private (as a confidential guest's
 * are) runs.  At CODE + 0x3000 the guest builds, in its private memory,
 * 4-level page tables mapping 0-2 MiB with 4 KiB pages (PML4 at
 * PRIV + 0x1000 .. PT at PRIV + 0x4000, no A or D bits) and the private
 * 2 MiB with a large page, copies the IDT there, moves its stack there,
 * loads CR3, says so on PORT_WRITTEN, then executes UD2.  Its #UD handler
 * reports the frame's RIP, the PT entry of its code page (the walk set A)
 * and the PDE of the private 2 MiB (the frame's push set A and D), and
 * returns with IRETQ past the UD2; the guest then loads the IDT again
 * from a pointer on its private stack and executes INT3, whose handler
 * reports its frame's RIP.  IRET and LIDT are instructions the CPU runs
 * under KVM (guestmem emulates them only because the guest process runs
 * at CPL 3): their operands are the private stack's, not the shared
 * view's, where the frame would read as zeroes.
 */
extern const uint8_t tables_begin[], tables_ud2[], tables_int3[], tables_handler[],
	tables_bp[], tables_end[];
__asm__(".pushsection .rodata\n"
	"tables_begin:\n"
	"	mov $0x204000, %edi\n"
	"	xor %eax, %eax\n"
	"	mov $512, %ecx\n"
	"1:	lea 3(%rax), %rdx\n"
	"	mov %rdx, (%rdi)\n"
	"	add $8, %rdi\n"
	"	add $0x1000, %rax\n"
	"	dec %ecx\n"
	"	jnz 1b\n"
	"	movq $0x204003, 0x203000\n"
	"	movq $0x200083, 0x203008\n"
	"	movq $0x203003, 0x202000\n"
	"	movq $0x202003, 0x201000\n"
	"	mov $0x5000, %esi\n"
	"	mov $0x205000, %edi\n"
	"	mov $512, %ecx\n"
	"	rep movsq\n"
	"	sub $16, %rsp\n"
	"	movw $0xfff, (%rsp)\n"
	"	movq $0x205000, 2(%rsp)\n"
	"	lidt (%rsp)\n"
	"	mov $0x208000, %rsp\n"
	"	mov $0x201000, %eax\n"
	"	mov %rax, %cr3\n"
	"	mov $1, %eax\n"
	"	out %eax, $0x10\n"
	"tables_ud2:\n"
	"	ud2\n"
	/* Back from the handler's IRETQ (its frame on the private stack): an
	 * IDT pointer on the private stack for LIDT, then INT3 through it. */
	"	sub $16, %rsp\n"
	"	movw $0xfff, (%rsp)\n"
	"	movq $0x205000, 2(%rsp)\n"
	"	lidt (%rsp)\n"
	"	add $16, %rsp\n"
	"tables_int3:\n"
	"	int3\n"
	"tables_handler:\n" /* #UD */
	"	mov (%rsp), %rax\n"
	"	out %eax, $0x11\n"
	"	mov 0x204098, %rax\n" /* the PTE of CODE + 0x3000 */
	"	out %eax, $0x11\n"
	"	mov 0x203008, %rax\n"
	"	out %eax, $0x11\n"
	"	addq $2, (%rsp)\n" /* past the UD2 */
	"	iretq\n"
	"tables_bp:\n" /* #BP */
	"	mov (%rsp), %rax\n"
	"	out %eax, $0x13\n"
	"	hlt\n"
	"tables_end:\n"
	".popsection");

#define TABLES_CODE (CODE + 0x3000)

static uint32_t out32(struct vm *m, uint16_t port)
{
	uint32_t v;

	run_until(m, port);
	EXPECT_EQ(m->run->io.size, 4);
	memcpy(&v, (uint8_t *)m->run + m->run->io.data_offset, 4);
	return v;
}

TEST(cpu_reaches_private_tables)
{
	uint64_t handler = TABLES_CODE + (uint64_t)(tables_handler - tables_begin);
	uint64_t bp = TABLES_CODE + (uint64_t)(tables_bp - tables_begin);
	struct kvm_translation tr = { 0 };
	uint8_t gate[16] = { 0 };
	struct vm m;
	int gfd = private_vm_written(&m);

	/* #UD: a 64-bit interrupt gate to the handler, in the shared IDT the guest copies. */
	gate[0] = (uint8_t)handler, gate[1] = (uint8_t)(handler >> 8);
	gate[2] = 8; /* CS */
	gate[5] = 0x8e;
	gate[6] = (uint8_t)(handler >> 16), gate[7] = (uint8_t)(handler >> 24);
	memcpy(m.mem + 0x5000 + 6 * 16, gate, sizeof(gate));
	gate[0] = (uint8_t)bp, gate[1] = (uint8_t)(bp >> 8); /* #BP */
	gate[6] = (uint8_t)(bp >> 16), gate[7] = (uint8_t)(bp >> 24);
	memcpy(m.mem + 0x5000 + 3 * 16, gate, sizeof(gate));
	memcpy(m.mem + TABLES_CODE, tables_begin, (size_t)(tables_end - tables_begin));
	vm_start(&m, TABLES_CODE);
	/* Before: a walk of the private tables faulted, and the vCPU shut down. */
	EXPECT_EQ(out32(&m, PORT_WRITTEN), 1);
	/* KVM's software walker reads the shared view, where the VMM wrote no
	 * tables: KVM_TRANSLATE finds nothing (and reads nothing private). */
	tr.linear_address = TABLES_CODE;
	ASSERT_EQ(ioctl(m.vcpu, KVM_TRANSLATE, &tr), 0);
	EXPECT_EQ(tr.valid, 0);
	EXPECT_EQ(out32(&m, PORT_CHECKED), (uint32_t)(TABLES_CODE + (uint64_t)(tables_ud2 - tables_begin)));
	EXPECT_EQ(out32(&m, PORT_CHECKED) & 0x23, 0x23);       /* P, RW, A */
	EXPECT_EQ(out32(&m, PORT_CHECKED) & 0xe3, 0xe3);       /* and D, PS */
	/* Before its IRET read the private stack: the frame read as zeroes. */
	EXPECT_EQ(out32(&m, 0x13), (uint32_t)(TABLES_CODE + (uint64_t)(tables_int3 - tables_begin) + 1));
	ASSERT_EQ(ioctl(m.vcpu, KVM_RUN, 0), 0);
	EXPECT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	/* Nothing of it is in the VMM's view of that memory. */
	EXPECT_EQ(private_mappings(), 0);
	EXPECT_EQ(close(gfd), 0);
	vm_close(&m);
}

/*
 * The CPU's accesses to held private tables race with invalidations: two
 * vCPUs on the private tables above increment 16 private data pages and
 * OUT to PORT_LOOP, for ever, while this thread punches those pages (each
 * punch zaps their shadow, so the next touch walks the private tables
 * again, under mmu_lock for read, while the next punch wants it for
 * write).  No KVM_RUN may fail, hang or see another exit.
 */
#define PORT_LOOP 0x12
#define DATA_GPA 0x210000ULL
#define DATA_PAGES 16
#define TOUCHER (CODE + 0x4000)

extern const uint8_t toucher_begin[], toucher_end[];
__asm__(".pushsection .rodata\n"
	"toucher_begin:\n" /* rdi: the first data page */
	"1:	mov $16, %ecx\n"
	"	mov %rdi, %rdx\n"
	"2:	incq (%rdx)\n"
	"	add $0x1000, %rdx\n"
	"	dec %ecx\n"
	"	jnz 2b\n"
	"	mov $0x12, %edx\n"
	"	out %eax, (%dx)\n"
	"	jmp 1b\n"
	"toucher_end:\n"
	".popsection");

struct toucher {
	int vcpu;
	struct kvm_run *run;
	long runs;
	int bad; /* errno of a failed KVM_RUN, or 1000 + an unexpected exit */
	pthread_t thread;
};

static volatile int touchers_stop;

static void *toucher_thread(void *arg)
{
	struct toucher *t = arg;

	while (!touchers_stop && !t->bad) {
		if (ioctl(t->vcpu, KVM_RUN, 0))
			t->bad = errno;
		else if (t->run->exit_reason != KVM_EXIT_IO || t->run->io.port != PORT_LOOP)
			t->bad = 1000 + (int)t->run->exit_reason;
		else
			t->runs++;
	}
	return NULL;
}

TEST(private_tables_under_punch)
{
	struct toucher t[2] = { { 0 }, { 0 } };
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vm m;
	int gfd = private_vm_written(&m);

	memcpy(m.mem + TABLES_CODE, tables_begin, (size_t)(tables_end - tables_begin));
	memcpy(m.mem + TOUCHER, toucher_begin, (size_t)(toucher_end - toucher_begin));
	vm_start(&m, TABLES_CODE);
	ASSERT_EQ(out32(&m, PORT_WRITTEN), 1); /* on its private tables now */
	ASSERT_EQ(ioctl(m.vcpu, KVM_GET_SREGS, &sregs), 0);
	ASSERT_EQ(ioctl(m.vcpu, KVM_GET_REGS, &regs), 0);
	regs.rip = TOUCHER;
	regs.rdi = DATA_GPA;
	ASSERT_EQ(ioctl(m.vcpu, KVM_SET_REGS, &regs), 0);
	t[0] = (struct toucher){ .vcpu = m.vcpu, .run = m.run };
	/* A second vCPU on the same tables from its first instruction. */
	t[1].vcpu = ioctl(m.fd, KVM_CREATE_VCPU, 1);
	ASSERT_TRUE(t[1].vcpu >= 0);
	t[1].run = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, t[1].vcpu, 0);
	ASSERT_TRUE(t[1].run != MAP_FAILED);
	ASSERT_EQ(ioctl(t[1].vcpu, KVM_SET_SREGS, &sregs), 0);
	ASSERT_EQ(ioctl(t[1].vcpu, KVM_SET_REGS, &regs), 0);
	touchers_stop = 0;
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&t[i].thread, NULL, toucher_thread, &t[i]), 0);
	for (int n = 0; n < 400; n++) {
		uint64_t page = (uint64_t)(n % (DATA_PAGES + 1));
		off_t off = (off_t)(DATA_GPA - PRIV_GPA + (page < DATA_PAGES ? page * 4096 : 0));
		off_t len = page < DATA_PAGES ? 4096 : DATA_PAGES * 4096;

		EXPECT_EQ(fallocate(gfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len), 0);
		usleep(500);
	}
	touchers_stop = 1;
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(pthread_join(t[i].thread, NULL), 0);
		DIAG("vCPU %d: %ld runs", i, t[i].runs);
		EXPECT_EQ(t[i].bad, 0);
		EXPECT_TRUE(t[i].runs > 0);
	}
	munmap(t[1].run, 3 * 4096);
	EXPECT_EQ(close(t[1].vcpu), 0);
	EXPECT_EQ(close(gfd), 0);
	vm_close(&m);
}

int main(int argc, char **argv)
{
	const char *backing = getenv("GUESTMEM_BACKING");

	if (backing && !strcmp(backing, "secretmem")) {
		int fd = (int)syscall(447 /* memfd_secret */, O_CLOEXEC);

		if (fd < 0)
			test_skip_all("no memfd_secret on this host");
		else
			close(fd);
	}
	return test_main(argc, argv);
}
