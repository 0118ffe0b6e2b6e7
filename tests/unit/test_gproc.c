// SPDX-License-Identifier: MIT
/*
 * test_gproc - the guest process (src/gproc): hand-assembled x86-64 machine
 * code run natively at CPL3 through the gp_* API, no KVM objects.
 *
 * Guest memory is one memfd that the test maps too, so it writes the code
 * and reads what the guest wrote.  Code runs at CODE (read+exec), data at
 * DATA (read+write).  Every case destroys what it creates; a case that
 * fails midway exits, which closes the control socket, and the guest
 * process exits at that EOF (the case "eof_ends_process" checks it).
 */
#include "harness.h"
#include "gproc/gproc.h"
#include "gproc/spawner.h"
#include "proc_routes.h"

#include <asm/prctl.h>
#include <dirent.h>
#include <elf.h>
#include <sys/prctl.h>
#include <linux/audit.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CODE 0x400000ull
#define DATA 0x600000ull
#define MEM_SIZE (8u << 20)
#define CODE_OFF 0x0u
#define DATA_OFF 0x100000u
#define AREA 0x10000ull

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define RFLAGS_CF 0x1ull
#define RFLAGS_TF 0x100ull
#define RFLAGS_AC 0x40000ull

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI };

struct env {
	struct gp_vm *vm;
	struct gp_vcpu *vcpu;
	int memfd;
	uint8_t *mem;
	uint32_t id;
	struct gp_map maps[2];
};

static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	ASSERT_EQ(gp_vm_create(&e->vm), 0);
	e->memfd = memfd_create("test_gproc", MFD_CLOEXEC);
	ASSERT_TRUE(e->memfd >= 0);
	ASSERT_EQ(ftruncate(e->memfd, MEM_SIZE), 0);
	e->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);
	ASSERT_TRUE(e->mem != MAP_FAILED);
	ASSERT_EQ(gp_vm_add_backing(e->vm, e->memfd, &e->id), 0);
	ASSERT_EQ(gp_vcpu_create(e->vm, &e->vcpu), 0);
	e->maps[0] = (struct gp_map){ CODE, AREA, CODE_OFF, e->id, PROT_READ | PROT_EXEC };
	e->maps[1] = (struct gp_map){ DATA, AREA, DATA_OFF, e->id, PROT_READ | PROT_WRITE };
}

static void env_fini(struct env *e)
{
	gp_vcpu_destroy(e->vcpu);
	gp_vm_destroy(e->vm);
	munmap(e->mem, MEM_SIZE);
	close(e->memfd);
}

static void put_code(struct env *e, const void *code, size_t len)
{
	memcpy(e->mem + CODE_OFF, code, len);
}

static uint8_t *data(struct env *e)
{
	return e->mem + DATA_OFF;
}

/* Run @code from CODE with @c (rip set here); maps applied on every run. */
static void run_code(struct env *e, const void *code, size_t len, struct gp_cpu *c,
		     struct gp_trap *t)
{
	put_code(e, code, len);
	c->rip = CODE;
	ASSERT_EQ(gp_vcpu_run(e->vcpu, c, e->maps, 2, t), 0);
}

static bool proc_gone(pid_t pid)
{
	char path[64], state;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	state = test_stat_state(path);
	/* A zombie is gone for our purpose: it runs nothing. */
	return !state || state == 'Z' || state == 'X';
}

/* The split form's wait, with poll() (no signal handling needed here). */
static int finish_wait(struct gp_vcpu *v, struct gp_cpu *c, struct gp_trap *t)
{
	struct pollfd pfd[GP_NR_POLLFDS];
	int r;

	gp_vcpu_pollfds(v, pfd);
	while ((r = gp_vcpu_finish(v, c, t)) == -EAGAIN)
		poll(pfd, GP_NR_POLLFDS, -1);
	return r;
}

/* ---- the process ------------------------------------------------------------- */

TEST(create_destroy_reaps)
{
	struct gp_vm *vm;
	pid_t pid;

	ASSERT_EQ(gp_vm_create(&vm), 0);
	pid = gp_vm_pid(vm);
	ASSERT_TRUE(pid > 0);
	EXPECT_EQ(kill(pid, 0), 0);
	gp_vm_destroy(vm);
	/* Reaped, not a zombie: the pid no longer exists. */
	ASSERT_ERRNO(kill(pid, 0), ESRCH);
	/* Not a SIGCHLD child: our own waitpid(-1) never saw it. */
	ASSERT_ERRNO(waitpid(-1, NULL, WNOHANG), ECHILD);
}

/* A VMM that exits without destroying its VM: the guest process goes too. */
static void left_behind_process_ends(void)
{
	int p[2];
	pid_t child, gpid = 0;

	ASSERT_EQ(pipe(p), 0);
	child = fork();
	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		struct gp_vm *vm;
		struct gp_vcpu *v;
		pid_t pid = 0;

		/* Leave the VM (and a vCPU) behind: exit without destroying. */
		if (!gp_vm_create(&vm) && !gp_vcpu_create(vm, &v))
			pid = gp_vm_pid(vm);
		(void)!write(p[1], &pid, sizeof(pid));
		_exit(0);
	}
	close(p[1]);
	ASSERT_EQ(read(p[0], &gpid, sizeof(gpid)), (ssize_t)sizeof(gpid));
	ASSERT_TRUE(gpid > 0);
	ASSERT_EQ(waitpid(child, NULL, 0), child);
	ASSERT_WAIT(proc_gone(gpid), 10000);
}

TEST(eof_ends_process)
{
	left_behind_process_ends();
}

/* Started by the spawner (as under guestmem exec): it ends it too. */
TEST(eof_ends_process_spawned)
{
	char env[64];
	int door = gp_spawner_start(NULL, false, env, sizeof(env));

	ASSERT_TRUE(door >= 0);
	ASSERT_EQ(setenv(GP_SPAWNER_ENV, env, 1), 0);
	left_behind_process_ends();
	close(door);
}

TEST(killed_process_gives_eio)
{
	struct env e;
	static const uint8_t spin[] = { 0xeb, 0xfe }; /* jmp . */
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;

	env_init(&e);
	put_code(&e, spin, sizeof(spin));
	c.rip = CODE;
	ASSERT_EQ(gp_vcpu_enter(e.vcpu, &c, e.maps, 2), 0);
	ASSERT_EQ(kill(gp_vm_pid(e.vm), SIGKILL), 0);
	ASSERT_EQ(finish_wait(e.vcpu, &c, &t), -EIO);
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), -EIO);
	uint32_t id;
	ASSERT_EQ(gp_vm_add_backing(e.vm, e.memfd, &id), -EIO);
	ASSERT_EQ(gp_vm_unmap(e.vm, DATA, 4096), -EIO);
	env_fini(&e);
}

static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((d = readdir(dir)))
		n += d->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* The lowest mapped address of the process (/proc/PID/maps is sorted). */
/* The first mapping of @pid's lower half outside the reserved window
 * (its start), or 0 if none: the stub's image, slots only, no kernel
 * stack, vDSO or vvar. */
static unsigned long long stray_mapping(pid_t pid)
{
	char path[64], line[512];
	unsigned long long lo, hi, stray = 0;
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "r");
	if (!f)
		return ~0ull;
	while (!stray && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx-%llx", &lo, &hi) != 2) {
			stray = ~0ull;
			break;
		}
		n++;
		if (lo < GP_USER_TOP && (lo < GP_RESV_BASE || hi > GP_RESV_END))
			stray = lo;
	}
	fclose(f);
	return n ? stray : ~0ull;
}

/* The process holds its control socket, the backings it was given and one
 * eventfd per vCPU, nothing else; and nothing of it lies in the guest
 * window, which is all the guest's. */
TEST(process_hygiene)
{
	struct gp_vm *vm;
	struct gp_vcpu *v;
	uint32_t id;
	pid_t pid;
	int fd = memfd_create("hyg", MFD_CLOEXEC);

	/* Dumpable, so that this process may look into /proc/PID (below). */
	ASSERT_EQ(gp_vm_create_flags(&vm, GP_VM_DUMPABLE), 0);
	pid = gp_vm_pid(vm);
	EXPECT_EQ(count_fds(pid), 1);
	ASSERT_EQ(gp_vm_add_backing(vm, fd, &id), 0);
	EXPECT_EQ(count_fds(pid), 2);
	ASSERT_EQ(gp_vcpu_create(vm, &v), 0);
	EXPECT_EQ(count_fds(pid), 3);
	EXPECT_MSG(stray_mapping(pid) == 0, "mapping at %#llx", stray_mapping(pid));
	gp_vcpu_destroy(v);
	EXPECT_EQ(count_fds(pid), 2);
	ASSERT_EQ(gp_vm_remove_backing(vm, id), 0);
	EXPECT_EQ(count_fds(pid), 1);
	gp_vm_destroy(vm);
	close(fd);
}

/*
 * What the VMM (the guest process's parent, same uid, no CAP_SYS_PTRACE)
 * can do to a guest process made with @flags: proc_routes() bits.
 */
static int reach_routes(unsigned flags)
{
	struct gp_vm *vm;
	int bits;

	if (gp_vm_create_flags(&vm, flags))
		return -1;
	bits = proc_routes(gp_vm_pid(vm), GP_STUB_TEXT);
	gp_vm_destroy(vm);
	return bits;
}

static int reach_as_user(unsigned flags)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		/* Root's CAP_SYS_PTRACE would pass every check: be a user. */
		if (geteuid() == 0 && (setgroups(0, NULL) || setgid(65534) || setuid(65534)))
			_exit(255);
		_exit(reach_routes(flags) & 0x7f);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* The guest process, which maps guest memory (private pages too), is
 * closed to the VMM: no /proc/PID/mem, process_vm_readv, /proc/PID/fd,
 * map_files, pidfd_getfd or ptrace; a dumpable one shows that each route
 * exists. */
TEST(not_reachable_by_the_vmm)
{
	/* Yama above 1 refuses ptrace-class access to everyone, dumpable or not. */
	if (test_read_long("/proc/sys/kernel/yama/ptrace_scope", 0) <= 1)
		EXPECT_EQ(reach_as_user(GP_VM_DUMPABLE), ROUTE_ALL);
	else
		EXPECT_NE(reach_as_user(GP_VM_DUMPABLE), 0);
	EXPECT_EQ(reach_as_user(0), 0);
}

/* fallocate on a backing the guest process holds: allocate, punch, errors. */
TEST(fallocate_in_the_guest_process)
{
	struct gp_vm *vm;
	struct stat st;
	uint32_t id;
	int fd = memfd_create("falloc", MFD_CLOEXEC);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
	ASSERT_EQ(gp_vm_create(&vm), 0);
	ASSERT_EQ(gp_vm_add_backing(vm, fd, &id), 0);
	ASSERT_EQ(gp_vm_fallocate(vm, id, FALLOC_FL_KEEP_SIZE, 0, 64 << 10), 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	EXPECT_EQ(st.st_blocks * 512, 64 << 10);
	ASSERT_EQ(gp_vm_fallocate(vm, id, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				  16 << 10), 0);
	ASSERT_EQ(fstat(fd, &st), 0);
	EXPECT_EQ(st.st_blocks * 512, 48 << 10);
	EXPECT_EQ(st.st_size, 1 << 20);
	/* the kernel's own answers */
	EXPECT_EQ(gp_vm_fallocate(vm, id, FALLOC_FL_PUNCH_HOLE, 0, 4096), -EOPNOTSUPP);
	EXPECT_EQ(gp_vm_fallocate(vm, id + 1, FALLOC_FL_KEEP_SIZE, 0, 4096), -EBADF);
	EXPECT_EQ(gp_vm_fallocate(vm, GP_MAX_BACKINGS, FALLOC_FL_KEEP_SIZE, 0, 4096), -EBADF);
	ASSERT_EQ(gp_vm_remove_backing(vm, id), 0);
	EXPECT_EQ(gp_vm_fallocate(vm, id, FALLOC_FL_KEEP_SIZE, 0, 4096), -EBADF);
	gp_vm_destroy(vm);
	close(fd);
}

TEST(cpuid_faulting_probe)
{
	struct gp_vm *vm;
	/* Our own probe: ARCH_SET_CPUID(1) succeeds exactly where faulting exists. */
	bool here = syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1) == 0;

	ASSERT_EQ(gp_vm_create(&vm), 0);
	EXPECT_EQ(gp_cpuid_faulting(vm), here);
	DIAG("CPUID faulting: %s", here ? "yes" : "no");
	gp_vm_destroy(vm);
}

/* Opting out: CPUID and RDTSC then run natively, with the host's answers. */
TEST(faulting_opt_out)
{
	/* cpuid; hlt and rdtsc; hlt */
	static const uint8_t cpuid_hlt[] = { 0x0f, 0xa2, 0xf4 };
	static const uint8_t rdtsc_hlt[] = { 0x0f, 0x31, 0xf4 };
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct gp_vm *vm;
	unsigned a, b, cc, d;
	struct env e;

	ASSERT_EQ(gp_vm_create_flags(&vm, 0x80), -EINVAL);
	env_init(&e);
	EXPECT_TRUE(gp_tsc_faulting(e.vm));
	gp_vcpu_destroy(e.vcpu);
	gp_vm_destroy(e.vm);
	ASSERT_EQ(gp_vm_create_flags(&e.vm, GP_VM_NO_CPUID_FAULT | GP_VM_NO_TSC_FAULT), 0);
	EXPECT_FALSE(gp_cpuid_faulting(e.vm));
	EXPECT_FALSE(gp_tsc_faulting(e.vm));
	ASSERT_EQ(gp_vm_add_backing(e.vm, e.memfd, &e.id), 0);
	ASSERT_EQ(gp_vcpu_create(e.vm, &e.vcpu), 0);
	e.maps[0].backing = e.maps[1].backing = e.id;
	c.gpr[RAX] = 0;
	run_code(&e, cpuid_hlt, sizeof(cpuid_hlt), &c, &t);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.rip, CODE + 2);
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(cc), "=d"(d) : "a"(0), "c"(0));
	EXPECT_EQ(c.gpr[RAX], a);
	EXPECT_EQ(c.gpr[RBX], b);
	EXPECT_EQ(c.gpr[RCX], cc);
	EXPECT_EQ(c.gpr[RDX], d);
	c.gpr[RAX] = c.gpr[RDX] = 0;
	run_code(&e, rdtsc_hlt, sizeof(rdtsc_hlt), &c, &t);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.rip, CODE + 2);
	EXPECT_NE(c.gpr[RAX] | c.gpr[RDX] << 32, 0);
	env_fini(&e);
}

/* ---- registers -------------------------------------------------------------------- */

static void fill_cpu(struct gp_cpu *c, uint64_t seed)
{
	for (int i = 0; i < 16; i++)
		c->gpr[i] = seed * (uint64_t)(i + 1) ^ 0x8000000000000001ull * (uint64_t)(i & 1);
}

static void expect_gprs(const struct gp_cpu *got, const struct gp_cpu *want)
{
	for (int i = 0; i < 16; i++)
		EXPECT_MSG(got->gpr[i] == want->gpr[i], "gpr[%d] = %#llx, want %#llx", i,
			   (unsigned long long)got->gpr[i], (unsigned long long)want->gpr[i]);
}

/* Every GPR (RSP too: the handler runs on its own stack), RIP, the user
 * RFLAGS bits and both bases go in and come back exactly. */
TEST(registers_round_trip)
{
	static const uint8_t int3[] = { 0xcc };
	/* CF PF AF ZF SF DF OF AC, and the always-one bit 1. */
	static const uint64_t flags[] = { 0x40cd7, 0x2, 0x0c93, 0x40002 };
	struct env e;

	env_init(&e);
	for (unsigned k = 0; k < ARRAY_SIZE(flags); k++) {
		struct gp_cpu in = { .rflags = flags[k] }, out;
		struct gp_trap t;

		fill_cpu(&in, 0x0123456789abcdefull + k * 0x1111);
		in.fs_base = 0x7fff0000ull + k * 0x1000;
		in.gs_base = 0x12345000ull + k;
		out = in;
		run_code(&e, int3, sizeof(int3), &out, &t);
		in.rip = CODE;
		ASSERT_EQ(t.kind, GP_TRAP_BP);
		EXPECT_EQ(t.trapno, 3);
		EXPECT_EQ(out.rip, CODE + 1); /* INT3: after the instruction */
		expect_gprs(&out, &in);
		EXPECT_EQ(out.rflags, flags[k]);
		EXPECT_EQ(out.fs_base, in.fs_base);
		EXPECT_EQ(out.gs_base, in.gs_base);
	}
	env_fini(&e);
}

/* The bases are the guest's: it reads through FS and writes them itself. */
TEST(fs_gs_base_used_and_captured)
{
	/* mov %fs:0x10,%rax; mov %gs:0x18,%rcx; hlt */
	static const uint8_t rd[] = { 0x64, 0x48, 0x8b, 0x04, 0x25, 0x10, 0, 0, 0,
				      0x65, 0x48, 0x8b, 0x0c, 0x25, 0x18, 0, 0, 0, 0xf4 };
	/* wrfsbase %rax; wrgsbase %rcx; hlt */
	static const uint8_t wr[] = { 0xf3, 0x48, 0x0f, 0xae, 0xd0,
				      0xf3, 0x48, 0x0f, 0xae, 0xd9, 0xf4 };
	struct gp_cpu c = { .rflags = 2, .fs_base = DATA + 0x100, .gs_base = DATA + 0x200 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	memcpy(data(&e) + 0x110, &(uint64_t){ 0xf5f5f5f5a0a0a0a0ull }, 8);
	memcpy(data(&e) + 0x218, &(uint64_t){ 0x6767676712121212ull }, 8);
	run_code(&e, rd, sizeof(rd), &c, &t);
	ASSERT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.rip, CODE + sizeof(rd) - 1);
	EXPECT_EQ(c.gpr[RAX], 0xf5f5f5f5a0a0a0a0ull);
	EXPECT_EQ(c.gpr[RCX], 0x6767676712121212ull);
	if (!(getauxval(AT_HWCAP2) & 2 /* HWCAP2_FSGSBASE */)) {
		DIAG("no FSGSBASE: the guest cannot write its bases itself here");
		env_fini(&e);
		return;
	}
	c.gpr[RAX] = 0x1111222233334000ull & 0x00007fffffffffffull;
	c.gpr[RCX] = 0xffff888800001000ull; /* an upper-half (kernel) base */
	run_code(&e, wr, sizeof(wr), &c, &t);
	ASSERT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.fs_base, 0x1111222233334000ull & 0x00007fffffffffffull);
	EXPECT_EQ(c.gs_base, 0xffff888800001000ull);
	env_fini(&e);
}

/*
 * The guest owns the top of the user range too: code in the last 2 MiB
 * (where the KVM selftests put their guests), its stack in the very last
 * page, below GP_USER_TOP.
 */
TEST(guest_runs_at_the_top_of_the_user_range)
{
	static const uint8_t c[] = {
		0x6a, 0x2a,                   /* push 0x2a */
		0x48, 0x8d, 0x05, 0xf7, 0xff, 0xff, 0xff, /* lea rax, [rip - 9]: the code start */
		0xf4,                         /* hlt: #GP */
	};
	const uint64_t high = 0x7fffffe00000ull;
	struct gp_cpu cpu = { .rflags = 2 };
	struct gp_map m[2];
	struct gp_trap t;
	struct env e;
	uint64_t v;

	env_init(&e);
	put_code(&e, c, sizeof(c));
	m[0] = (struct gp_map){ high, AREA, CODE_OFF, e.id, PROT_READ | PROT_EXEC };
	m[1] = (struct gp_map){ GP_USER_TOP - 4096, 4096, DATA_OFF, e.id, PROT_READ | PROT_WRITE };
	cpu.rip = high;
	cpu.gpr[RSP] = GP_USER_TOP;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &cpu, m, 2, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(cpu.rip, high + 9);
	EXPECT_EQ(cpu.gpr[RAX], high);
	EXPECT_EQ(cpu.gpr[RSP], GP_USER_TOP - 8);
	memcpy(&v, data(&e) + 4096 - 8, 8);
	EXPECT_EQ(v, 0x2a);
	EXPECT_EQ(t.insn_len, 16);
	EXPECT_EQ(t.insn[0], 0xf4);
	/* Unmapped again: the same fetch is a #PF at the top address. */
	ASSERT_EQ(gp_vm_unmap(e.vm, high, AREA), 0);
	cpu.rip = high;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &cpu, NULL, 0, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_PF);
	EXPECT_EQ(t.addr, high);
	env_fini(&e);
}

TEST(bad_cpu_refused)
{
	static const uint8_t hlt[] = { 0xf4 };
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	put_code(&e, hlt, 1);
	c.rip = GP_USER_TOP;
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), -EINVAL);
	EXPECT_EQ(t.kind, GP_TRAP_OTHER);
	c.rip = GP_STUB_TEXT; /* the stub's own code */
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), -EINVAL);
	c.rip = GP_RESV_END - 1;
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), -EINVAL);
	c.rip = CODE;
	c.fs_base = 0x0000800000000000ull; /* non-canonical */
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), -EINVAL);
	c.fs_base = 0;
	/* Still usable afterwards. */
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	env_fini(&e);
}

/* ---- each trap kind ------------------------------------------------------------- */

struct trap_case {
	const char *name;
	uint8_t code[32];
	uint8_t len;
	uint32_t kind, signo, trapno;
	uint8_t rip_off;     /* expected RIP - CODE at the trap */
	int64_t err;         /* expected error code, -1: not checked */
	uint64_t addr;       /* expected addr, 0: not checked */
	uint64_t rflags;     /* input RFLAGS (0: just bit 1) */
	uint64_t rbx;        /* input RBX */
	int needs;           /* 1: CPUID faulting */
};

#define UNMAPPED 0x10000000ull

static const struct trap_case trap_cases[] = {
	{ "hlt_gp", { 0xf4 }, 1, GP_TRAP_GP, SIGSEGV, 13, 0, 0 },
	{ "in_gp", { 0xec }, 1, GP_TRAP_GP, SIGSEGV, 13, 0, 0 },
	{ "cli_gp", { 0x90, 0xfa }, 2, GP_TRAP_GP, SIGSEGV, 13, 1, 0 },
	{ "rdmsr_gp", { 0x0f, 0x32 }, 2, GP_TRAP_GP, SIGSEGV, 13, 0, 0 },
	{ "mov_cr3_gp", { 0x0f, 0x20, 0xd8 }, 3, GP_TRAP_GP, SIGSEGV, 13, 0, 0 },
	{ "vmcall_gp", { 0x0f, 0x01, 0xc1 }, 3, GP_TRAP_GP, SIGSEGV, 13, 0, -1 },
	/* int $0x40: a DPL-0 gate, #GP with error code (0x40 << 3) | 2 (IDT). */
	{ "int_n_gp_err", { 0xcd, 0x40 }, 2, GP_TRAP_GP, SIGSEGV, 13, 0, 0x202 },
	{ "rdtsc_gp", { 0x0f, 0x31 }, 2, GP_TRAP_GP, SIGSEGV, 13, 0, 0 },
	{ "cpuid_gp", { 0x0f, 0xa2 }, 2, GP_TRAP_GP, SIGSEGV, 13, 0, 0, .needs = 1 },
	{ "ud2_ud", { 0x0f, 0x0b }, 2, GP_TRAP_UD, SIGILL, 6, 0, -1 },
	/* xor %ecx,%ecx; div %rcx */
	{ "div0_de", { 0x31, 0xc9, 0x48, 0xf7, 0xf1 }, 5, GP_TRAP_DE, SIGFPE, 0, 2, -1 },
	{ "int3_bp", { 0x90, 0xcc }, 2, GP_TRAP_BP, SIGTRAP, 3, 2, -1 },
	/* TF: one instruction (nop), then #DB after it */
	{ "tf_db", { 0x90, 0x90, 0xf4 }, 3, GP_TRAP_DB, SIGTRAP, 1, 1, -1,
	  .rflags = RFLAGS_TF | 2 },
	/* AC: mov 1(%rbx),%eax, misaligned */
	{ "misaligned_ac", { 0x8b, 0x43, 0x01 }, 3, GP_TRAP_AC, SIGBUS, 17, 0, -1,
	  .rflags = RFLAGS_AC | 2, .rbx = DATA },
	/* fninit; fldcw (%rbx) [0x037b: ZE unmasked]; fld1; fldz; fdivrp; fwait */
	{ "x87_mf", { 0xdb, 0xe3, 0xd9, 0x2b, 0xd9, 0xe8, 0xd9, 0xee, 0xde, 0xf9, 0x9b }, 11,
	  GP_TRAP_MF, SIGFPE, 16, 10, -1, .rbx = DATA },
	/* ldmxcsr (%rbx) [0: all unmasked]; xorps %xmm1,%xmm1; xorps %xmm0,%xmm0;
	 * divss %xmm1,%xmm0 (0/0: invalid) */
	{ "sse_xm", { 0x0f, 0xae, 0x13, 0x0f, 0x57, 0xc9, 0x0f, 0x57, 0xc0, 0xf3, 0x0f, 0x5e, 0xc1 },
	  13, GP_TRAP_XM, SIGFPE, 19, 9, -1, .rbx = DATA + 8 },
	/* mov (%rbx),%rax from an unmapped page: #PF, user read, not present */
	{ "load_unmapped_pf", { 0x48, 0x8b, 0x03 }, 3, GP_TRAP_PF, SIGSEGV, 14, 0, 0x4,
	  .addr = UNMAPPED + 0x123, .rbx = UNMAPPED + 0x123 },
	/* mov %rax,(%rbx) into read+exec code: present, write, user */
	{ "store_ro_pf", { 0x48, 0x89, 0x03 }, 3, GP_TRAP_PF, SIGSEGV, 14, 0, 0x7,
	  .addr = CODE + 0x800, .rbx = CODE + 0x800 },
	/* jmp *%rbx into the data page (no exec): instruction fetch */
	{ "fetch_nx_pf", { 0xff, 0xe3 }, 2, GP_TRAP_PF, SIGSEGV, 14, 0xff, 0x15,
	  .addr = DATA + 0x40, .rbx = DATA + 0x40 },
};

static void trap_case(void *arg)
{
	const struct trap_case *tc = arg;
	struct gp_cpu c = { .rflags = tc->rflags ? tc->rflags : 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	if (tc->needs == 1 && !gp_cpuid_faulting(e.vm)) {
		env_fini(&e);
		SKIP("no CPUID faulting on this host");
	}
	memcpy(data(&e), &(uint16_t){ 0x037b }, 2);  /* the x87 control word */
	memset(data(&e) + 8, 0, 4);                    /* MXCSR 0 */
	c.gpr[RBX] = tc->rbx;
	run_code(&e, tc->code, tc->len, &c, &t);
	EXPECT_EQ(t.kind, tc->kind);
	EXPECT_EQ(t.signo, tc->signo);
	EXPECT_EQ(t.trapno, tc->trapno);
	if (tc->rip_off == 0xff)
		EXPECT_EQ(c.rip, tc->addr);
	else
		EXPECT_EQ(c.rip, CODE + tc->rip_off);
	if (tc->err >= 0)
		EXPECT_EQ(t.err, tc->err);
	if (tc->addr)
		EXPECT_EQ(t.addr, tc->addr);
	/* The bytes at RIP as the vCPU saw them: a page that cannot be
	 * executed can still be read. */
	if (tc->rip_off == 0xff) {
		EXPECT_EQ(t.insn_len, 16);
		EXPECT_MEM_EQ(t.insn, data(&e) + (tc->addr - DATA), 16);
	} else {
		size_t avail = tc->len - tc->rip_off;

		EXPECT_EQ(t.insn_len, 16);
		EXPECT_MEM_EQ(t.insn, tc->code + tc->rip_off, avail < 16 ? avail : 16);
	}
	env_fini(&e);
}

/* An instruction at the end of the mapping: only the readable bytes. */
TEST(insn_bytes_stop_at_unmapped)
{
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	e.mem[CODE_OFF + AREA - 1] = 0xf4;
	c.rip = CODE + AREA - 1;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(t.insn_len, 1);
	EXPECT_EQ(t.insn[0], 0xf4);
	env_fini(&e);
}

/* ---- SYSCALL ------------------------------------------------------------------------ */

/* A guest SYSCALL never reaches the host: exit_group(42) would end the
 * process, yet it traps and the vCPU runs on. */
TEST(syscall_refused)
{
	/* syscall; hlt */
	static const uint8_t code[] = { 0x0f, 0x05, 0xf4 };
	/* int $0x80 (i386 exit(42)); hlt */
	static const uint8_t code32[] = { 0xcd, 0x80, 0xf4 };
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	c.gpr[RAX] = SYS_exit_group;
	c.gpr[RDI] = 42;
	run_code(&e, code, sizeof(code), &c, &t);
	ASSERT_EQ(t.kind, GP_TRAP_SYSCALL);
	EXPECT_EQ(t.signo, SIGSYS);
	EXPECT_EQ(t.err, AUDIT_ARCH_X86_64);
	EXPECT_EQ(c.rip, CODE + 2);         /* after the instruction */
	EXPECT_EQ(c.gpr[RAX], SYS_exit_group); /* not a return value */
	EXPECT_EQ(c.gpr[RCX], CODE + 2);    /* what the CPU's SYSCALL wrote */
	EXPECT_FALSE(proc_gone(gp_vm_pid(e.vm)));
	/* The vCPU goes on from there: HLT. */
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.rip, CODE + 2);

	c.gpr[RAX] = 1; /* i386 exit */
	c.gpr[RBX] = 42;
	run_code(&e, code32, sizeof(code32), &c, &t);
	ASSERT_EQ(t.kind, GP_TRAP_SYSCALL);
	EXPECT_EQ(t.err, AUDIT_ARCH_I386);
	EXPECT_EQ(c.rip, CODE + 2);
	EXPECT_FALSE(proc_gone(gp_vm_pid(e.vm)));
	env_fini(&e);
}

/* The address of a SYSCALL instruction's bytes in the stub's text (0: none). */
extern const unsigned char gp_stub_image[];

static uint64_t stub_syscall_gadget(void)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)gp_stub_image;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(gp_stub_image + eh->e_phoff);

	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X))
			continue;
		for (uint64_t o = 0; o + 1 < ph[i].p_filesz; o++)
			if (gp_stub_image[ph[i].p_offset + o] == 0x0f &&
			    gp_stub_image[ph[i].p_offset + o + 1] == 0x05)
				return ph[i].p_vaddr + o;
	}
	return 0;
}

/*
 * Guest code that jumps to a SYSCALL in the stub's text passes the
 * instruction-pointer test of the stub's filter, but prctl there is
 * PR_SET_TSC only: PR_SET_DUMPABLE would open the process (its private
 * memory) to the VMM's user again.  The process dies instead.
 */
TEST(stub_syscall_gadget_cannot_make_dumpable)
{
	/* movabs $gadget, %rcx; jmp *%rcx */
	uint8_t code[] = { 0x48, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xe1 };
	uint64_t gadget = stub_syscall_gadget();
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	ASSERT_TRUE(gadget >= GP_STUB_TEXT && gadget < GP_RESV_END);
	memcpy(code + 2, &gadget, 8);
	env_init(&e);
	c.gpr[RAX] = SYS_prctl;
	c.gpr[RDI] = PR_SET_DUMPABLE;
	c.gpr[RSI] = 1;
	put_code(&e, code, sizeof(code));
	c.rip = CODE;
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), -EIO);
	ASSERT_WAIT(proc_gone(gp_vm_pid(e.vm)), 5000);
	env_fini(&e);
}

/* ---- compatibility mode (GP_MODE_32) -------------------------------------------------- */

/*
 * 32-bit code in the host's compatibility-mode segment: the data access
 * through DS works (the stub loaded a flat selector), INC is the one-byte
 * 32-bit form (a REX prefix in 64-bit mode), OUT traps with the mode
 * reported; a far jump to the host's 64-bit selector comes back as
 * GP_MODE_64; a 32-bit state beyond 4 GiB or an unknown mode is refused.
 */
TEST(compat_mode_runs_32bit_code)
{
	static const uint8_t code[] = {
		0xa1, 0x00, 0x00, 0x60, 0x00, /* mov DATA, %eax */
		0x40,			      /* inc %eax */
		0xe6, 0x80,		      /* out %al, $0x80 */
		0xea, 0x0f, 0x00, 0x40, 0x00, 0x33, 0x00, /* ljmp $0x33, $CODE + 15 */
		0xf4,			      /* hlt, in 64-bit mode */
	};
	struct gp_cpu c = { .rflags = 2, .mode = GP_MODE_32 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	memcpy(data(&e), "\x41\x00\x00\x00", 4);
	run_code(&e, code, sizeof(code), &c, &t);
	ASSERT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.mode, GP_MODE_32);
	EXPECT_EQ(c.rip, CODE + 6);
	/* The architecture leaves the upper half undefined in this mode. */
	EXPECT_EQ((uint32_t)c.gpr[RAX], 0x42);
	c.rip += 2;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), 0);
	ASSERT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.mode, GP_MODE_64);
	EXPECT_EQ(c.rip, CODE + 15);
	c.mode = GP_MODE_32;
	c.rip = CODE + (1ull << 32);
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), -EINVAL);
	c.rip = CODE;
	c.fs_base = 1ull << 32;
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), -EINVAL);
	c.fs_base = 0;
	c.mode = GP_MODE_OTHER;
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), -EINVAL);
	env_fini(&e);
}

/* ---- kicks ------------------------------------------------------------------------------- */

static const uint8_t spin[] = { 0xeb, 0xfe }; /* jmp . */

struct kicker {
	struct gp_vcpu *v;
	unsigned delay_ms;
	pthread_t th;
};

static void *kick_later(void *arg)
{
	struct kicker *k = arg;
	struct timespec ts = { 0, (long)k->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	gp_vcpu_kick(k->v);
	return NULL;
}

TEST(kick_stops_spinning_guest)
{
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;
	struct kicker k;

	env_init(&e);
	for (int i = 0; i < 3; i++) {
		k = (struct kicker){ .v = e.vcpu, .delay_ms = 50 };
		ASSERT_EQ(pthread_create(&k.th, NULL, kick_later, &k), 0);
		run_code(&e, spin, sizeof(spin), &c, &t);
		ASSERT_EQ(pthread_join(k.th, NULL), 0);
		EXPECT_EQ(t.kind, GP_TRAP_KICK);
		EXPECT_EQ(c.rip, CODE);
	}
	env_fini(&e);
}

static double thread_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Waiting for a guest that computes costs the VMM thread no CPU: it
 * sleeps in poll(), even after many short runs (a stale wake-up count
 * would make every later wait return at once). */
TEST(wait_sleeps)
{
	static const uint8_t hlt[] = { 0xf4 };
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct kicker k;
	struct env e;
	double cpu0;

	env_init(&e);
	for (int i = 0; i < 2000; i++)
		run_code(&e, hlt, sizeof(hlt), &c, &t);
	k = (struct kicker){ .v = e.vcpu, .delay_ms = 400 };
	ASSERT_EQ(pthread_create(&k.th, NULL, kick_later, &k), 0);
	cpu0 = thread_cpu_ms();
	run_code(&e, spin, sizeof(spin), &c, &t);
	EXPECT_MSG(thread_cpu_ms() - cpu0 < 100, "%.1f ms of CPU while waiting 400 ms",
		   thread_cpu_ms() - cpu0);
	ASSERT_EQ(pthread_join(k.th, NULL), 0);
	EXPECT_EQ(t.kind, GP_TRAP_KICK);
	env_fini(&e);
}

/* A kick while stopped is kept: the next run returns it at once, without
 * running an instruction, and only once. */
TEST(kick_while_stopped_is_kept_once)
{
	static const uint8_t code[] = { 0x48, 0xff, 0xc0, 0xf4 }; /* inc %rax; hlt */
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	gp_vcpu_kick(e.vcpu);
	gp_vcpu_kick(e.vcpu);
	run_code(&e, code, sizeof(code), &c, &t);
	EXPECT_EQ(t.kind, GP_TRAP_KICK);
	EXPECT_EQ(c.rip, CODE);
	EXPECT_EQ(c.gpr[RAX], 0);
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.rip, CODE + 3);
	EXPECT_EQ(c.gpr[RAX], 1);
	env_fini(&e);
}

static volatile sig_atomic_t handled;

static void on_usr2(int sig)
{
	(void)sig;
	handled = 1;
}

struct raiser {
	pthread_t target;
	pthread_t th;
};

static void *signal_later(void *arg)
{
	struct raiser *r = arg;
	struct timespec ts = { 0, 50 * 1000000L };

	nanosleep(&ts, NULL);
	pthread_kill(r->target, SIGUSR2);
	return NULL;
}

/* The documented KVM_RUN pattern: signals blocked, ppoll() with the
 * caller's mask; a handled signal kicks and the run ends with KICK. */
TEST(split_wait_with_signal_mask)
{
	struct sigaction sa = { .sa_handler = on_usr2 };
	struct pollfd pfd[GP_NR_POLLFDS];
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	sigset_t all, open_mask;
	struct raiser rs;
	bool kicked = false;
	struct env e;
	int r;

	env_init(&e);
	sigaction(SIGUSR2, &sa, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	sigemptyset(&open_mask);
	put_code(&e, spin, sizeof(spin));
	c.rip = CODE;
	ASSERT_EQ(gp_vcpu_enter(e.vcpu, &c, e.maps, 2), 0);
	EXPECT_EQ(gp_vcpu_enter(e.vcpu, &c, e.maps, 2), -EBUSY);
	rs.target = pthread_self();
	ASSERT_EQ(pthread_create(&rs.th, NULL, signal_later, &rs), 0);
	gp_vcpu_pollfds(e.vcpu, pfd);
	for (;;) {
		r = gp_vcpu_finish(e.vcpu, &c, &t);
		if (r != -EAGAIN)
			break;
		if (ppoll(pfd, GP_NR_POLLFDS, NULL, &open_mask) < 0 && errno == EINTR && !kicked) {
			gp_vcpu_kick(e.vcpu);
			kicked = true;
		}
	}
	ASSERT_EQ(pthread_join(rs.th, NULL), 0);
	ASSERT_EQ(r, 0);
	EXPECT_TRUE(handled);
	EXPECT_TRUE(kicked);
	EXPECT_EQ(t.kind, GP_TRAP_KICK);
	EXPECT_EQ(c.rip, CODE);
	env_fini(&e);
}

/* ---- memory ------------------------------------------------------------------------------ */

struct runner {
	struct gp_vcpu *v;
	struct gp_cpu c;
	struct gp_trap t;
	const struct gp_map *maps;
	unsigned nr_maps;
	int ret;
	pthread_t th;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;

	r->ret = gp_vcpu_run(r->v, &r->c, r->maps, r->nr_maps, &r->t);
	return NULL;
}

/*
 * vCPU 1 loops: load from a page, LOCK-increment a counter elsewhere.  We
 * unmap the page while it runs; once gp_vm_unmap() returned, at most the
 * one increment already past its load can still happen before the fault.
 */
TEST(unmap_while_running_is_synchronous)
{
	/* 0: mov (%rbx),%rax; 3: lock incq (%rcx); 7: jmp 0 */
	static const uint8_t loop[] = { 0x48, 0x8b, 0x03, 0xf0, 0x48, 0xff, 0x01, 0xeb, 0xf7 };
	struct gp_map page = { DATA + AREA, 4096, DATA_OFF + AREA, 0, PROT_READ };
	struct gp_map maps[3];
	struct runner r = { .c = { .rflags = 2 } };
	volatile uint64_t *counter;
	uint64_t before, after;
	struct env e;

	env_init(&e);
	counter = (volatile uint64_t *)data(&e);
	page.backing = e.id;
	maps[0] = e.maps[0];
	maps[1] = e.maps[1];
	maps[2] = page;
	put_code(&e, loop, sizeof(loop));
	r.v = e.vcpu;
	r.maps = maps;
	r.nr_maps = 3;
	r.c.rip = CODE;
	r.c.gpr[RBX] = DATA + AREA + 8;
	r.c.gpr[RCX] = DATA;
	ASSERT_EQ(pthread_create(&r.th, NULL, run_thread, &r), 0);
	ASSERT_WAIT(*counter > 1000, 10000);
	ASSERT_EQ(gp_vm_unmap(e.vm, DATA + AREA, 4096), 0);
	before = *counter;
	ASSERT_EQ(pthread_join(r.th, NULL), 0);
	after = *counter;
	ASSERT_EQ(r.ret, 0);
	EXPECT_EQ(r.t.kind, GP_TRAP_PF);
	EXPECT_EQ(r.t.addr, DATA + AREA + 8);
	EXPECT_EQ(r.c.rip, CODE);
	EXPECT_MSG(after - before <= 1, "%llu increments after gp_vm_unmap() returned",
		   (unsigned long long)(after - before));
	DIAG("%llu iterations before the unmap", (unsigned long long)before);
	env_fini(&e);
}

/* Two vCPUs, one shared counter, LOCK INC in parallel: nothing is lost. */
TEST(two_vcpus_lock_inc)
{
	/* 0: lock incq (%rbx); 4: dec %rcx; 7: jnz 0; 9: hlt */
	static const uint8_t loop[] = { 0xf0, 0x48, 0xff, 0x03, 0x48, 0xff, 0xc9, 0x75, 0xf7, 0xf4 };
	enum { N = 2000000 };
	struct runner r[2];
	struct gp_vcpu *v2;
	struct env e;

	env_init(&e);
	ASSERT_EQ(gp_vcpu_create(e.vm, &v2), 0);
	EXPECT_NE(gp_vcpu_tid(v2), gp_vcpu_tid(e.vcpu));
	put_code(&e, loop, sizeof(loop));
	for (int i = 0; i < 2; i++) {
		r[i] = (struct runner){ .v = i ? v2 : e.vcpu, .maps = e.maps, .nr_maps = 2 };
		r[i].c.rflags = 2;
		r[i].c.rip = CODE;
		r[i].c.gpr[RBX] = DATA;
		r[i].c.gpr[RCX] = N;
		ASSERT_EQ(pthread_create(&r[i].th, NULL, run_thread, &r[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(pthread_join(r[i].th, NULL), 0);
		EXPECT_EQ(r[i].ret, 0);
		EXPECT_EQ(r[i].t.kind, GP_TRAP_GP);
		EXPECT_EQ(r[i].c.rip, CODE + 9);
		EXPECT_EQ(r[i].c.gpr[RCX], 0);
	}
	EXPECT_EQ(*(volatile uint64_t *)data(&e), 2ull * N);
	gp_vcpu_destroy(v2);
	env_fini(&e);
}

TEST(protect_then_write_faults)
{
	/* mov %rax,(%rbx); hlt */
	static const uint8_t st[] = { 0x48, 0x89, 0x03, 0xf4 };
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	c.gpr[RAX] = 0xabcdef;
	c.gpr[RBX] = DATA + 0x20;
	run_code(&e, st, sizeof(st), &c, &t);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(*(uint64_t *)(data(&e) + 0x20), 0xabcdef);
	ASSERT_EQ(gp_vm_protect(e.vm, DATA, AREA, PROT_READ), 0);
	c.rip = CODE;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_PF);
	EXPECT_EQ(t.err, 7);
	EXPECT_EQ(t.addr, DATA + 0x20);
	EXPECT_EQ(gp_vm_protect(e.vm, DATA, AREA, 8), -EINVAL);
	EXPECT_EQ(gp_vm_protect(e.vm, DATA + 1, AREA, PROT_READ), -EINVAL);
	EXPECT_EQ(gp_vm_unmap(e.vm, GP_RESV_BASE - 4096, 8192), -EINVAL);
	EXPECT_EQ(gp_vm_unmap(e.vm, GP_RESV_END - 4096, 8192), -EINVAL);
	EXPECT_EQ(gp_vm_protect(e.vm, GP_SLOT_BASE, 4096, PROT_READ), -EINVAL);
	EXPECT_EQ(gp_vm_unmap(e.vm, GP_USER_TOP - 4096, 8192), -EINVAL);
	/* The guest's range on both sides of the window. */
	EXPECT_EQ(gp_vm_unmap(e.vm, GP_RESV_BASE - 4096, 4096), 0);
	EXPECT_EQ(gp_vm_unmap(e.vm, GP_RESV_END, 4096), 0);
	EXPECT_EQ(gp_vm_unmap(e.vm, GP_USER_TOP - 4096, 4096), 0);
	EXPECT_EQ(gp_vm_unmap(e.vm, DATA, 0), -EINVAL);
	env_fini(&e);
}

/* More maps than a mailbox holds go in chunks, in order. */
TEST(many_maps_in_order)
{
	enum { N = 3 * GP_MBOX_MAPS + 7 };
	/* mov (%rbx),%rax; hlt */
	static const uint8_t ld[] = { 0x48, 0x8b, 0x03, 0xf4 };
	struct gp_map *maps = calloc(N + 1, sizeof(*maps));
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;

	env_init(&e);
	ASSERT_TRUE(maps != NULL);
	maps[0] = e.maps[0];
	/* Page i of the window at 0x800000 shows data page i; the last map
	 * overrides page 5 with data page 600. */
	for (unsigned i = 1; i < N; i++)
		maps[i] = (struct gp_map){ 0x800000 + (i - 1) * 4096ull, 4096,
					   DATA_OFF + (i - 1) * 4096ull, e.id, PROT_READ };
	maps[N] = (struct gp_map){ 0x800000 + 5 * 4096ull, 4096, DATA_OFF + 600 * 4096ull, e.id,
				   PROT_READ };
	for (unsigned i = 0; i < N; i++)
		memcpy(data(&e) + i * 4096ull, &(uint64_t){ 1000 + i }, 8);
	put_code(&e, ld, sizeof(ld));
	c.rip = CODE;
	c.gpr[RBX] = 0x800000 + (N - 2) * 4096ull;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, maps, N + 1, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.gpr[RAX], 1000 + N - 2);
	c.rip = CODE;
	c.gpr[RBX] = 0x800000 + 5 * 4096ull;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), 0);
	EXPECT_EQ(c.gpr[RAX], 1600);
	free(maps);
	env_fini(&e);
}

TEST(map_errors)
{
	static const uint8_t hlt[] = { 0xf4 };
	struct gp_cpu c = { .rflags = 2 }, in;
	struct gp_trap t;
	struct gp_map m[3];
	struct env e;
	uint32_t id2;
	int fd2 = memfd_create("other", MFD_CLOEXEC);

	env_init(&e);
	put_code(&e, hlt, 1);
	c.rip = CODE;
	in = c;
	m[0] = e.maps[0];
	m[1] = (struct gp_map){ DATA, 4096, 0, 999, PROT_READ };
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EBADF);
	EXPECT_EQ(t.kind, GP_TRAP_OTHER);
	EXPECT_EQ(c.rip, in.rip); /* the guest did not run */
	m[1] = (struct gp_map){ GP_RESV_BASE - 4096, 8192, 0, e.id, PROT_READ };
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EINVAL);
	m[1] = (struct gp_map){ GP_SLOT_BASE, 4096, 0, e.id, PROT_READ }; /* a mailbox */
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EINVAL);
	m[1] = (struct gp_map){ GP_USER_TOP - 4096, 8192, 0, e.id, PROT_READ };
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EINVAL);
	m[1] = (struct gp_map){ DATA + 1, 4096, 0, e.id, PROT_READ };
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EINVAL);
	m[1] = (struct gp_map){ DATA, 4096, 0, e.id, 0x10 };
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EINVAL);
	/* A backing that is gone. */
	ASSERT_TRUE(fd2 >= 0);
	ASSERT_EQ(ftruncate(fd2, 4096), 0);
	ASSERT_EQ(gp_vm_add_backing(e.vm, fd2, &id2), 0);
	EXPECT_NE(id2, e.id);
	ASSERT_EQ(gp_vm_remove_backing(e.vm, id2), 0);
	EXPECT_EQ(gp_vm_remove_backing(e.vm, id2), -EBADF);
	m[1] = (struct gp_map){ DATA, 4096, 0, id2, PROT_READ };
	EXPECT_EQ(gp_vcpu_run(e.vcpu, &c, m, 2, &t), -EBADF);
	EXPECT_EQ(gp_vm_add_backing(e.vm, -1, &id2), -EBADF);
	/* After all that, a good run. */
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, m, 1, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP);
	close(fd2);
	env_fini(&e);
}

/* gp_vcpu_destroy() of a vCPU whose guest spins: kicked, then ended. */
TEST(destroy_running_vcpu)
{
	struct gp_cpu c = { .rflags = 2 };
	struct gp_vcpu *v2;
	struct env e;

	env_init(&e);
	ASSERT_EQ(gp_vcpu_create(e.vm, &v2), 0);
	put_code(&e, spin, sizeof(spin));
	c.rip = CODE;
	ASSERT_EQ(gp_vcpu_enter(v2, &c, e.maps, 2), 0);
	gp_vcpu_destroy(v2);
	/* The VM and its other vCPU carry on. */
	c.gpr[RCX] = 7;
	{
		static const uint8_t hlt[] = { 0xf4 };
		struct gp_trap t;

		run_code(&e, hlt, 1, &c, &t);
		EXPECT_EQ(t.kind, GP_TRAP_GP);
		EXPECT_EQ(c.gpr[RCX], 7);
	}
	env_fini(&e);
}

/* Slots are reused; each vCPU is its own thread with its own registers. */
TEST(many_vcpus)
{
	enum { N = 16 };
	/* mov %rcx,%rax; hlt */
	static const uint8_t code[] = { 0x48, 0x89, 0xc8, 0xf4 };
	struct gp_vcpu *v[N];
	struct env e;

	env_init(&e);
	put_code(&e, code, sizeof(code));
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < N; i++)
			ASSERT_EQ(gp_vcpu_create(e.vm, &v[i]), 0);
		for (int i = 0; i < N; i++) {
			struct gp_cpu c = { .rflags = 2, .rip = CODE };
			struct gp_trap t;

			c.gpr[RCX] = 100u * round + i;
			ASSERT_EQ(gp_vcpu_run(v[i], &c, i ? NULL : e.maps, i ? 0 : 2, &t), 0);
			EXPECT_EQ(t.kind, GP_TRAP_GP);
			EXPECT_EQ(c.gpr[RAX], 100u * round + i);
		}
		/* Every other one first, then the rest. */
		for (int i = 0; i < N; i += 2)
			gp_vcpu_destroy(v[i]);
		for (int i = 1; i < N; i += 2)
			gp_vcpu_destroy(v[i]);
	}
	env_fini(&e);
}

/* ---- XSAVE ----------------------------------------------------------------------------- */

#define XMM_OFF(n) (160 + 16 * (n))

TEST(xsave_round_trip)
{
	/* movq %xmm0,%rax; not %rax; movq %rax,%xmm1; hlt */
	static const uint8_t code[] = { 0x66, 0x48, 0x0f, 0x7e, 0xc0, 0x48, 0xf7, 0xd0,
					0x66, 0x48, 0x0f, 0x6e, 0xc8, 0xf4 };
	static uint8_t img[4096], img2[4096];
	const uint64_t pat = 0x0123456789abcdefull;
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	uint64_t bv, x1;
	struct env e;

	env_init(&e);
	ASSERT_TRUE(gp_vcpu_xsave_size(e.vcpu) >= 576);
	DIAG("XSAVE image: %zu bytes", gp_vcpu_xsave_size(e.vcpu));
	ASSERT_EQ(gp_vcpu_get_xsave(e.vcpu, img, sizeof(img)), 0);
	memcpy(img + XMM_OFF(0), &pat, 8);
	memcpy(&bv, img + 512, 8);
	bv |= 2; /* SSE state present */
	memcpy(img + 512, &bv, 8);
	ASSERT_EQ(gp_vcpu_set_xsave(e.vcpu, img, sizeof(img)), 0);
	run_code(&e, code, sizeof(code), &c, &t);
	ASSERT_EQ(t.kind, GP_TRAP_GP);
	EXPECT_EQ(c.gpr[RAX], ~pat);
	ASSERT_EQ(gp_vcpu_get_xsave(e.vcpu, img2, sizeof(img2)), 0);
	memcpy(&x1, img2 + XMM_OFF(1), 8);
	EXPECT_EQ(x1, ~pat);
	/* Kept across runs that do not set it. */
	c.rip = CODE;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, NULL, 0, &t), 0);
	EXPECT_EQ(c.gpr[RAX], ~pat);
	/* What XRSTOR would refuse is refused here. */
	memcpy(img2, img, sizeof(img));
	img2[512 + 8] = 1; /* XCOMP_BV */
	EXPECT_EQ(gp_vcpu_set_xsave(e.vcpu, img2, sizeof(img2)), -EINVAL);
	memcpy(img2, img, sizeof(img));
	memset(img2 + 24, 0xff, 4); /* MXCSR reserved bits */
	EXPECT_EQ(gp_vcpu_set_xsave(e.vcpu, img2, sizeof(img2)), -EINVAL);
	memcpy(img2, img, sizeof(img));
	img2[512 + 7] = 0x80; /* XSTATE_BV bit 63 */
	EXPECT_EQ(gp_vcpu_set_xsave(e.vcpu, img2, sizeof(img2)), -EINVAL);
	EXPECT_EQ(gp_vcpu_set_xsave(e.vcpu, img, 100), -EINVAL);
	env_fini(&e);
}

/* ---- hardware breakpoints -------------------------------------------------------- */

struct bad_hwbp {
	const char *what;
	struct gp_hwbp bp;
};

static const struct bad_hwbp bad_hwbps[] = {
	{ "unknown type", { DATA, GP_HWBP_RW + 1, 4 } },
	{ "length 3", { DATA, GP_HWBP_W, 3 } },
	{ "length 0", { DATA, GP_HWBP_RW, 0 } },
	{ "length 16", { DATA, GP_HWBP_W, 16 } },
	{ "address not aligned to the length", { DATA + 2, GP_HWBP_W, 4 } },
};

/*
 * gp_vcpu_set_hwbp(): bad entries are refused and change nothing; a write
 * watch traps after the store (GP_TRAP_HWBP, err = its index); an
 * instruction breakpoint traps before the instruction, again on a rerun
 * with RF clear, and not with RF set (the VMM's RF reaches the guest).
 */
TEST(hwbp_validates_watches_and_honours_rf)
{
	static const uint8_t store[] = { 0x89, 0x03, 0xf4 }; /* mov %eax,(%rbx); hlt */
	static const uint8_t nops[] = { 0x90, 0x90, 0xf4 };
	struct gp_hwbp bp[GP_NR_HWBP];
	struct gp_cpu c = { .rflags = 2 };
	struct gp_trap t;
	struct env e;
	int r;

	env_init(&e);
	for (size_t i = 0; i < ARRAY_SIZE(bad_hwbps); i++) {
		memset(bp, 0, sizeof(bp));
		bp[i % GP_NR_HWBP] = bad_hwbps[i].bp;
		test_diag("%s", bad_hwbps[i].what);
		EXPECT_EQ(gp_vcpu_set_hwbp(e.vcpu, bp), -EINVAL);
	}
	memset(bp, 0, sizeof(bp));
	bp[2] = (struct gp_hwbp){ DATA + 8, GP_HWBP_W, 8 };
	ASSERT_EQ(gp_vcpu_set_hwbp(e.vcpu, bp), 0);
	put_code(&e, store, sizeof(store));
	c.rip = CODE;
	c.gpr[RBX] = DATA + 12;
	r = gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t);
	if (r == -ENOENT || r == -EACCES || r == -EPERM || r == -ENOSYS || r == -ENOSPC) {
		env_fini(&e);
		SKIP("perf breakpoints refused here (%s)", test_errno_name(-r));
	}
	ASSERT_EQ(r, 0);
	EXPECT_EQ(t.kind, GP_TRAP_HWBP);
	EXPECT_EQ(t.err, 2);
	EXPECT_EQ(c.rip, CODE + 2);

	memset(bp, 0, sizeof(bp));
	bp[0] = (struct gp_hwbp){ CODE + 1, GP_HWBP_X, 1 };
	ASSERT_EQ(gp_vcpu_set_hwbp(e.vcpu, bp), 0);
	run_code(&e, nops, sizeof(nops), &c, &t);
	EXPECT_EQ(t.kind, GP_TRAP_HWBP);
	EXPECT_EQ(t.err, 0);
	EXPECT_EQ(c.rip, CODE + 1);
	c.rflags &= ~0x10000ull;
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_HWBP);
	EXPECT_EQ(c.rip, CODE + 1);
	c.rflags |= 0x10000ull; /* RF: past the breakpoint once */
	ASSERT_EQ(gp_vcpu_run(e.vcpu, &c, e.maps, 2, &t), 0);
	EXPECT_EQ(t.kind, GP_TRAP_GP); /* the hlt */
	EXPECT_EQ(c.rip, CODE + 2);
	env_fini(&e);
}

int main(int argc, char **argv)
{
	for (size_t i = 0; i < ARRAY_SIZE(trap_cases); i++) {
		char name[64];

		snprintf(name, sizeof(name), "trap/%s", trap_cases[i].name);
		test_add(name, trap_case, (void *)&trap_cases[i], 0);
	}
	return test_main(argc, argv);
}
