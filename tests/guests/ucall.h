/* SPDX-License-Identifier: MIT */
/*
 * ucall: how a test guest talks to its VMM (our own take on the KVM
 * selftests' x86 ucalls, which are port I/O to port 0xE0).
 *
 * Protocol.  Memslot 0 is shared memory at gpa 0 (what holds code and page
 * tables in a real selftest guest).  Each vCPU owns the page at
 * UCALL_GPA(vcpu_id) in it.  To make a ucall the guest writes a struct
 * ucall there through the normal memory accessors, then does a 32-bit OUT
 * of that gpa to UCALL_PORT.  The VMM sees KVM_EXIT_IO (OUT, size 4,
 * port 0xE0), reads the gpa from the PIO data page and the struct from its
 * own mapping of memslot 0, acts, and re-enters.
 *
 *   UCALL_SYNC   args[] are test-defined (a stage, addresses, patterns)
 *   UCALL_DONE   the guest finished; the VMM stops running this vCPU
 *   UCALL_ABORT  a GUEST_ASSERT failed: `msg` says where and why
 *
 * The guest half needs <guestmem/guest.h>; the VMM half is plain C.
 */
#ifndef GM_TESTS_GUESTS_UCALL_H
#define GM_TESTS_GUESTS_UCALL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <linux/kvm.h>

#define UCALL_PORT 0xE0
#define UCALL_SLOT0_SIZE (2UL << 20) /* memslot 0: gpa [0, 2 MiB) */
#define UCALL_GPA(vcpu_id) (0x10000ULL + (uint64_t)(vcpu_id) * 0x1000ULL)
#define UCALL_MAX_ARGS 6

enum ucall_cmd {
	UCALL_NONE,
	UCALL_SYNC,
	UCALL_DONE,
	UCALL_ABORT,
};

struct ucall {
	uint64_t cmd;
	uint64_t args[UCALL_MAX_ARGS];
	char msg[256];
};

/* ---- guest half ------------------------------------------------------------------- */
#ifdef GM_GUEST_SIDE
#include <guestmem/guest.h>

static inline void ucall_send(struct guestmem_guest *g, const struct ucall *uc)
{
	uint64_t gpa = UCALL_GPA(guestmem_guest_vcpu_id(g));

	guestmem_guest_write(g, gpa, uc, sizeof(*uc));
	guestmem_guest_outl(g, UCALL_PORT, (uint32_t)gpa);
}

/* A ucall with up to six typed arguments (unused ones are 0). */
static inline void ucall(struct guestmem_guest *g, uint64_t cmd, uint64_t a0, uint64_t a1,
			 uint64_t a2, uint64_t a3, uint64_t a4)
{
	struct ucall uc = { .cmd = cmd, .args = { a0, a1, a2, a3, a4 } };

	ucall_send(g, &uc);
}

__attribute__((format(printf, 4, 5))) static inline void
ucall_abort(struct guestmem_guest *g, const char *file, int line, const char *fmt, ...)
{
	struct ucall uc = { .cmd = UCALL_ABORT };
	int n = snprintf(uc.msg, sizeof(uc.msg), "%s:%d: ", file, line);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(uc.msg + n, sizeof(uc.msg) - (size_t)n, fmt, ap);
	va_end(ap);
	ucall_send(g, &uc);
	/* The VMM never re-enters after an abort; stay put if it does. */
	for (;;)
		ucall_send(g, &uc);
}

#define GUEST_SYNC(g, a0, a1, a2, a3, a4) ucall(g, UCALL_SYNC, a0, a1, a2, a3, a4)
#define GUEST_DONE(g) ucall(g, UCALL_DONE, 0, 0, 0, 0, 0)

/* Both values are reported. */
#define GUEST_ASSERT_EQ(g, a, b)                                                   \
	do {                                                                       \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                   \
		if (a_ != b_)                                                      \
			ucall_abort(g, __FILE__, __LINE__, "%s == %#llx, %s == %#llx", \
				    #a, (unsigned long long)a_, #b,                 \
				    (unsigned long long)b_);                        \
	} while (0)

#define GUEST_ASSERT(g, cond)                                                     \
	do {                                                                      \
		if (!(cond))                                                      \
			ucall_abort(g, __FILE__, __LINE__, "%s", #cond);          \
	} while (0)
#endif /* GM_GUEST_SIDE */

/* ---- VMM half ---------------------------------------------------------------------- */

/*
 * If @run shows a ucall, copy it from @slot0 (the VMM's mapping of memslot
 * 0) into @uc and return its command; otherwise UCALL_NONE.
 */
static inline uint64_t ucall_get(const struct kvm_run *run, const void *slot0, struct ucall *uc)
{
	uint32_t gpa;

	memset(uc, 0, sizeof(*uc));
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != UCALL_PORT ||
	    run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4)
		return UCALL_NONE;
	memcpy(&gpa, (const char *)run + run->io.data_offset, sizeof(gpa));
	if (gpa + sizeof(*uc) > UCALL_SLOT0_SIZE)
		return UCALL_NONE;
	memcpy(uc, (const char *)slot0 + gpa, sizeof(*uc));
	uc->msg[sizeof(uc->msg) - 1] = '\0';
	return uc->cmd;
}

#endif
