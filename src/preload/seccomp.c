// SPDX-License-Identifier: MIT
/*
 * Raw system calls under `guestmem exec`: a seccomp filter with user
 * notification, installed by the preload before main.
 *
 * The preload's libc wrappers never reach the kernel for a guestmem fd, so
 * whatever reaches it on one came from a raw system call (syscall(2), or a
 * libc function that calls the kernel itself: posix_fallocate, malloc's
 * munmap).  The filter routes to a listener thread in this process:
 *
 *   - ioctl with a KVM number ((cmd >> 8) & 0xff == 0xAE);
 *   - fallocate (posix_fallocate calls it directly);
 *   - munmap, mremap, mprotect, and madvise with an advice that drops pages
 *     (the mmu notifier);
 *   - with GUESTMEM_SECCOMP=files, also the file and socket calls a
 *     guestmem fd must answer as the kernel's file does (read, write, ...,
 *     fstat, send, recv, splice, sendfile): off by default, since every
 *     such call of the VMM would then cost a notification round trip.
 *
 * Every other system call gets an ALLOW that depends only on the system
 * call number, which the kernel caches per number (no filter run at all).
 *
 * The library's own raw system calls must not come back to it: the thread
 * making them may hold the locks the listener needs.  They are exempt by
 * instruction pointer.  Library code issues every system call the filter
 * routes with an inline `syscall` instruction (src/lib/sys_raw.h), so these
 * calls, and only these, come from this object's text; the filter allows a
 * routed call whose instruction pointer lies in it.  Calls libc makes on
 * the library's behalf (malloc's munmap) are routed like any other and
 * answered without taking a lock a caller could hold (hva.c).
 *
 * The listener thread is created before the filter is installed, and the
 * filter is installed on the main thread only (no TSYNC): so the listener,
 * and the spawner and workers it leads to, run unfiltered and never wait
 * for themselves.
 *
 * Answers:
 *   - a KVM ioctl or fallocate on a guestmem fd runs the library's entry
 *     point on the same fd number (the threads share the fd table and the
 *     address space, so the pointers are the caller's; usercopy.c copies
 *     through process_vm_readv/writev, so a bad pointer is EFAULT); a new
 *     object's fd is created in the shared table and returned in val.  It
 *     runs in a worker thread: KVM_RUN blocks.
 *   - an address-space call: a worker opens the mmu-notifier
 *     invalidation, performs the call itself (the mm is the same), closes
 *     the invalidation and returns the call's result.  Doing it here rather
 *     than answering CONTINUE keeps the bracket exact: with CONTINUE the
 *     invalidation would end before the caller's munmap ran, and a fault in
 *     between could map the old pages again.
 *   - anything on an fd that is not ours, or from another process (a fork
 *     child shares the filter): CONTINUE.
 * Each answer is preceded by SECCOMP_IOCTL_NOTIF_ID_VALID: a caller
 * interrupted by a signal is no longer waiting (the kernel restarts or
 * fails its call), and nothing may be done on its behalf.
 *
 * exec: the filter outlives the image, the listener thread does not, and
 * the kernel lets no later image add a listener of its own (one per filter
 * chain).  So every image under the filter shares the one listener: a
 * session (GUESTMEM_SECCOMP_SESSION, set by the first image) names a
 * helper process (double-forked, its own session, unfiltered) that keeps
 * a reference and hands a copy to each later image that asks (same user
 * only); a fork child has a copy already (gm_sc_atfork_child()).  Each
 * image and fork child runs a listener thread and binds a datagram socket to
 * "guestmem-sc:<session>:<tgid>".  One task receives notifications: the
 * first image's listener, and once that image is gone, the helper (the
 * kernel's receive blocks until a notification comes, so two receivers
 * could leave one asleep with work waiting for it).  A notification from
 * another process is forwarded to that process's name (its id is valid
 * on every copy of the listener, so that image answers it itself), or,
 * with nobody there (a fork child, an image without the preload, ld.so
 * before the constructor), answered as from a fork child (below), by the
 * helper with CONTINUE.  A forward can be lost in a fork child's copy of
 * a name, so the receiver sends it again while it is pending, and each
 * listener takes an id once (seccomp_forwards.h).  The helper exits when
 * no task uses the filter.  If it is killed once the first image is gone,
 * nobody receives: every other holder then lets go of the listener
 * (gm_sc_let_go()), so that the kernel fails routed calls instead of
 * leaving them waiting.
 *
 * An image that joins is filtered itself: its library's raw calls and its
 * listener's and workers' own calls reach listeners too.  They are
 * answered CONTINUE, which is what the first image's exempt text and
 * unfiltered threads amount to: by instruction pointer in this image, and
 * by thread name ("gm-sc-*") in any other listener, so that a listener
 * never waits for itself.
 */

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "gproc/gproc.h"
#include "gproc/spawner.h"
#include "lib/daemon.h"
#include "lib/ownfd.h"
#include "lib/procfile.h"
#include "lib/scm.h"
#include "lib/sys_raw.h"
#include "lib/thread.h"
#include "preload.h"
#include "seccomp_forwards.h"
#include "uapi/uapi.h"
#include "vcpu/irqchip.h"
#include "vcpu/vcpu.h"

#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif
#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef SECCOMP_USER_NOTIF_FLAG_CONTINUE
#define SECCOMP_USER_NOTIF_FLAG_CONTINUE (1UL << 0)
#endif

#define GM_KVMIO 0xAE

/* Routed system calls with no fd of ours: CONTINUE. */
#define GM_SC_CONTINUE 1

/* The listener's notification fd; -1 until installed.  Written before the
 * listener runs: at installation, or by a fork child's start. */
static int gm_sc_fd = -1;
/* 1 once the filter is installed (the preload's wrappers read it). */
int gm_seccomp_active;
static sem_t gm_sc_ready;
static sem_t gm_sc_bound; /* the listener bound the image's name (or could not) */
static bool gm_sc_files; /* GUESTMEM_SECCOMP=files: route file/socket calls */
/* Our end of the helper's socket: it hangs up when this image is gone. */
static int gm_sc_alive = -1;
/* The session's name (16 hex digits), the same in every image under the filter. */
#define GM_SC_SESSION_ENV "GUESTMEM_SECCOMP_SESSION"
static char gm_sc_session[17];
/* Bound to this image's name: forwarded notifications and wake-ups.  The
 * listener's; -1 until it runs (and in a fork child). */
static int gm_sc_fwd = -1;
/* This image got its listener from the helper (it is filtered itself). */
static bool gm_sc_joined;
/*
 * The receivers' socket pair: the first image and the helper hold its
 * receiving end, every other holder of the listener its watching end,
 * which hangs up once both receivers are gone (gm_sc_let_go()).  The first
 * image keeps both (its fork children inherit the watching end); -1 where
 * not held.
 */
static int gm_sc_recv_end = -1, gm_sc_watch = -1;
static ino_t gm_sc_watch_ino; /* a fork child checks its copy by it */
/* Thread names of the listener and its workers: their own calls are continued. */
#define GM_SC_THREAD_PREFIX "gm-sc-"

/* ---- the filter -------------------------------------------------------- */

/* A tiny assembler: jumps name instruction indices, resolved at the end. */
struct gm_bpf {
	struct sock_filter insn[160];
	int jt[160], jf[160]; /* target index, or -1 for "next" */
	int n;
};

static int gm_bpf_emit(struct gm_bpf *b, uint16_t code, uint32_t k, int jt, int jf)
{
	b->insn[b->n] = (struct sock_filter){ code, 0, 0, k };
	b->jt[b->n] = jt;
	b->jf[b->n] = jf;
	return b->n++;
}

static bool gm_bpf_link(struct gm_bpf *b)
{
	for (int i = 0; i < b->n; i++) {
		if (BPF_CLASS(b->insn[i].code) != BPF_JMP || BPF_OP(b->insn[i].code) == BPF_JA)
			continue;
		int t = b->jt[i] < 0 ? i + 1 : b->jt[i];
		int f = b->jf[i] < 0 ? i + 1 : b->jf[i];

		if (t <= i || f <= i || t - i - 1 > 255 || f - i - 1 > 255)
			return false;
		b->insn[i].jt = (uint8_t)(t - i - 1);
		b->insn[i].jf = (uint8_t)(f - i - 1);
	}
	return true;
}

#define GM_LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define GM_ARG_LO(i) ((uint32_t)offsetof(struct seccomp_data, args[i]))

/* The system calls routed only with GUESTMEM_SECCOMP=files. */
static const int gm_sc_file_nrs[] = {
	SYS_read,      SYS_write,	 SYS_readv,	   SYS_writev,	 SYS_pread64,
	SYS_pwrite64,  SYS_preadv,	 SYS_pwritev,	   SYS_preadv2,	 SYS_pwritev2,
	SYS_lseek,     SYS_sendto,	 SYS_recvfrom,	   SYS_sendmsg,	 SYS_recvmsg,
	SYS_sendmmsg,  SYS_recvmmsg,	 SYS_shutdown,	   SYS_getsockopt, SYS_setsockopt,
	SYS_getsockname, SYS_getpeername, SYS_bind,	   SYS_connect,	 SYS_listen,
	SYS_accept,    SYS_accept4,	 SYS_splice,	   SYS_tee,	 SYS_sendfile,
	SYS_copy_file_range, SYS_ftruncate, SYS_fsync,	   SYS_fdatasync, SYS_fchmod,
	SYS_fchown,	     SYS_fstat,	   SYS_newfstatat, SYS_statx,
};

/*
 * Build the program.  Labels are instruction indices known only once the
 * blocks are laid out, so the blocks are emitted in a fixed order with
 * forward references patched by index.
 */
struct gm_text_range {
	uintptr_t lo, hi;
};
#define GM_TEXT_MAX 8 /* this object, 2 sanitizers, 2 pieces each; the stub */

/*
 * Exempt text ranges (each within one 4 GiB window): the library's own,
 * and a sanitizer runtime's (see gm_text_cb).  Per range: the high word
 * must match, then lo <= low word < hi allows; any miss goes on to the
 * next range, and after the last one to the instruction the caller emits
 * next (its verdict).  Returns the index of the first instruction.
 */
static int gm_bpf_exempt_text(struct gm_bpf *b, const struct gm_text_range *text, int nr_text)
{
	int first = b->n, j_miss[3 * GM_TEXT_MAX], nmiss = 0;

	for (int r = 0; r < nr_text; r++) {
		int next;

		gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS,
			    offsetof(struct seccomp_data, instruction_pointer) + 4, -1, -1);
		j_miss[nmiss++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K,
					      (uint32_t)(text[r].lo >> 32), -1, 0);
		gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS,
			    offsetof(struct seccomp_data, instruction_pointer), -1, -1);
		j_miss[nmiss++] = gm_bpf_emit(b, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)text[r].lo,
					      -1, 0);
		j_miss[nmiss++] = gm_bpf_emit(b, BPF_JMP | BPF_JGE | BPF_K, (uint32_t)text[r].hi, 0,
					      -1);
		gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
		next = b->n; /* the next range's first instruction, or the verdict */
		b->jf[j_miss[nmiss - 3]] = next;
		b->jf[j_miss[nmiss - 2]] = next;
		b->jt[j_miss[nmiss - 1]] = next;
	}
	return first;
}

static int gm_sc_build(struct gm_bpf *b, const struct gm_text_range *text, int nr_text)
{
	int allow, notify, ip, ioctl_blk, madv_blk, j_arch, first_nr, fd0_blk, fd1_blk, fd01_blk;
	uint32_t floor = (uint32_t)gm_fd_floor();
	int nr_jumps[64], nr_kind[64], nj = 0;
	static const int mm_nrs[] = { SYS_fallocate, SYS_munmap, SYS_mremap, SYS_mprotect };
	static const uint32_t advices[] = { MADV_DONTNEED, MADV_FREE, MADV_REMOVE, 21 /* PAGEOUT */,
					    24 /* DONTNEED_LOCKED */ };

	memset(b, 0, sizeof(*b));
	gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), -1, -1);
	j_arch = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, -1, 0 /* allow */);
	gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), -1, -1);
	first_nr = b->n;
	nr_kind[nj] = 1; /* ioctl */
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, -1);
	nr_kind[nj] = 2; /* madvise */
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_madvise, 0, -1);
	for (size_t i = 0; i < ARRAY_SIZE(mm_nrs); i++) {
		nr_kind[nj] = 3;
		nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)mm_nrs[i], 0, -1);
	}
	/* The fd table, when an fd argument can be one of ours (lib/ownfd.h). */
	nr_kind[nj] = 4; /* close, dup: args[0] */
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_close, 0, -1);
	nr_kind[nj] = 4;
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_dup, 0, -1);
	nr_kind[nj] = 5; /* close_range: its upper bound, args[1] */
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, -1);
	nr_kind[nj] = 6; /* dup2, dup3: args[0] or args[1] */
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_dup2, 0, -1);
	nr_kind[nj] = 6;
	nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_dup3, 0, -1);
	if (gm_sc_files)
		for (size_t i = 0; i < ARRAY_SIZE(gm_sc_file_nrs); i++) {
			nr_kind[nj] = 3;
			nr_jumps[nj++] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K,
						     (uint32_t)gm_sc_file_nrs[i], 0, -1);
		}
	(void)first_nr;
	allow = gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
	/* ioctl: the type byte of the command (the kernel takes 32 bits). */
	ioctl_blk = gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(1), -1, -1);
	gm_bpf_emit(b, BPF_ALU | BPF_AND | BPF_K, 0xff00, -1, -1);
	int j_ioc = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, GM_KVMIO << 8, 0 /* ip */, -1);
	gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1); /* BPF jumps forward only */
	/* madvise: only the advices that drop or move pages out. */
	madv_blk = gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(2), -1, -1);
	int j_madv[ARRAY_SIZE(advices)];
	for (size_t i = 0; i < ARRAY_SIZE(advices); i++)
		j_madv[i] = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, advices[i], 0 /* ip */, -1);
	gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
	/* fd-table calls: only numbers at or above the floor can be ours. */
	fd0_blk = gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(0), -1, -1);
	int j_fd0 = gm_bpf_emit(b, BPF_JMP | BPF_JGE | BPF_K, floor, 0 /* ip */, -1);
	gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
	fd1_blk = gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(1), -1, -1);
	int j_fd1 = gm_bpf_emit(b, BPF_JMP | BPF_JGE | BPF_K, floor, 0 /* ip */, -1);
	gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
	fd01_blk = gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(0), -1, -1);
	int j_fd01a = gm_bpf_emit(b, BPF_JMP | BPF_JGE | BPF_K, floor, 0 /* ip */, -1);
	gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(1), -1, -1);
	int j_fd01b = gm_bpf_emit(b, BPF_JMP | BPF_JGE | BPF_K, floor, 0 /* ip */, -1);
	gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
	ip = gm_bpf_exempt_text(b, text, nr_text);
	notify = gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF, -1, -1);

	b->jf[j_arch] = allow;
	for (int i = 0; i < nj; i++) {
		const int blk[] = { -1, ioctl_blk, madv_blk, ip, fd0_blk, fd1_blk, fd01_blk };

		b->jt[nr_jumps[i]] = blk[nr_kind[i]];
	}
	b->jt[j_ioc] = ip;
	b->jt[j_fd0] = b->jt[j_fd1] = b->jt[j_fd01a] = b->jt[j_fd01b] = ip;
	for (size_t i = 0; i < ARRAY_SIZE(advices); i++)
		b->jt[j_madv[i]] = ip;
	(void)notify;
	return gm_bpf_link(b) ? 0 : -EINVAL;
}

/*
 * Once nobody receives: raw KVM ioctls fail with EIO, as the guestmem side
 * being gone should look (issue 10), rather than the kernel's ENOSYS for a
 * notification nobody listens to.  ERRNO takes precedence over USER_NOTIF,
 * so this small filter on top decides for them; the address-space calls
 * and the fd-table calls the routing filter also notifies get ENOSYS (no
 * filter can let them through: ALLOW ranks below USER_NOTIF).
 */
static int gm_sc_build_dead(struct gm_bpf *b, const struct gm_text_range *text, int nr_text)
{
	int j_arch, j_nr, j_ioc, allow, ip;

	memset(b, 0, sizeof(*b));
	gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), -1, -1);
	j_arch = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, -1, 0 /* allow */);
	gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), -1, -1);
	j_nr = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, -1, 0 /* allow */);
	gm_bpf_emit(b, BPF_LD | BPF_W | BPF_ABS, GM_ARG_LO(1), -1, -1);
	gm_bpf_emit(b, BPF_ALU | BPF_AND | BPF_K, 0xff00, -1, -1);
	j_ioc = gm_bpf_emit(b, BPF_JMP | BPF_JEQ | BPF_K, GM_KVMIO << 8, 0 /* ip */, -1);
	allow = gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, -1, -1);
	ip = gm_bpf_exempt_text(b, text, nr_text);
	gm_bpf_emit(b, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EIO, -1, -1);
	b->jf[j_arch] = b->jf[j_nr] = allow;
	b->jt[j_ioc] = ip;
	return gm_bpf_link(b) ? 0 : -EINVAL;
}

/*
 * The exempt text: this object's executable segment (where sys_raw.h's
 * system calls are), and a sanitizer runtime's.  The sanitizers make raw
 * system calls of their own, some from a task that has stopped every
 * thread of the process, this listener included (LeakSanitizer's
 * StopTheWorld at exit): routed, they would wait for ever.  Their memory
 * is their own allocator's, which backs no memslot the VMM set up.
 */
struct gm_text {
	uintptr_t probe;
	struct gm_text_range r[GM_TEXT_MAX];
	int n;
};
/* This image's exempt text, written once before the listener runs. */
static struct gm_text gm_sc_text;

static bool gm_is_sanitizer(const char *name)
{
	static const char *const rt[] = { "/libasan.so", "/libtsan.so", "/liblsan.so",
					  "/libubsan.so", "/libclang_rt." };

	for (size_t i = 0; name && i < ARRAY_SIZE(rt); i++)
		if (strstr(name, rt[i]))
			return true;
	return false;
}

static int gm_text_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct gm_text *t = data;
	bool san = gm_is_sanitizer(info->dlpi_name);

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + p->p_vaddr, hi = lo + p->p_memsz;

		if (p->p_type != PT_LOAD || !(p->p_flags & PF_X) || hi <= lo ||
		    !(san || (t->probe >= lo && t->probe < hi)))
			continue;
		/* A segment across a 4 GiB line (ASLR puts one there now and
		 * then) is two ranges: the filter compares each word apart. */
		while (lo < hi && t->n < GM_TEXT_MAX) {
			uintptr_t line = (lo | 0xffffffffUL) + 1, end = hi < line ? hi : line;
			struct gm_text_range piece = { lo, end };

			/* The piece with this object's probe goes first: it must be there. */
			if (!san && t->n && t->probe >= lo && t->probe < end) {
				t->r[t->n] = t->r[0];
				t->r[0] = piece;
			} else {
				t->r[t->n] = piece;
			}
			t->n++;
			lo = end;
		}
	}
	return 0;
}

/* ---- answering --------------------------------------------------------- */

static bool gm_sc_id_valid(uint64_t id)
{
	return GM_RAW_SYSCALL(SYS_ioctl, gm_sc_fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

/* Reply; false if the caller is gone (interrupted, or killed). */
static bool gm_sc_send(uint64_t id, long val, int err, bool cont)
{
	struct seccomp_notif_resp r = {
		.id = id,
		.val = cont ? 0 : val,
		.error = cont ? 0 : -err,
		.flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0,
	};

	while (GM_RAW_SYSCALL(SYS_ioctl, gm_sc_fd, SECCOMP_IOCTL_NOTIF_SEND, &r))
		if (errno != EINTR)
			return false;
	return true;
}

/* Whether @tid is a thread of this process (a fork child's is not). */
static bool gm_sc_ours(uint32_t tid)
{
	return GM_RAW_SYSCALL(SYS_tgkill, getpid(), tid, 0) == 0;
}

/* The KVM ioctls that create an fd: if the caller is gone, close it. */
static bool gm_sc_creates_fd(unsigned int cmd)
{
	switch (cmd) {
	case KVM_CREATE_VM:
	case KVM_CREATE_VCPU:
	case KVM_CREATE_GUEST_MEMFD:
	case KVM_CREATE_DEVICE:
	case KVM_GET_STATS_FD:
		return true;
	}
	return false;
}

/*
 * A guestmem object fd (this image's, or one it inherited or received:
 * the libc wrappers answer for those too), or one of guestmem's own
 * (answered EBADF).  @by_name: a socket is looked up by its name even if
 * no libc call of this image saw it arrive (a raw recvmsg); once one is
 * found, gm_file_lookup_any() finds them all.
 */
static bool gm_is_our_fd(int fd, bool by_name)
{
	return gm_fd_is_own(fd) || gm_file_is_object_fd(fd, by_name);
}

/* ---- file and socket calls on a guestmem fd (GUESTMEM_SECCOMP=files) ---- */

/* The first iovec of a vector call, for the positional forms. */
static int gm_sc_iov0(uint64_t uiov, uint64_t cnt, struct iovec *iov)
{
	iov->iov_base = NULL;
	iov->iov_len = 0;
	if (!cnt)
		return 0;
	return gm_copy_from_user(iov, (void *)uiov, sizeof(*iov));
}

/* A file/socket call on guestmem fd args[0]; libc style (-1, errno). */
static long gm_sc_file_call(const struct seccomp_data *d, bool *handled)
{
	const __u64 *a = d->args;
	int fd = (int)a[0];
	struct iovec iov;
	ssize_t sr = -1;
	off_t off = -1;
	int ir = -1;

	switch (d->nr) {
	case SYS_read:
		*handled = gm_uapi_read(fd, (void *)a[1], a[2], &sr);
		return sr;
	case SYS_write:
		*handled = gm_uapi_write(fd, (void *)a[1], a[2], &sr);
		return sr;
	case SYS_readv:
	case SYS_writev:
		*handled = gm_uapi_readv(fd, (void *)a[1], (int)a[2], d->nr == SYS_writev, &sr);
		return sr;
	case SYS_pread64:
	case SYS_pwrite64:
		*handled = gm_uapi_pread(fd, (void *)a[1], a[2], (off_t)a[3], d->nr == SYS_pwrite64,
					 &sr);
		return sr;
	case SYS_preadv2:
	case SYS_pwritev2:
		/* Offset -1: the file position, as readv/writev. */
		if ((int64_t)a[3] == -1) {
			*handled = gm_uapi_readv(fd, (void *)a[1], (int)a[2],
						 d->nr == SYS_pwritev2, &sr);
			return sr;
		}
		/* fallthrough */
	case SYS_preadv:
	case SYS_pwritev:
		if (gm_sc_iov0(a[1], a[2], &iov)) {
			*handled = gm_is_our_fd(fd, false);
			errno = EFAULT;
			return -1;
		}
		*handled = gm_uapi_pread(fd, iov.iov_base, iov.iov_len, (off_t)a[3],
					 d->nr == SYS_pwritev || d->nr == SYS_pwritev2, &sr);
		return sr;
	case SYS_lseek:
		*handled = gm_uapi_lseek(fd, (off_t)a[1], (int)a[2], &off);
		return off;
	case SYS_ftruncate:
		*handled = gm_uapi_ftruncate(fd, (off_t)a[1], &ir);
		return ir;
	case SYS_fsync:
	case SYS_fdatasync:
		*handled = gm_uapi_fsync(fd, &ir);
		return ir;
	case SYS_fchmod:
		*handled = gm_uapi_fchmod(fd, (mode_t)a[1], &ir);
		return ir;
	case SYS_fchown:
		*handled = gm_uapi_fchown(fd, (uid_t)a[1], (gid_t)a[2], &ir);
		return ir;
	/* libc's own fstat (posix_fallocate's fallback asks for the file type). */
	case SYS_fstat:
		*handled = gm_uapi_fstat(fd, (struct stat *)a[1], &ir);
		return ir;
	case SYS_newfstatat:
		*handled = gm_uapi_fstatat(fd, (const char *)a[1], (struct stat *)a[2], (int)a[3],
					   &ir);
		return ir;
	case SYS_statx:
		*handled = gm_uapi_statx(fd, (const char *)a[1], (int)a[2], (unsigned int)a[3],
					 (struct statx *)a[4], &ir);
		return ir;
	case SYS_splice:
	case SYS_tee:
	case SYS_sendfile:
	case SYS_copy_file_range:
		*handled = gm_uapi_xfer(d->nr, a[0], a[1], a[2], a[3], a[4], a[5], &sr);
		return sr;
	default:
		/* The socket calls: sockfd_lookup() finds a file that is not a socket. */
		*handled = gm_uapi_sock(fd, &ir);
		return ir;
	}
}

/* For the two-fd calls: whether the fd that is not args[0] is ours. */
static bool gm_sc_other_fd_ours(const struct seccomp_data *d)
{
	switch (d->nr) {
	case SYS_splice:
	case SYS_copy_file_range:
		return gm_is_our_fd((int)d->args[2], false);
	case SYS_tee:
		return gm_is_our_fd((int)d->args[1], false);
	case SYS_sendfile:
		return gm_is_our_fd((int)d->args[0], false);
	}
	return false;
}

/* libc-style result of one routed fd call on a guestmem fd; *handled = false if not ours. */
static long gm_sc_fd_call(const struct seccomp_data *d, bool *handled)
{
	const __u64 *a = d->args;
	int fd = (int)a[0];
	long ret = -1;
	int r;

	*handled = true;
	switch (d->nr) {
	case SYS_ioctl:
		*handled = gm_uapi_ioctl(fd, a[1], a[2], &r);
		ret = r;
		break;
	case SYS_fallocate:
		*handled = gm_uapi_fallocate(fd, (int)a[1], (off_t)a[2], (off_t)a[3], &r);
		ret = r;
		break;
	default:
		ret = gm_sc_file_call(d, handled);
		break;
	}
	return ret;
}

/*
 * Raw KVM_RUN.  The worker running it blocks every signal, so a signal to
 * the VMM's thread cannot stop the guest the way it stops a libc KVM_RUN.
 * The kernel withdraws the notification instead (the thread's call is
 * restarted or fails with EINTR).  The listener notices (a second KVM_RUN
 * on the same vCPU, or ID_VALID failing on its periodic look) and kicks
 * the vCPU as a signal would: the guest stops at its next stop point and
 * KVM_RUN ends with EINTR and KVM_EXIT_INTR.  A second KVM_RUN that arrives
 * while the first still runs is answered EINTR, as the kernel answers a
 * KVM_RUN a signal interrupted.  If the first one had produced a real exit
 * nobody could be told about, the next KVM_RUN returns it (0, with the exit
 * in kvm_run) without entering the guest, so that no exit is lost.
 */
#define GM_SC_RUNS 64

struct gm_sc_run {
	struct gm_file *f; /* the vCPU's file (a reference), NULL if free */
	uint64_t id;	   /* the notification being served */
	bool busy;	   /* a worker is inside KVM_RUN */
	bool lost_exit;	   /* finished with an exit whose answer was lost */
};

/* gm_sc_run_lock: gm_sc_runs[]; taken by the listener and the workers, and
 * across fork (before gm_sc_pool_lock: gm_sc_atfork_prepare()). */
static pthread_mutex_t gm_sc_run_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gm_sc_run gm_sc_runs[GM_SC_RUNS];
static int gm_sc_nr_busy; /* busy entries (atomic): the listener polls while > 0 */
static void gm_sc_wake_listener(void);
static void gm_sc_service_enter(const char *name);

static void gm_sc_kick(struct gm_file *f)
{
	struct kvm_vcpu *v = f->obj;

	WRITE_ONCE(v->kick, true);
	kvm_vcpu_wake_up(v);
}

static struct gm_sc_run *gm_sc_run_find(struct gm_file *f)
{
	for (int i = 0; i < GM_SC_RUNS; i++)
		if (gm_sc_runs[i].f && gm_sc_runs[i].f->obj == f->obj)
			return &gm_sc_runs[i];
	return NULL;
}

/* The listener's periodic look: kick a KVM_RUN whose caller is gone. */
static void gm_sc_run_watch(void)
{
	pthread_mutex_lock(&gm_sc_run_lock);
	for (int i = 0; i < GM_SC_RUNS; i++)
		if (gm_sc_runs[i].busy && !gm_sc_id_valid(gm_sc_runs[i].id))
			gm_sc_kick(gm_sc_runs[i].f);
	pthread_mutex_unlock(&gm_sc_run_lock);
}

/*
 * A raw KVM_RUN on @fd for notification @id: answered here (EINTR, or an
 * exit left over) or run.  Returns true if it was ours.
 */
static bool gm_sc_kvm_run(int fd, uint64_t id)
{
	struct gm_file *f = gm_file_lookup(fd);
	struct gm_sc_run *e;
	int r = -1, err = 0;

	if (!f) {
		/* Another process's vCPU (inherited): its answer, not the socket's. */
		if (!gm_uapi_ioctl(fd, KVM_RUN, 0, &r))
			return false;
		gm_sc_send(id, r, r < 0 ? errno : 0, false);
		return true;
	}
	if (f->type != GM_FILE_VCPU) {
		gm_file_put(f);
		gm_uapi_ioctl(fd, KVM_RUN, 0, &r); /* the object's own answer */
		gm_sc_send(id, r, r < 0 ? errno : 0, false);
		return true;
	}
	pthread_mutex_lock(&gm_sc_run_lock);
	e = gm_sc_run_find(f);
	if (e && e->busy) {
		gm_sc_kick(e->f);
		pthread_mutex_unlock(&gm_sc_run_lock);
		gm_file_put(f);
		gm_sc_send(id, -1, EINTR, false);
		return true;
	}
	if (e && e->lost_exit) {
		struct gm_file *old = e->f;

		e->f = NULL;
		pthread_mutex_unlock(&gm_sc_run_lock);
		gm_file_put(old); /* outside the lock: see below */
		gm_file_put(f);
		gm_sc_send(id, 0, 0, false);
		return true;
	}
	for (int i = 0; !e && i < GM_SC_RUNS; i++)
		if (!gm_sc_runs[i].f)
			e = &gm_sc_runs[i];
	if (e) {
		*e = (struct gm_sc_run){ .f = f, .id = id, .busy = true };
		__atomic_add_fetch(&gm_sc_nr_busy, 1, __ATOMIC_RELEASE);
		gm_sc_wake_listener(); /* it may sleep in poll without a timeout */
	}
	pthread_mutex_unlock(&gm_sc_run_lock);
	if (!e) /* more vCPUs in raw KVM_RUN than slots: run without the watch */
		gm_file_put(f);
	if (!gm_uapi_ioctl(fd, KVM_RUN, 0, &r)) {
		r = -1;
		errno = EBADF; /* closed meanwhile */
	}
	if (r < 0)
		err = errno;
	bool sent = gm_sc_send(id, r, err, false);

	/*
	 * After the answer (see gm_sc_serve).  The put is the last reference
	 * if the vCPU fd was closed during its own KVM_RUN: the VM may then be
	 * destroyed, and its C guest threads joined, whose exit (glibc's
	 * madvise of the stack) is a routed call the listener must be free to
	 * answer, so never under gm_sc_run_lock, which the listener takes.
	 */
	struct gm_file *put = NULL;

	if (!e)
		return true;
	pthread_mutex_lock(&gm_sc_run_lock);
	e->busy = false;
	__atomic_sub_fetch(&gm_sc_nr_busy, 1, __ATOMIC_RELAXED);
	e->lost_exit = !sent && r == 0;
	if (!e->lost_exit) {
		put = e->f;
		e->f = NULL;
	}
	pthread_mutex_unlock(&gm_sc_run_lock);
	if (put)
		gm_file_put(put);
	return true;
}

struct gm_sc_work {
	struct seccomp_notif n;
	bool foreign; /* another process's call: gm_sc_foreign() */
	struct gm_sc_work *next;
};

/*
 * The workers.  The listener never starts one, nor calls malloc: either
 * takes a lock of libc's that another thread of the process may hold while
 * it makes a call the filter routes (glibc frees cached thread stacks with
 * munmap under the lock pthread_create takes; malloc grows a heap with
 * mprotect under its arena's lock), and that call waits for the listener.
 * So the listener queues each item, in a slot of a fixed pool, and asks
 * the spawner thread for a new worker when the waiting and starting ones
 * are fewer than the items; a spawner that waits for libc's lock leaves
 * the listener free to answer the holder's call.  An item never waits
 * behind a long KVM_RUN.
 */
/* gm_sc_pool_lock: the queue, the free slots and the counts below;
 * innermost, no call under it (held across fork after gm_sc_run_lock). */
static pthread_mutex_t gm_sc_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gm_sc_pool_cv = PTHREAD_COND_INITIALIZER;	 /* an item queued */
static pthread_cond_t gm_sc_spawn_cv = PTHREAD_COND_INITIALIZER; /* a worker wanted */
static struct gm_sc_work *gm_sc_queue, **gm_sc_queue_tail = &gm_sc_queue;
static int gm_sc_nr_queued;   /* items in the queue */
static int gm_sc_nr_idle;     /* workers waiting for an item */
static int gm_sc_nr_starting; /* workers wanted or starting, not yet waiting */
static int gm_sc_nr_wanted;   /* of those, the ones the spawner has not begun */
/* The spawner thread (atomic): none yet, being started, running, or it
 * could not start (the listener then starts workers itself). */
enum { GM_SC_SPAWNER_NONE, GM_SC_SPAWNER_STARTING, GM_SC_SPAWNER_UP, GM_SC_SPAWNER_FAILED };
static int gm_sc_spawner_state;
/* A fork child that holds objects starts its listener in fork() and the
 * spawner only when it needs one (gm_sc_want_spawner()). */
static bool gm_sc_spawner_deferred;
/* Items queued and not yet taken: one per caller waiting for a worker to
 * start; past that, malloc's (the listener's only use of it). */
#define GM_SC_SLOTS 256
static struct gm_sc_work gm_sc_slots[GM_SC_SLOTS];
static struct gm_sc_work *gm_sc_free_slots; /* given back by workers */
static int gm_sc_slots_used;		     /* never handed out past this */

static bool gm_sc_is_mm(int nr)
{
	return nr == SYS_munmap || nr == SYS_mremap || nr == SYS_madvise || nr == SYS_mprotect;
}

static void gm_sc_mm(const struct seccomp_notif *n);
static void gm_sc_foreign(const struct seccomp_notif *n);
static void gm_sc_spawn_one(void);
static void gm_sc_want_spawner(void);

/*
 * One routed fd or address-space call: it may block (KVM_RUN).  The answer
 * is the last thing it does with the allocator or a lock the caller's
 * process could inherit: the caller may fork the moment it is answered,
 * and a child must not inherit an allocator lock held by this thread
 * (ASan's allocator, unlike glibc's, is not locked across fork).
 */
static void gm_sc_serve(const struct gm_sc_work *w)
{
	const struct seccomp_notif *n = &w->n;
	const struct seccomp_data *d = &n->data;
	bool handled;
	long ret;
	int err = 0;

	gm_uapi_in_library = 0;
	if (w->foreign) {
		gm_sc_foreign(n);
		return;
	}
	if (gm_sc_is_mm(d->nr)) {
		gm_sc_mm(n);
		return;
	}
	if (!gm_sc_id_valid(n->id))
		return;
	if (d->nr == SYS_ioctl && (unsigned int)d->args[1] == KVM_RUN) {
		if (!gm_sc_kvm_run((int)d->args[0], n->id))
			gm_sc_send(n->id, 0, 0, true);
		return;
	}
	errno = 0;
	ret = gm_sc_fd_call(d, &handled);
	if (!handled) {
		gm_sc_send(n->id, 0, 0, true);
		return;
	}
	if (ret == -1)
		err = errno;
	if (!gm_sc_send(n->id, ret, err, false) && d->nr == SYS_ioctl && ret >= 0 &&
	    gm_sc_creates_fd((unsigned int)d->args[1]))
		gm_raw_close((int)ret); /* nobody will ever see this fd */
}

/* A slot for @n, or NULL; the listener's. */
static struct gm_sc_work *gm_sc_work_new(const struct seccomp_notif *n, bool foreign)
{
	struct gm_sc_work *w;

	pthread_mutex_lock(&gm_sc_pool_lock);
	w = gm_sc_free_slots;
	if (w)
		gm_sc_free_slots = w->next;
	else if (gm_sc_slots_used < GM_SC_SLOTS)
		w = &gm_sc_slots[gm_sc_slots_used++];
	pthread_mutex_unlock(&gm_sc_pool_lock);
	if (!w)
		w = malloc(sizeof(*w));
	if (w) {
		w->n = *n;
		w->foreign = foreign;
	}
	return w;
}

/* The next queued item, copied to *@n, its slot freed; under gm_sc_pool_lock. */
static bool gm_sc_take_locked(struct gm_sc_work *n, struct gm_sc_work **spill)
{
	struct gm_sc_work *w = gm_sc_queue;

	*spill = NULL;
	if (!w)
		return false;
	gm_sc_queue = w->next;
	if (!gm_sc_queue)
		gm_sc_queue_tail = &gm_sc_queue;
	gm_sc_nr_queued--;
	*n = *w;
	if (w >= gm_sc_slots && w < gm_sc_slots + GM_SC_SLOTS) {
		w->next = gm_sc_free_slots;
		gm_sc_free_slots = w;
	} else {
		*spill = w; /* freed by the caller, outside the lock */
	}
	return true;
}

/* Queued items no waiting or starting worker will take; under gm_sc_pool_lock. */
static bool gm_sc_uncovered_locked(void)
{
	return gm_sc_nr_queued > gm_sc_nr_idle + gm_sc_nr_starting;
}

/* Started by the spawner, for an item already queued. */
static void *gm_sc_worker(void *arg)
{
	struct gm_sc_work n;
	struct gm_sc_work *spill;

	(void)arg;
	gm_sc_service_enter(GM_SC_THREAD_PREFIX "worker");
	pthread_mutex_lock(&gm_sc_pool_lock);
	gm_sc_nr_starting--;
	for (;;) {
		gm_sc_nr_idle++;
		while (!gm_sc_take_locked(&n, &spill))
			pthread_cond_wait(&gm_sc_pool_cv, &gm_sc_pool_lock);
		gm_sc_nr_idle--;
		pthread_mutex_unlock(&gm_sc_pool_lock);
		free(spill); /* before the answer: see gm_sc_serve */
		gm_sc_serve(&n);
		pthread_mutex_lock(&gm_sc_pool_lock);
	}
	return NULL;
}

/*
 * Queue @n for a waiting worker, or for one the spawner starts; false if
 * there is no room (no slot, no memory): the caller answers it itself.
 */
static bool gm_sc_queue_work(const struct seccomp_notif *n, bool foreign)
{
	struct gm_sc_work *w = gm_sc_work_new(n, foreign);
	bool want;

	if (!w)
		return false;

	pthread_mutex_lock(&gm_sc_pool_lock);
	w->next = NULL;
	*gm_sc_queue_tail = w;
	gm_sc_queue_tail = &w->next;
	gm_sc_nr_queued++;
	if (gm_sc_nr_idle)
		pthread_cond_signal(&gm_sc_pool_cv);
	want = gm_sc_uncovered_locked();
	if (want) {
		gm_sc_nr_starting++;
		gm_sc_nr_wanted++;
		pthread_cond_signal(&gm_sc_spawn_cv);
	}
	pthread_mutex_unlock(&gm_sc_pool_lock);
	if (want)
		gm_sc_want_spawner();
	return true;
}

/*
 * Start the workers wanted here, on this thread: when the spawner could
 * not start (no thread for it), with the risk it is there to avoid.
 */
static void gm_sc_spawn_wanted_here(void)
{
	pthread_mutex_lock(&gm_sc_pool_lock);
	while (gm_sc_nr_wanted) {
		gm_sc_nr_wanted--;
		pthread_mutex_unlock(&gm_sc_pool_lock);
		gm_sc_spawn_one();
		pthread_mutex_lock(&gm_sc_pool_lock);
	}
	pthread_mutex_unlock(&gm_sc_pool_lock);
}

/*
 * Start one worker that was wanted.  Without a thread (out of memory,
 * RLIMIT_NPROC), answer here an item that no worker will take: an
 * address-space call is made here, anything else gets EAGAIN, the
 * kernel's answer when it cannot clone.
 */
static void gm_sc_spawn_one(void)
{
	struct gm_sc_work n;
	struct gm_sc_work *spill = NULL;
	bool took = false;

	if (!gm_thread_start(gm_sc_worker, NULL, 0))
		return;
	pthread_mutex_lock(&gm_sc_pool_lock);
	gm_sc_nr_starting--;
	if (gm_sc_uncovered_locked())
		took = gm_sc_take_locked(&n, &spill);
	pthread_mutex_unlock(&gm_sc_pool_lock);
	free(spill);
	if (took && (n.foreign || gm_sc_is_mm(n.n.data.nr)))
		gm_sc_serve(&n);
	else if (took)
		gm_sc_send(n.n.id, 0, EAGAIN, false);
}

/* The spawner: starts the workers the listener asks for. */
static void *gm_sc_spawner(void *arg)
{
	(void)arg;
	gm_sc_service_enter(GM_SC_THREAD_PREFIX "spawner");
	pthread_mutex_lock(&gm_sc_pool_lock);
	for (;;) {
		while (!gm_sc_nr_wanted)
			pthread_cond_wait(&gm_sc_spawn_cv, &gm_sc_pool_lock);
		gm_sc_nr_wanted--;
		pthread_mutex_unlock(&gm_sc_pool_lock);
		gm_sc_spawn_one();
		pthread_mutex_lock(&gm_sc_pool_lock);
	}
	return NULL;
}

/* An address-space call of this process: notifier, the call, notifier. */
static void gm_sc_mm(const struct seccomp_notif *n)
{
	const __u64 *a = n->data.args;
	void *tok = NULL;
	long ret;
	int err = 0, done;

	if (!gm_sc_id_valid(n->id))
		return;
	/* Calls made for library code never get here: gm_sc_mm_noted(). */
	switch (n->data.nr) {
	case SYS_munmap:
		tok = gm_uapi_munmap_pre((void *)a[0], a[1]);
		break;
	case SYS_mremap:
		tok = gm_uapi_mremap_pre((void *)a[0], a[1], a[2], (int)a[3], (void *)a[4]);
		break;
	case SYS_madvise:
		tok = gm_uapi_madvise_pre((void *)a[0], a[1], (int)a[2]);
		/* What the madvise wrapper does: converted RAM reads back zeros. */
		if (gm_uapi_madvise_discard((void *)a[0], a[1], (int)a[2], &done)) {
			ret = done;
			goto out;
		}
		break;
	case SYS_mprotect:
		tok = gm_uapi_mprotect_pre((void *)a[0], a[1]);
		break;
	}
	/* The same mm: the call has the same effect made from this thread. */
	ret = GM_RAW_SYSCALL(n->data.nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (ret == -1)
		err = errno;
out:
	gm_uapi_mm_post(tok);
	gm_sc_send(n->id, ret, err, false);
}

/*
 * A notification from another process: a fork child shares the filter,
 * but not our listener (threads do not survive fork) nor our address
 * space.  Its address-space calls change only its own mm, which no VM of
 * ours maps: CONTINUE.  A KVM ioctl or fallocate on an fd it inherited
 * from us: the object lives here, so take a copy of its fd (pidfd_getfd)
 * and answer as the kernel answers a process that is not the VM's
 * creator: EIO for VM and vCPU ioctls, the object's answer for a
 * guest_memfd's fallocate and for /dev/kvm's scalar queries.  The rest
 * (a raw KVM_CREATE_VM, whose VM would belong to this process, or an
 * argument in the child's memory): CONTINUE, the socket's ENOTTY; the
 * README lists it.
 */
static void gm_sc_foreign(const struct seccomp_notif *n)
{
	const __u64 *a = n->data.args;
	struct gm_file *f = NULL;
	int pidfd, fd = -1, r = 0;
	bool done = false;

	if (n->data.nr != SYS_ioctl && n->data.nr != SYS_fallocate)
		goto cont;
	pidfd = (int)GM_RAW_SYSCALL(SYS_pidfd_open, n->pid, 0);
	if (pidfd < 0) /* a thread that is not its group's leader (before 6.9) */
		pidfd = (int)GM_RAW_SYSCALL(SYS_pidfd_open, n->pid, O_EXCL /* PIDFD_THREAD */);
	if (pidfd < 0)
		goto cont;
	fd = (int)GM_RAW_SYSCALL(SYS_pidfd_getfd, pidfd, (int)a[0], 0);
	gm_raw_close(pidfd);
	if (fd < 0)
		goto cont;
	f = gm_file_lookup(fd);
	if (!f || !gm_sc_id_valid(n->id))
		goto cont;
	if (n->data.nr == SYS_fallocate) {
		done = gm_uapi_fallocate(fd, (int)a[1], (off_t)a[2], (off_t)a[3], &r);
	} else if (f->type == GM_FILE_VM || f->type == GM_FILE_VCPU) {
		done = true;
		r = -1;
		errno = EIO;
	} else if (f->type != GM_FILE_SYSTEM) {
		done = true; /* guest_memfd and stats files have no KVM ioctls */
		r = -1;
		errno = ENOTTY;
	} else if ((unsigned int)a[1] == KVM_GET_API_VERSION ||
		   (unsigned int)a[1] == KVM_CHECK_EXTENSION ||
		   (unsigned int)a[1] == KVM_GET_VCPU_MMAP_SIZE) {
		/* Only the scalar queries: a pointer argument points into the child. */
		done = gm_uapi_ioctl(fd, a[1], a[2], &r);
	}
cont:
	if (f)
		gm_file_put(f);
	if (fd >= 0)
		gm_raw_close(fd);
	if (done)
		gm_sc_send(n->id, r, r == -1 ? errno : 0, false);
	else
		gm_sc_send(n->id, 0, 0, true);
}

/* gm_sc_foreign() from the listener: in a worker if it needs one. */
static void gm_sc_foreign_queue(const struct seccomp_notif *n)
{
	if (n->data.nr != SYS_ioctl && n->data.nr != SYS_fallocate)
		gm_sc_send(n->id, 0, 0, true);
	/* Its lookups, calls and puts may allocate or free: never here. */
	else if (!gm_sc_queue_work(n, true))
		gm_sc_foreign(n);
}

/*
 * A raw close, close_range, dup, dup2 or dup3 whose fd argument may be one
 * of guestmem's own: answered as the libc wrappers answer (uapi/sys.c), or
 * continued.  The listener shares the caller's fd table (a thread of the
 * VMM), except after CLOSE_RANGE_UNSHARE, which it therefore continues.
 */
static bool gm_sc_fdtab(const struct seccomp_notif *n)
{
	const __u64 *a = n->data.args;
	bool handled = false;
	int r = -1;

	switch (n->data.nr) {
	case SYS_close:
		handled = gm_fd_is_own((int)a[0]);
		errno = EBADF;
		break;
	case SYS_dup:
		handled = gm_uapi_dup((int)a[0], &r);
		break;
	case SYS_dup2:
	case SYS_dup3:
		handled = gm_uapi_dup2((int)a[0], (int)a[1], (int)a[2], n->data.nr == SYS_dup3, &r);
		break;
	case SYS_close_range:
		if (!((int)a[2] & CLOSE_RANGE_UNSHARE))
			handled = gm_uapi_close_range((unsigned int)a[0], (unsigned int)a[1],
						      (int)a[2], &r);
		break;
	default:
		return false;
	}
	gm_sc_send(n->id, r, handled && r < 0 ? errno : 0, !handled);
	return true;
}

/*
 * Whether an address-space call may touch memory that ever backed a
 * memslot (src/uapi/hva.c).  If not, no notifier is due and the kernel
 * makes the call (CONTINUE) without a worker: ld.so's mprotect of a
 * library's RELRO during dlopen, for one, comes with the loader's lock
 * held, which the spawner needs to start a worker (pthread_create takes
 * it for the stack cache): that call must never wait for a worker.  A
 * call made for library code on its thread (malloc's, with a lock of the
 * library held) needs no notifier either (gm_sc_mm()).  Never waits for
 * a lock: "maybe" sends it to a worker, which asks again.
 */
static bool gm_sc_mm_noted(const struct seccomp_notif *n)
{
	const __u64 *a = n->data.args;

	/* A libc call made for library code on its thread (malloc's mprotect)
	 * is the library's own: no notifier, as the wrapper would skip it
	 * there, and that thread may hold the locks the notifier takes.  It
	 * is blocked in the call, so the answer cannot change before a
	 * worker would run gm_sc_mm(). */
	if (gm_uapi_tid_in_library((int)n->pid))
		return false;
	if (a[0] + a[1] < a[0])
		return true; /* wraps: the kernel answers it, let the wrapper path decide */
	if (gm_uapi_hva_maybe_noted(a[0], a[0] + a[1]))
		return true;
	return n->data.nr == SYS_mremap && (a[3] & MREMAP_FIXED) && a[4] + a[2] >= a[4] &&
	       gm_uapi_hva_maybe_noted(a[4], a[4] + a[2]);
}


/* ---- the session: the images that share the listener ------------------- */

/* The abstract name of @tgid's listener, or (@tgid < 0) of the helper. */
static socklen_t gm_sc_addr(struct sockaddr_un *a, long tgid)
{
	int n;

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (tgid < 0)
		n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "guestmem-sc:%s",
			     gm_sc_session);
	else
		n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "guestmem-sc:%s:%ld",
			     gm_sc_session, tgid);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/*
 * This image's listener and workers, by tid (atomic slots, 0 = free): a
 * joined image's routed calls from them are continued (see the top).  A
 * worker past the last slot is served as any thread running library code.
 */
#define GM_SC_SERVICE_MAX 64
static int gm_sc_service_tids[GM_SC_SERVICE_MAX];

static void gm_sc_service_enter(const char *name)
{
	int tid = (int)GM_RAW_SYSCALL(SYS_gettid);

	prctl(PR_SET_NAME, name, 0, 0, 0);
	for (int i = 0; i < GM_SC_SERVICE_MAX; i++) {
		int zero = 0;

		if (__atomic_compare_exchange_n(&gm_sc_service_tids[i], &zero, tid, false,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED))
			return;
	}
}

static bool gm_sc_service_tid(int tid)
{
	for (int i = 0; i < GM_SC_SERVICE_MAX; i++)
		if (__atomic_load_n(&gm_sc_service_tids[i], __ATOMIC_ACQUIRE) == tid)
			return true;
	return false;
}

static bool gm_sc_in_text(uint64_t ip)
{
	unsigned long gate = __atomic_load_n(&gm_raw_gate, __ATOMIC_RELAXED);

	/* The gate, where the first image's filter does not exempt it. */
	if (gate && ip - gate < 4096)
		return true;
	for (int i = 0; i < gm_sc_text.n; i++)
		if (ip >= gm_sc_text.r[i].lo && ip < gm_sc_text.r[i].hi)
			return true;
	return false;
}

/*
 * Another process's thread @tid: its thread group, and whether it is a
 * listener's or worker's ("gm-sc-*").  False if it is gone.
 */
static bool gm_sc_task_info(uint32_t tid, long *tgid, bool *service)
{
	char path[48], buf[512];
	const char *t;

	snprintf(path, sizeof(path), "/proc/%u/status", tid);
	if (gm_read_proc_buf(path, buf, sizeof(buf)) < 0)
		return false;
	*service = !strncmp(buf, "Name:\t" GM_SC_THREAD_PREFIX, 6 + strlen(GM_SC_THREAD_PREFIX));
	t = strstr(buf, "\nTgid:\t");
	if (!t)
		return false;
	*tgid = strtol(t + 7, NULL, 10);
	return *tgid > 0;
}

/*
 * Hand @n to @tgid's listener; false if it has none.  Never waits: a
 * listener whose queue is full (the host queues few datagrams:
 * net.unix.max_dgram_qlen, 10 by default) gets it a moment later, like a
 * forward that was lost (seccomp_forwards.h), while every other process's
 * calls go on being routed; answering its caller as a stranger's would be
 * wrong.
 */
static bool gm_sc_forward(int sock, const struct seccomp_notif *n, long tgid)
{
	struct sockaddr_un a;
	socklen_t len = gm_sc_addr(&a, tgid);
	long r;

	if (sock < 0)
		return false;
	do
		r = GM_RAW_SYSCALL(SYS_sendto, sock, n, sizeof(*n), MSG_DONTWAIT, &a, len);
	while (r < 0 && errno == EINTR);
	if (r == (long)sizeof(*n)) {
		gm_sc_sent_note(gm_sc_fd, n, &a, len, false); /* sent once at least */
		return true;
	}
	return r < 0 && errno == EAGAIN && gm_sc_sent_note(gm_sc_fd, n, &a, len, true);
}

static int gm_sc_dgram_socket(void)
{
	return (int)GM_RAW_SYSCALL(SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

/* Set by a waker, cleared by the listener: one wake-up datagram queued at most. */
static int gm_sc_wake_pending;

static void gm_sc_wake_listener(void)
{
	struct sockaddr_un a;
	socklen_t len = gm_sc_addr(&a, GM_RAW_SYSCALL(SYS_getpid));
	char byte = 0;

	if (gm_sc_fwd >= 0 && !__atomic_exchange_n(&gm_sc_wake_pending, 1, __ATOMIC_ACQ_REL) &&
	    GM_RAW_SYSCALL(SYS_sendto, gm_sc_fwd, &byte, 1, MSG_DONTWAIT, &a, len) != 1)
		__atomic_store_n(&gm_sc_wake_pending, 0, __ATOMIC_RELEASE); /* the next one tries */
}

/*
 * A notification from a thread of another process: continued if it is a
 * listener's or worker's, forwarded to its image's listener, or else
 * answered by @fallback (the fork-child answers here, CONTINUE in the helper).
 */
static void gm_sc_route(int sock, const struct seccomp_notif *n,
			void (*fallback)(const struct seccomp_notif *))
{
	bool service = false;
	long tgid = 0;

	if (!gm_sc_task_info(n->pid, &tgid, &service) || service)
		gm_sc_send(n->id, 0, 0, true); /* gone, or a listener's own call */
	else if (!gm_sc_forward(sock, n, tgid))
		fallback(n);
}

/*
 * One datagram on the listener's socket: a notification forwarded by
 * another image's listener, or a wake-up.  Returns 1 and *@n for a
 * notification that is still pending, 0 for anything else, -1 when none
 * is queued.  The name is reachable by any local process, and the sender
 * may run as another user (a VMM that dropped privileges after the first
 * image): what proves a forward is the id, which only the listener's
 * holders ever see (the kernel draws the first at random), and which must
 * still be valid.
 */
static int gm_sc_recv_forwarded(struct seccomp_notif *n)
{
	long r = GM_RAW_SYSCALL(SYS_recvfrom, gm_sc_fwd, n, sizeof(*n), MSG_DONTWAIT, NULL, NULL);

	if (r < 0)
		return errno == EINTR ? 0 : -1;
	if (r != (long)sizeof(*n)) {
		__atomic_store_n(&gm_sc_wake_pending, 0, __ATOMIC_RELEASE);
		return 0;
	}
	return gm_sc_id_valid(n->id);
}

/* This image's socket, bound to its name: forwards and wake-ups arrive there. */
static void gm_sc_bind_image(void)
{
	struct sockaddr_un a;
	socklen_t len = gm_sc_addr(&a, GM_RAW_SYSCALL(SYS_getpid));
	int s = gm_sc_dgram_socket();

	if (s < 0)
		return;
	if (GM_RAW_SYSCALL(SYS_bind, s, &a, len)) {
		gm_raw_close(s);
		return;
	}
	__atomic_store_n(&gm_sc_fwd, gm_fd_own(s), __ATOMIC_RELEASE);
}

static void gm_sc_dispatch(const struct seccomp_notif *n)
{
	if (!gm_sc_ours(n->pid)) {
		gm_sc_route(gm_sc_fwd, n, gm_sc_foreign_queue);
		return;
	}
	/* A joined image's library and service threads: see the top. */
	if (gm_sc_joined &&
	    (gm_sc_in_text(n->data.instruction_pointer) || gm_sc_service_tid((int)n->pid))) {
		gm_sc_send(n->id, 0, 0, true);
		return;
	}
	if (gm_sc_fdtab(n))
		return;
	/*
	 * Address-space calls run in a worker too: the mmu notifier may wait
	 * for the guest process (gproc.c unmaps the range there), whose own
	 * munmap is routed here (it inherited the filter) and must find the
	 * listener free.  Without a worker, here: the call must be made.
	 */
	if (gm_sc_is_mm(n->data.nr)) {
		if (!gm_sc_mm_noted(n)) {
			gm_sc_send(n->id, 0, 0, true);
			return;
		}
		if (!gm_sc_queue_work(n, false))
			gm_sc_mm(n);
		return;
	}
	/* Most fds are not ours: answer those here, without a thread. */
	/* A KVM ioctl or a fallocate on a socket can only be meant for an object. */
	if (!gm_is_our_fd((int)n->data.args[n->data.nr == SYS_sendfile ? 1 : 0],
			  n->data.nr == SYS_ioctl || n->data.nr == SYS_fallocate) &&
	    !gm_sc_other_fd_ours(&n->data)) {
		gm_sc_send(n->id, 0, 0, true);
		return;
	}
	if (!gm_sc_queue_work(n, false))
		gm_sc_send(n->id, 0, ENOMEM, false);
}

/*
 * The gate: a joined image's text is not exempt from the filter (the first
 * image's is, by address), so its library's raw calls would each cost a
 * notification round trip, and those made while nobody receives could
 * never be answered (gm_sc_let_go()'s own).  The filter does exempt the
 * guest-process stub's text, at the same fixed address in every image
 * (gp_stub_text_lo): a joined image maps one page of it (where nothing is)
 * holding `endbr64; syscall; ret`, and the library's raw calls go through it
 * (gm_raw_gate, sys_raw.h).  Fork children inherit both.  The VMM could
 * jump there too: the filter routes its calls for exactness, it was never
 * a wall against it.
 */
static void gm_sc_gate_map(void)
{
	/* endbr64 (a no-op without CET's branch tracking); syscall; ret */
	static const unsigned char code[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x05, 0xc3 };
	uintptr_t page = (gp_stub_text_lo + 4095) & ~4095UL;
	void *p = MAP_FAILED;

	/* Any page of the range will do: the VMM may have one of them. */
	for (; p == MAP_FAILED && page + sizeof(code) <= gp_stub_text_hi; page += 4096) {
		p = gm_raw_mmap((void *)page, 4096, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && p != (void *)page) { /* before 4.17: a hint only */
			gm_raw_munmap(p, 4096);
			return;
		}
	}
	if (p == MAP_FAILED)
		return;
	page = (uintptr_t)p;
	memcpy(p, code, sizeof(code));
	/* Routed: this image holds no copy of the listener yet, so a receiver
	 * answers it, or nobody holds one and the kernel fails it. */
	if (GM_RAW_SYSCALL(SYS_mprotect, p, 4096, PROT_READ | PROT_EXEC)) {
		gm_raw_munmap(p, 4096);
		return;
	}
	__atomic_store_n(&gm_raw_gate, page, __ATOMIC_RELAXED);
}

/*
 * Nobody receives any more: the first image is gone and the helper was
 * killed (a signal by pid, kill(-1)).  The routed calls of every image left
 * would wait for ever; once every holder has let go of the listener, the
 * kernel fails them with ENOSYS instead, and raw KVM ioctls fail with EIO
 * (gm_sc_build_dead()); the calls through the preload's wrappers go on
 * working.  The number stays taken, by /dev/null: a worker
 * may still answer on it.
 */
static bool gm_sc_watch_done; /* the listener's */

static void gm_sc_let_go(void)
{
	/* Static: the listener allocates nothing (see gm_sc_work_new()). */
	static struct gm_bpf dead;
	int null = gm_raw_open("/dev/null", O_RDONLY | O_CLOEXEC, 0);

	/*
	 * First the EIO filter, on every thread of this process (TSYNC; it
	 * fails if a thread of the VMM added a filter of its own, and the
	 * raw KVM ioctls then get ENOSYS).  A fork child or an image made
	 * from here on inherits it.
	 */
	if (!gm_sc_build_dead(&dead, gm_sc_text.r, gm_sc_text.n)) {
		struct sock_fprog prog = { .len = (unsigned short)dead.n, .filter = dead.insn };

		GM_RAW_SYSCALL(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			       SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog);
	}

	/* Routed calls, exempt here: this image's text, or the gate. */
	if (null >= 0) {
		GM_RAW_SYSCALL(SYS_dup3, null, gm_sc_fd, O_CLOEXEC);
		gm_raw_close(null);
	}
	/* Not watched again; left open (its close would be routed too). */
	gm_sc_watch_done = true;
}

/*
 * The fork child's listener and spawner stacks, one after the other: this
 * image's memory, copied by fork (NULL: none).  Started on them, neither
 * thread needs a guard page's mprotect, a routed call that would cost a
 * round trip to the parent's listener in every fork.
 */
#define GM_SC_CHILD_STACK (1UL << 20)
static void *gm_sc_child_stack;
static bool gm_sc_forked; /* this process is a fork child of an image */
/* A fork child whose listener has not started yet (atomic). */
static int gm_sc_child_pending;
/* gm_sc_child_lock: a fork child's late start, one at a time (its
 * listener, or the spawner it deferred); only libc's locks are taken
 * under it, by the thread starts (re-initialised in each child, never
 * held across fork). */
static pthread_mutex_t gm_sc_child_lock = PTHREAD_MUTEX_INITIALIZER;
static void gm_sc_child_listen(void);

/*
 * Start the spawner while no thread of the process can hold a libc lock
 * in a call routed to this listener: before its name is bound (the
 * constructor, the fork child's handler or its first object waits for
 * the name), or with the name unbound (gm_sc_want_spawner()).
 */
static void gm_sc_start_spawner(void)
{
	int err;

	if (gm_sc_forked)
		err = gm_thread_start_on(gm_sc_spawner, NULL,
					 (char *)gm_sc_child_stack + GM_SC_CHILD_STACK,
					 GM_SC_CHILD_STACK);
	else
		err = gm_thread_start(gm_sc_spawner, NULL, 0);
	__atomic_store_n(&gm_sc_spawner_state, err ? GM_SC_SPAWNER_FAILED : GM_SC_SPAWNER_UP,
			 __ATOMIC_RELEASE);
	if (err)
		gm_sc_spawn_wanted_here();
}

/*
 * A worker is wanted (the listener's).  A fork child that deferred its
 * spawner starts it now, from the listener: with its name unbound
 * meanwhile, so that a thread waiting in a routed call while it holds the
 * libc lock pthread_create takes gets the kernel's answer (or a
 * stranger's) instead of waiting for this listener.  That is exact: the
 * child has no VM of its own yet, since its first object would have
 * started the spawner (gm_sc_child_start()).  Calls on its inherited
 * objects made in that moment get a stranger's answers.
 */
static void gm_sc_want_spawner(void)
{
	int none = GM_SC_SPAWNER_NONE, st = __atomic_load_n(&gm_sc_spawner_state, __ATOMIC_ACQUIRE);

	if (st == GM_SC_SPAWNER_UP || st == GM_SC_SPAWNER_STARTING)
		return; /* it takes the wanted count */
	if (st == GM_SC_SPAWNER_NONE && gm_sc_spawner_deferred) {
		if (__atomic_compare_exchange_n(&gm_sc_spawner_state, &none,
						GM_SC_SPAWNER_STARTING, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			int fwd = gm_sc_fwd;

			__atomic_store_n(&gm_sc_fwd, -1, __ATOMIC_RELEASE);
			gm_fd_close(fwd); /* forwards queued there are sent again */
			gm_sc_start_spawner();
			gm_sc_bind_image();
			return;
		}
		st = none; /* the first object's start is under way, or done */
	}
	if (st == GM_SC_SPAWNER_FAILED || st == GM_SC_SPAWNER_NONE)
		gm_sc_spawn_wanted_here();
}

static void *gm_sc_listener(void *arg)
{
	struct seccomp_notif n;

	(void)arg;
	gm_sc_service_enter(GM_SC_THREAD_PREFIX "listener");
	sem_wait(&gm_sc_ready);
	if (gm_sc_fd < 0)
		return NULL;
	if (!gm_sc_spawner_deferred)
		gm_sc_start_spawner();
	/* Only now: a joined image's call forwarded here before this thread
	 * ran would wait for it (the constructor's own, for one).  The
	 * constructor waits for the name: main's first raw call must find it. */
	gm_sc_bind_image();
	sem_post(&gm_sc_bound);
	for (;;) {
		/*
		 * While raw KVM_RUNs are in flight, look at their callers every
		 * 10 ms; a worker starting one wakes this poll
		 * (gm_sc_wake_listener(), a datagram on the image's socket).
		 */
		struct pollfd p[3] = { { .fd = gm_sc_joined ? -1 : gm_sc_fd, .events = POLLIN },
				       { .fd = gm_sc_fwd, .events = POLLIN },
				       { .fd = gm_sc_joined && !gm_sc_watch_done ? gm_sc_watch : -1,
				         .events = 0 } };
		int busy = __atomic_load_n(&gm_sc_nr_busy, __ATOMIC_ACQUIRE);
		int again = gm_sc_sent_wait_ms();
		long pr = GM_RAW_SYSCALL(SYS_poll, p, 3,
					 busy && (again < 0 || again > 10) ? 10 : again);

		if (pr > 0 && (p[2].revents & (POLLHUP | POLLERR)))
			gm_sc_let_go();

		if (again >= 0)
			gm_sc_sent_again(gm_sc_fd, gm_sc_fwd, gm_sc_foreign_queue);

		if (pr < 0) /* EINTR (a tracer attached, say): never a blocking receive */
			continue;
		if (pr > 0 && (p[1].revents & POLLIN)) {
			int got;

			/* Everything queued: the queue is short (max_dgram_qlen). */
			while ((got = gm_sc_recv_forwarded(&n)) >= 0) {
				if (!got)
					continue;
				/* The receiver sent one of ours, perhaps again. */
				if (gm_sc_take_once(gm_sc_fd, n.id)) {
					if (gm_sc_ours(n.pid))
						gm_sc_dispatch(&n);
					else /* a tid reused meanwhile: the kernel's */
						gm_sc_send(n.id, 0, 0, true);
				}
				memset(&n, 0, sizeof(n));
			}
			continue; /* the listener fd is looked at on the next poll */
		}
		if (pr == 0 || (pr > 0 && !(p[0].revents & POLLIN))) {
			if (busy)
				gm_sc_run_watch();
			continue;
		}
		memset(&n, 0, sizeof(n));
		if (GM_RAW_SYSCALL(SYS_ioctl, gm_sc_fd, SECCOMP_IOCTL_NOTIF_RECV, &n)) {
			/* EINTR; ENOENT: the caller went away, or another
			 * image's listener took it first. */
			if (errno == EINTR || errno == ENOENT)
				continue;
			return NULL;
		}
		gm_sc_dispatch(&n);
	}
}

/* ---- the helper --------------------------------------------------------- */

/* The helper's fallback: nobody serves that process; the kernel makes the call. */
static void gm_sc_continue(const struct seccomp_notif *n)
{
	gm_sc_send(n->id, 0, 0, true);
}

/* Send @nfd (none if < 0) over @sock with one byte. */
static void gm_sc_send_fd(int sock, int nfd)
{
	char byte = 0;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;

	gm_scm_attach(&m, &cbuf, &nfd, nfd >= 0);
	while (GM_RAW_SYSCALL(SYS_sendmsg, sock, &m, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* The fd that came with one byte on @sock, or -1 (EOF, none). */
static int gm_sc_recv_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;

	gm_scm_expect(&m, &cbuf);
	while (GM_RAW_SYSCALL(SYS_recvmsg, sock, &m, MSG_CMSG_CLOEXEC) < 0)
		if (errno != EINTR)
			return -1;
	return gm_scm_fd(&m);
}

/*
 * The helper's copy of the spawner's door (gproc/spawner.h), or -1: a fork
 * child whose own copy was closed by a raw call before its listener
 * started gets it back with the listener.
 */
static int gm_sc_helper_door = -1;

/* A later image asks for the listener: same user only (it answers our calls). */
static void gm_sc_helper_accept(int reg, int nfd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int c = (int)GM_RAW_SYSCALL(SYS_accept4, reg, NULL, NULL, SOCK_CLOEXEC);

	if (c < 0)
		return;
	if (!GM_RAW_SYSCALL(SYS_getsockopt, c, SOL_SOCKET, SO_PEERCRED, &cr, &len) &&
	    cr.uid == getuid()) {
		/* Three messages, each with its descriptor or none. */
		gm_sc_send_fd(c, nfd);
		gm_sc_send_fd(c, gm_sc_watch);
		gm_sc_send_fd(c, gm_sc_helper_door);
	}
	gm_raw_close(c);
}

/* The helper's socket that later images connect to, bound to the session's name. */
static int gm_sc_helper_listen(void)
{
	struct sockaddr_un a;
	socklen_t len = gm_sc_addr(&a, -1);
	int s = (int)GM_RAW_SYSCALL(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (s >= 0 && (GM_RAW_SYSCALL(SYS_bind, s, &a, len) || GM_RAW_SYSCALL(SYS_listen, s, 16))) {
		gm_raw_close(s);
		s = -1;
	}
	return s;
}

/*
 * The helper gets the listener fd over @sock once the filter exists.  From
 * then on it gives a copy to each later image that asks, and once this
 * image has let go of @sock (exec, exit) it receives notifications too:
 * forwarded to their image's listener, or continued.  It is forked before
 * the filter is installed, so it is not filtered itself: its poll on the
 * listener reports POLLHUP once no task uses the filter, and it exits.
 */
static void gm_sc_helper(int sock)
{
	struct seccomp_notif n;
	struct pollfd p[3];
	int nfd = gm_sc_recv_fd(sock), out;

	if (nfd < 0)
		_exit(0); /* no filter: nothing to do */
	gm_sc_fd = nfd;
	/* Held, never read: see gm_sc_recv_end. */
	gm_sc_recv_end = gm_sc_recv_fd(sock);
	gm_sc_watch = gm_sc_recv_fd(sock);
	gm_sc_helper_door = gm_sc_recv_fd(sock);
	out = gm_sc_dgram_socket();
	p[0] = (struct pollfd){ .fd = sock, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = nfd, .events = 0 };
	p[2] = (struct pollfd){ .fd = gm_sc_helper_listen(), .events = POLLIN };
	/* Ready: the first image may now exec a program that asks. */
	GM_RAW_SYSCALL(SYS_write, sock, "r", 1);
	for (;;) {
		int again = gm_sc_sent_wait_ms();

		if (GM_RAW_SYSCALL(SYS_poll, p, 3, again) < 0) {
			if (errno == EINTR)
				continue;
			_exit(0);
		}
		if (again >= 0)
			gm_sc_sent_again(nfd, out, gm_sc_continue);
		if (p[1].revents & (POLLHUP | POLLERR | POLLNVAL))
			_exit(0);
		if (p[0].revents) {
			/* EOF or hang-up: the image that listened is gone. */
			p[0].fd = -1;
			p[1].events = POLLIN;
		}
		if (p[2].revents & POLLIN)
			gm_sc_helper_accept(p[2].fd, nfd);
		if (!(p[1].revents & POLLIN))
			continue;
		memset(&n, 0, sizeof(n));
		/* Raw: the preload's ioctl would look the fd up as the VMM's. */
		if (gm_raw_ioctl(nfd, SECCOMP_IOCTL_NOTIF_RECV, (unsigned long)&n) == 0)
			gm_sc_route(out, &n, gm_sc_continue);
	}
}

/* Fork the helper (lib/daemon.h).  Returns our end of its socket, or -1. */
static int gm_sc_start_helper(void)
{
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	r = gm_daemon_fork(sv[1]);
	if (r == 0) {
		gm_sc_helper(3);
		_exit(0);
	}
	gm_raw_close(sv[1]);
	if (r < 0) {
		gm_raw_close(sv[0]);
		return -1;
	}
	return sv[0];
}

/* A new session's name, for the helper and every later image (environment). */
static void gm_sc_session_new(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
		r = (uint64_t)GM_RAW_SYSCALL(SYS_getpid) << 32 ^ (uint64_t)time(NULL);
	snprintf(gm_sc_session, sizeof(gm_sc_session), "%016llx", (unsigned long long)r);
	setenv(GM_SC_SESSION_ENV, gm_sc_session, 1);
}

/* An earlier image's session, if this image runs under a seccomp filter. */
static bool gm_sc_session_inherited(void)
{
	const char *env = getenv(GM_SC_SESSION_ENV);
	char buf[4096];

	if (!env || strlen(env) != 16 || strspn(env, "0123456789abcdef") != 16)
		return false;
	if (gm_read_proc_buf("/proc/self/status", buf, sizeof(buf)) < 0)
		return false;
	if (!strstr(buf, "\nSeccomp:\t2\n"))
		return false;
	memcpy(gm_sc_session, env, 17);
	return true;
}

/* Keep @fd as this image's watching end (gm_sc_recv_end). */
static void gm_sc_own_watch(int fd)
{
	struct stat st;

	gm_sc_watch = gm_fd_own(fd);
	gm_sc_watch_ino = gm_sc_watch >= 0 && !gm_raw_fstat(gm_sc_watch, &st) ? st.st_ino : 0;
}

/*
 * The listener of the session's filter, from its helper; -1 if none
 * answers.  The helper's copy of the spawner's door comes with it.
 */
static int gm_sc_join(void)
{
	struct sockaddr_un a;
	socklen_t len = gm_sc_addr(&a, -1);
	int s = (int)GM_RAW_SYSCALL(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), fd;

	if (s < 0)
		return -1;
	if (GM_RAW_SYSCALL(SYS_connect, s, &a, len)) {
		gm_raw_close(s);
		return -1;
	}
	fd = gm_sc_recv_fd(s);
	if (fd >= 0) {
		int door;

		gm_sc_own_watch(gm_sc_recv_fd(s));
		door = gm_sc_recv_fd(s);
		if (door >= 0)
			gp_spawner_door_offer(door);
	}
	gm_raw_close(s);
	return fd;
}

/* ---- installation ------------------------------------------------------ */


/*
 * fork: the child shares the filter and has a copy of the listener fd, but
 * none of this image's threads.  It starts a listener of its own, joined
 * as an exec'd image is, so that a VM it creates (a VMM that daemonizes
 * first) has its raw calls and its munmap routed like the parent's.
 *
 * When: a child that holds objects (its parent's, inherited) starts it in
 * fork(), since a raw call on one (KVM_CREATE_VM on /dev/kvm) must find it
 * there, and its spawner only when it wants a worker (gm_sc_want_spawner(),
 * gm_sc_child_start()).  A child that holds none starts it before its
 * first object (gm_sc_child_start(), the library's objects hook): until
 * then it has no fd a routed call could concern, its memory backs no VM,
 * and nobody bound to its name means the kernel makes its routed calls,
 * which is exact.
 * Two thread starts in fork() cost about as much as the fork itself here;
 * a shell or a test runner under `exec`, or a VMM that forks before it
 * opens /dev/kvm, no longer pays them.  Meanwhile the kernel answers a raw
 * close or dup2 of the child's on guestmem's numbers (its copies of the
 * listener, the watching end and the spawner's door), so the late start
 * checks them first (gm_sc_child_check_copies()).  The copies stay rather
 * than being closed in fork(): the helper gives new ones to its own user
 * only, and a child may change user before its first object.  With
 * GUESTMEM_SECCOMP=files the child starts at once: its file calls are
 * routed too.
 *
 * The pool's and the runs' locks are held across fork so that the child's
 * copies are consistent; what they describe is the parent's and is reset.
 */

static void gm_sc_atfork_prepare(void)
{
	pthread_mutex_lock(&gm_sc_run_lock);
	pthread_mutex_lock(&gm_sc_pool_lock);
}

static void gm_sc_atfork_parent(void)
{
	pthread_mutex_unlock(&gm_sc_pool_lock);
	pthread_mutex_unlock(&gm_sc_run_lock);
}

static void gm_sc_atfork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;

	/*
	 * A child is not this image: forwards to this image's name are not for
	 * it, and its end must not keep the helper waiting.  The name first:
	 * if this image has exec'd meanwhile, the helper starts receiving once
	 * the child lets go of its end, and a forward to the new image must then
	 * find nobody bound (the new image has no listener yet: the kernel makes
	 * the call), not this copy, which would drop it when closed.
	 */
	gm_fd_close(gm_sc_fwd);
	gm_sc_fwd = -1;
	gm_fd_close(gm_sc_alive);
	gm_sc_alive = -1;
	/* Not a receiver: a child's copy must not hide that both are gone. */
	gm_fd_close(gm_sc_recv_end);
	gm_sc_recv_end = -1;
	gm_sc_forwards_forget();
	/* No worker, run or service thread of the parent's is here (the
	 * parent's references are left: dropping them could release objects
	 * the child never owned). */
	memset(gm_sc_runs, 0, sizeof(gm_sc_runs));
	gm_sc_nr_busy = 0;
	gm_sc_queue = NULL;
	gm_sc_queue_tail = &gm_sc_queue;
	gm_sc_nr_queued = gm_sc_nr_idle = gm_sc_nr_starting = gm_sc_nr_wanted = 0;
	gm_sc_slots_used = 0; /* every slot free again */
	gm_sc_free_slots = NULL;
	gm_sc_spawner_state = GM_SC_SPAWNER_NONE;
	gm_sc_spawner_deferred = false;
	gm_sc_forked = true;
	memset(gm_sc_service_tids, 0, sizeof(gm_sc_service_tids));
	/* The copies still count the parent's idle workers and spawner as
	 * waiters, and would spend signals on them. */
	pthread_cond_init(&gm_sc_pool_cv, NULL);
	pthread_cond_init(&gm_sc_spawn_cv, NULL);
	pthread_mutex_unlock(&gm_sc_pool_lock);
	pthread_mutex_unlock(&gm_sc_run_lock);
	/* A start under way in the parent (another thread's) is not this
	 * process's: the copy of its lock may be held by nobody here. */
	gm_sc_child_lock = fresh;
	gm_sc_child_pending = 0;
	if (gm_sc_fd < 0)
		return;
	/* Objects it holds may get raw calls before any object of its own:
	 * its listener now, the spawner when needed. */
	if (gm_sc_files || gm_uapi_holds_objects()) {
		gm_sc_spawner_deferred = true;
		gm_sc_child_listen();
	} else {
		gm_sc_child_pending = 1;
	}
}

/*
 * A fork child that starts late checks the copies it inherited (the
 * listener, the watching end, the spawner's door): one that is gone is
 * forgotten (its number is the program's now) and the listener and the
 * door are asked of the helper, as an exec'd image asks.  The helper
 * answers its own user only: a child that changed user keeps working on
 * its copies, unless it also closed them.
 */
static void gm_sc_child_check_copies(void)
{
	/* Still a listener: its link is all that tells (anonymous files share an inode). */
	bool fd_ok = gm_fd_link_is(gm_sc_fd, "anon_inode:seccomp notify");
	int old_watch = gm_sc_watch, fd;
	bool watch_ok = old_watch < 0 || gm_fd_is_socket(old_watch, gm_sc_watch_ino);

	gp_spawner_door_recheck();
	if (fd_ok && watch_ok)
		return;
	/* Unmarked before the join: what it brings may take those numbers. */
	if (!watch_ok)
		gm_fd_forget(old_watch);
	if (!fd_ok)
		gm_fd_forget(gm_sc_fd);
	gm_sc_watch = -1;
	fd = gm_sc_join(); /* a new watching end (and the door) come with it */
	if (fd < 0) {
		/* Nobody gives new ones (the helper is gone, or another user's):
		 * go on with what is intact. */
		if (fd_ok) {
			gm_sc_watch = watch_ok ? old_watch : -1;
			return;
		}
		gm_sc_fd = -1;
	} else {
		/* The new one first: a fork meanwhile copies a listener either way. */
		int old = gm_sc_fd;

		gm_sc_fd = gm_fd_own(fd);
		if (fd_ok)
			gm_fd_close(old);
	}
	if (watch_ok && old_watch >= 0)
		gm_fd_close(old_watch);
}

/*
 * Start a fork child's listener on the stack set aside for it (before the
 * filter: pthread_create would mprotect a guard page, a routed call), and
 * wait for its name.  In a late start, other threads may hold the libc
 * locks the spawner's start takes while they wait in a routed call: until
 * the name is bound the kernel makes those calls (no VM of the child's
 * yet), so nothing waits for this listener.
 */
static void gm_sc_child_listen(void)
{
	if (gm_sc_fd < 0 || !gm_sc_child_stack)
		return; /* served as a stranger: gm_sc_foreign() */
	gm_sc_joined = true;
	sem_init(&gm_sc_ready, 0, 1);
	sem_init(&gm_sc_bound, 0, 0);
	if (!gm_thread_start_on(gm_sc_listener, NULL, gm_sc_child_stack, GM_SC_CHILD_STACK))
		while (sem_wait(&gm_sc_bound) && errno == EINTR)
			;
}

/*
 * gm_uapi_objects_hook: a fork child's first object is coming.  Its
 * listener starts now, or the spawner it deferred: from this thread, which
 * may wait for a libc lock while the listener answers the holder.
 */
static void gm_sc_child_start(void)
{
	int none = GM_SC_SPAWNER_NONE;

	/* Nothing to do once either has started (the first image: never). */
	if (!__atomic_load_n(&gm_sc_child_pending, __ATOMIC_ACQUIRE) &&
	    !(gm_sc_spawner_deferred &&
	      __atomic_load_n(&gm_sc_spawner_state, __ATOMIC_ACQUIRE) == GM_SC_SPAWNER_NONE))
		return;
	pthread_mutex_lock(&gm_sc_child_lock);
	if (__atomic_load_n(&gm_sc_child_pending, __ATOMIC_RELAXED)) {
		gm_sc_child_check_copies();
		gm_sc_child_listen();
		__atomic_store_n(&gm_sc_child_pending, 0, __ATOMIC_RELEASE);
	} else if (gm_sc_spawner_deferred &&
		   __atomic_compare_exchange_n(&gm_sc_spawner_state, &none, GM_SC_SPAWNER_STARTING,
					       false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		gm_sc_start_spawner();
	}
	pthread_mutex_unlock(&gm_sc_child_lock);
}

/*
 * At exit (the library's destructors run before LeakSanitizer's check): a
 * joined image stops taking forwards.  A sanitizer stops every thread for
 * its check, this image's listener too, and its own system calls come from
 * text that only the first image's filter exempts where that image had it:
 * forwarded here they would wait for a listener that cannot run.  Shut for
 * reading, the name refuses them (EPIPE) and the sender answers them as a
 * stranger's (the kernel makes the call), which is all an image on its way
 * out needs.
 */
__attribute__((destructor)) static void gm_sc_fini(void)
{
	if (gm_sc_joined && gm_sc_fwd >= 0)
		GM_RAW_SYSCALL(SYS_shutdown, gm_sc_fwd, SHUT_RD);
}

/* Install the filter with a new listener; its fd, or -1. */
static int gm_sc_install(struct gm_bpf *b)
{
	struct sock_fprog prog = { .len = (unsigned short)b->n, .filter = b->insn };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			    SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog);
}

/*
 * Say so when a program that runs under a session's filter will not have
 * its raw calls routed: they get a stranger's answers (README), and a
 * test that expects otherwise should say why.
 */
static void gm_sc_unrouted(bool join, const char *why)
{
	if (join)
		fprintf(stderr, "guestmem: raw system calls of this program are not routed (%s)\n",
			why);
}

/* Whether this image was started under a session (it should join it). */
static bool gm_sc_session_named(void)
{
	return getenv(GM_SC_SESSION_ENV) != NULL;
}

__attribute__((constructor)) static void gm_seccomp_install(void)
{
	const char *env = getenv("GUESTMEM_SECCOMP");
	struct gm_text text = { .probe = (uintptr_t)&gm_seccomp_install };
	struct gm_bpf *b;
	bool join;
	int fd, err;

	int mode = gm_config_seccomp_mode(env);

	/* A bad value: no filter; the library reports it at its first use. */
	if (mode == GM_SECCOMP_OFF || mode < 0)
		return;
	gm_sc_files = mode == GM_SECCOMP_FILES;
#if !defined(__x86_64__)
	return;
#endif
	dl_iterate_phdr(gm_text_cb, &text);
	if (!text.n || text.probe < text.r[0].lo || text.probe >= text.r[0].hi) {
		/* Our own text not found (or across a 4 GiB line): no filter. */
		gm_sc_unrouted(gm_sc_session_named(), "its text is not exempt");
		return;
	}
	/* The guest process's stub inherits the filter: its own munmap (a zap)
	 * and mprotect need no notifier, nor a notification round trip. */
	if (text.n < GM_TEXT_MAX && gp_stub_text_lo >> 32 == (gp_stub_text_hi - 1) >> 32)
		text.r[text.n++] = (struct gm_text_range){ gp_stub_text_lo, gp_stub_text_hi };
	gm_sc_text = text;
	b = malloc(sizeof(*b));
	if (!b || gm_sc_build(b, text.r, text.n)) {
		gm_sc_unrouted(gm_sc_session_named(), "no filter program");
		free(b);
		return;
	}
	sem_init(&gm_sc_ready, 0, 0);
	sem_init(&gm_sc_bound, 0, 0);
	/* Under an earlier image's filter: share its listener (see the top). */
	join = gm_sc_session_inherited();
	if (!join) {
		gm_sc_unrouted(gm_sc_session_named(),
			       "a session is named, but its filter is not this process's");
		gm_sc_session_new();
		/* Before the filter: the helper must not be filtered either. */
		gm_sc_alive = gm_sc_start_helper();
	}
	/* Before the filter: the listener must never be filtered itself. */
	if ((err = gm_thread_start(gm_sc_listener, NULL, 0))) {
		gm_sc_unrouted(join, strerror(err));
		gm_fd_close(gm_sc_alive);
		gm_sc_alive = -1;
		free(b);
		return;
	}
	if (join)
		gm_sc_gate_map();
	fd = join ? gm_sc_join() : -1;
	gm_sc_joined = fd >= 0;
	if (join && fd < 0) {
		/* Nobody answers for that session (a filter of somebody else's,
		 * a stale variable): this image starts one of its own. */
		gm_sc_session_new();
		gm_sc_alive = gm_sc_start_helper();
	}
	if (!gm_sc_joined)
		fd = gm_sc_install(b);
	free(b);
	if (fd < 0 && gm_sc_alive >= 0) {
		gm_fd_close(gm_sc_alive); /* the helper exits */
		gm_sc_alive = -1;
	}
	if (fd >= 0) {
		fd = gm_fd_own(fd);
		if (gm_sc_alive >= 0) {
			int rs[2] = { -1, -1 };
			bool strict;
			char ready;

			gm_sc_send_fd(gm_sc_alive, fd);
			/* The receivers' pair (gm_sc_recv_end); the helper expects
			 * both messages, with or without the ends. */
			gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rs);
			gm_sc_send_fd(gm_sc_alive, rs[0]);
			gm_sc_send_fd(gm_sc_alive, rs[1]);
			/* And the spawner's door, for images that lose theirs. */
			gm_sc_send_fd(gm_sc_alive, gp_spawner_door(&strict));
			gm_sc_recv_end = gm_fd_own(rs[0]);
			gm_sc_own_watch(rs[1]);
			/* Wait until it listens: a program this image execs at
			 * once must find it (EOF: it died, nobody will). */
			while (GM_RAW_SYSCALL(SYS_read, gm_sc_alive, &ready, 1) < 0 && errno == EINTR)
				;
			gm_sc_alive = gm_fd_own(gm_sc_alive);
		}
		gm_sc_child_stack = gm_raw_mmap(NULL, 2 * GM_SC_CHILD_STACK, PROT_READ | PROT_WRITE,
						MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (gm_sc_child_stack == MAP_FAILED)
			gm_sc_child_stack = NULL;
		pthread_atfork(gm_sc_atfork_prepare, gm_sc_atfork_parent, gm_sc_atfork_child);
		gm_uapi_objects_hook = gm_sc_child_start;
		gm_sc_fd = fd;
		__atomic_store_n(&gm_seccomp_active, 1, __ATOMIC_RELEASE);
	}
	/* EBUSY: a filter with a listener is inherited, whose session did not answer. */
	if (fd < 0)
		gm_sc_unrouted(join, strerror(errno));
	sem_post(&gm_sc_ready);
	if (fd >= 0)
		while (sem_wait(&gm_sc_bound) && errno == EINTR)
			;
}
