/* SPDX-License-Identifier: MIT */
/*
 * Guest memory by (fd, offset) for another process: kvm_gfn_to_backing()
 * and the shared-RAM conversion of memslot memory (see gmemfd.h).
 *
 * Everything that reads /proc or changes the address space runs under
 * gm_shram_lock, one lock for the process: probes are rare (memslot
 * creation, the first lookup of a slot, the first lookup after the VMM
 * changed the memory) and two of them must not convert the same range at
 * once.  Readers of a slot's record take no lock (RCU).
 *
 * Library code must not call the functions the preload wraps (open, read,
 * mmap, fstat...): every such call here is a gm_raw_*() (src/lib/sys_raw.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h> /* ST_NOEXEC */
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "backing_impl.h" /* gm_backing_set_size(): sizing without SIGXFSZ */
#include "gmem.h"
#include "gmemfd.h"
#include "lib/keepfd.h"
#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/procfile.h"
#include "lib/rangemap.h"
#include "lib/rcu.h"
#include "lib/sys_raw.h"

#define GMEMFD_DEFAULT_RUN 512 /* one page-table page: 2 MiB */
#define GMEMFD_PRIVATE_ID (1ULL << 63)

uint64_t kvm_gmem_file_id(uint64_t gmem_ino)
{
	return GMEMFD_PRIVATE_ID | gmem_ino;
}

/* ---- files guestmem holds open for memslot RAM ------------------------- */

/*
 * One file mapped by the VMM as memslot memory, opened by guestmem (a
 * memfd it made by conversion, or its own open of the VMM's file).  All
 * fields under gm_shram_lock; fd, dev, ino, id, writable are fixed.
 *
 * References: one per record segment naming it, plus one while the VMM is
 * known to map it (`mapped`), so that a memslot deleted and created again
 * over the same memory finds the file although the VMM closed its fd (or,
 * for a converted range, never had one).  That last reference is dropped
 * when, after an mmu-notifier event over [lo, hi), /proc/self/maps no
 * longer shows the file anywhere.  The last reference closes the fd: no
 * reader can hold it by then (records are freed after a grace period).
 *
 * The file is kept out of the VMM's descriptor table, in the library's
 * own (kfd, lib/keepfd.h): it is needed only to hand it to a guest
 * process, to punch it, and across fork, each an open of it then.  Where
 * that cannot be done (no keeper: a fork child), fd holds it here.
 */
struct gm_shfile {
	long refs;
	bool mapped;
	bool writable; /* fd is O_RDWR */
	bool ours;     /* a memfd made by conversion */
	int fd;	       /* here (at or above the floor), or -1: kept (kfd) */
	int kfd;       /* in the own table, or -1 */
	int fork_fd;   /* fetched for a fork in progress, else -1 */
	uint64_t map_align; /* mmap granularity: the huge page size on hugetlbfs */
	bool executable;    /* not on a noexec mount (often /dev/shm): PROT_EXEC works */
	dev_t dev;
	uint64_t ino;
	uint64_t id;
	uint64_t lo, hi; /* hull of the host ranges where it was seen mapped */
	/*
	 * Where it is mapped as far as guestmem saw (host range -> 1), less
	 * what notifier events changed since: while some is left, a change
	 * elsewhere cannot have unmapped it, and /proc/self/maps (long with
	 * thousands of memslots) need not be read.  where_lost: a store ran
	 * out of memory; read the maps every time, as without it.
	 */
	struct rangemap where;
	bool where_lost;
	bool check; /* kvm_shram_hva_changed(): look it up in the maps */
	struct gm_shfile *next;
};

/*
 * gm_shram_lock: the file list below and its counters, every probe and
 * conversion of memslot memory, and the replacement of slot->shram->cur.  A
 * leaf: only the allocator and (TSan builds) the RCU deferral lock are
 * taken under it, and nothing waits for a grace period under it.
 */
static pthread_mutex_t gm_shram_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gm_shfile *gm_shfiles;
static long gm_shfiles_nr;
/* Converted files (ours) in the list: read without the lock as a hint. */
static long gm_shfiles_ours;
static uint64_t gm_shfile_next_id = 1;

static void shfile_put_locked(struct gm_shfile *f)
{
	struct gm_shfile **pp;

	lockdep_assert_held(&gm_shram_lock);
	if (--f->refs)
		return;
	for (pp = &gm_shfiles; *pp != f; pp = &(*pp)->next)
		;
	*pp = f->next;
	gm_shfiles_nr--;
	if (f->ours)
		WRITE_ONCE(gm_shfiles_ours, gm_shfiles_ours - 1);
	if (f->fd >= 0)
		gm_fd_close(f->fd);
	gm_fd_drop(f->kfd);
	rangemap_fini(&f->where); /* only ever read under gm_shram_lock */
	free(f);
}

/* Record [start, end) in @f->where (1) or take it out (0). */
static void shfile_where_store_locked(struct gm_shfile *f, uint64_t start, uint64_t end,
				      uint64_t value)
{
	if (f->where_lost)
		return;
	if (rangemap_store(&f->where, start, end, value)) {
		rangemap_fini(&f->where);
		f->where_lost = true;
		return;
	}
	rangemap_reclaim_unreachable(&f->where); /* no RCU reader: reuse at once */
}

static struct gm_shfile *shfile_lookup_locked(dev_t dev, uint64_t ino)
{
	lockdep_assert_held(&gm_shram_lock);
	for (struct gm_shfile *f = gm_shfiles; f; f = f->next)
		if (f->dev == dev && f->ino == ino)
			return f;
	return NULL;
}

#define GM_HUGETLBFS_MAGIC 0x958458f6

/*
 * How the guest process may map @fd: hugetlbfs maps only whole huge pages,
 * whose size it reports as st_blksize; a file on a noexec mount refuses
 * PROT_EXEC (EPERM).
 */
static void file_map_props(int fd, uint64_t *align, bool *executable)
{
	struct statfs sfs;
	struct stat st;

	*align = GM_PAGE_SIZE;
	*executable = true;
	if (syscall(SYS_fstatfs, fd, &sfs))
		return;
	*executable = !(sfs.f_flags & ST_NOEXEC);
	if ((unsigned long)sfs.f_type == GM_HUGETLBFS_MAGIC && !gm_raw_fstat(fd, &st) &&
	    st.st_blksize >= (blksize_t)GM_PAGE_SIZE && !(st.st_blksize & (st.st_blksize - 1)))
		*align = (uint64_t)st.st_blksize;
}

/* Register @fd (owned from now on) as the file (dev, ino); NULL on ENOMEM. */
static struct gm_shfile *shfile_add_locked(int fd, dev_t dev, uint64_t ino, bool writable,
					   bool ours)
{
	struct gm_shfile *f = calloc(1, sizeof(*f));

	fd = gm_fd_own(fd);
	if (!f) {
		gm_fd_close(fd);
		return NULL;
	}
	*f = (struct gm_shfile){ .fd = fd, .kfd = -1, .fork_fd = -1, .dev = dev, .ino = ino,
				 .writable = writable, .ours = ours, .id = gm_shfile_next_id++,
				 .lo = ~0ULL };
	file_map_props(fd, &f->map_align, &f->executable);
	/* Out of the VMM's table if it can be; else kept here, as before. */
	f->kfd = gm_fd_keep(fd);
	if (f->kfd >= 0) {
		gm_fd_close(fd);
		f->fd = -1;
	} else {
		f->kfd = -1;
	}
	rangemap_init(&f->where);
	f->next = gm_shfiles;
	gm_shfiles = f;
	gm_shfiles_nr++;
	if (ours)
		WRITE_ONCE(gm_shfiles_ours, gm_shfiles_ours + 1);
	return f;
}

/*
 * A descriptor of @f for one use: its own, or the kept file opened here
 * (*fetched: close it with gm_fd_close() when done).  -1 with errno.
 */
static int shfile_use(const struct gm_shfile *f, bool *fetched)
{
	*fetched = f->fd < 0;
	return f->fd >= 0 ? f->fd : gm_fd_fetch(f->kfd);
}

static void shfile_unuse(int fd, bool fetched)
{
	if (fetched && fd >= 0)
		gm_fd_close(fd);
}

/* The VMM maps @f at [start, end): keep the file while it does. */
static void shfile_seen_mapped_locked(struct gm_shfile *f, uint64_t start, uint64_t end)
{
	if (!f->mapped) {
		f->mapped = true;
		f->refs++;
	}
	f->lo = GM_MIN(f->lo, start);
	f->hi = GM_MAX(f->hi, end);
	shfile_where_store_locked(f, start, end, 1);
}

long kvm_shram_nr_files(void)
{
	long n;

	gm_mutex_lock(&gm_shram_lock, GM_LOCK_SHRAM);
	n = gm_shfiles_nr;
	gm_mutex_unlock(&gm_shram_lock);
	return n;
}

/* ---- records ------------------------------------------------------------ */

struct kvm_shram_seg {
	uint64_t start, end;	/* host addresses */
	struct gm_shfile *file; /* NULL: @err */
	uint64_t offset;	/* file offset of @start */
	int err;
};

/* What backs one slot's host range; immutable except @stale. */
struct kvm_shram_rec {
	long refs;  /* 1: the holder that publishes it */
	int stale;  /* set by the mmu notifier (atomic); the next lookup probes again */
	struct rcu_head rcu;
	uint32_t nr, cap;
	struct kvm_shram_seg seg[];
};

static void shram_free_rcu(struct rcu_head *head)
{
	struct kvm_shram_rec *r = caa_container_of(head, struct kvm_shram_rec, rcu);

	gm_mutex_lock(&gm_shram_lock, GM_LOCK_SHRAM);
	for (uint32_t i = 0; i < r->nr; i++)
		if (r->seg[i].file)
			shfile_put_locked(r->seg[i].file);
	gm_mutex_unlock(&gm_shram_lock);
	free(r);
}

/*
 * A slot's holder of its record (slot->shram): allocated with the slot
 * and never changed in it, so that the plain struct copies memslots.c
 * makes of a slot (FLAGS_ONLY, MOVE, the INVALID stand-in) race with
 * nothing; a lookup replaces @cur instead.  Shared by the copies of one
 * slot (a FLAGS_ONLY or MOVE keeps the host range), each holding a
 * reference; the INVALID stand-in holds none and is freed with its slot.
 */
struct kvm_shram {
	long refs;		  /* atomic */
	struct kvm_shram_rec *cur; /* NULL until probed; replaced under gm_shram_lock */
};

static void shram_put(struct kvm_shram_rec *r)
{
	/* Readers may still use it: free (and drop its files) after a grace period. */
	if (r && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
		gm_call_rcu(&r->rcu, shram_free_rcu);
}

/* Append a segment, merging with the last one when it simply continues. */
static int shram_add_seg(struct kvm_shram_rec **rp, uint64_t start, uint64_t end,
			 struct gm_shfile *file, uint64_t offset, int err)
{
	struct kvm_shram_rec *r = *rp;
	struct kvm_shram_seg *last = r->nr ? &r->seg[r->nr - 1] : NULL;

	if (last && last->end == start && last->file == file &&
	    (file ? last->offset + (last->end - last->start) == offset : last->err == err)) {
		last->end = end;
		if (file)
			file->refs--; /* the caller took one for this segment */
		return 0;
	}
	if (r->nr == r->cap) {
		uint32_t cap = r->cap * 2;
		struct kvm_shram_rec *n = realloc(r, sizeof(*r) + cap * sizeof(r->seg[0]));

		if (!n)
			return -ENOMEM;
		n->cap = cap;
		*rp = r = n;
	}
	r->seg[r->nr++] = (struct kvm_shram_seg){ start, end, file, offset, err };
	return 0;
}

/* ---- /proc/self/maps ----------------------------------------------------- */

enum piece_kind {
	PIECE_HOLE,	   /* nothing mapped */
	PIECE_ANON,	   /* anonymous private memory: converted */
	PIECE_ANON_HUGE,   /* the same in hugetlb pages (MAP_HUGETLB): converted */
	PIECE_SHARED_FILE, /* MAP_SHARED of a file: reopened */
	PIECE_OTHER,	   /* anything else: no fd */
};

/* One VMA (or hole) clipped to the probed range. */
struct piece {
	uint64_t start, end;
	uint64_t vma_start, vma_end; /* the whole VMA (for /proc/self/map_files) */
	enum piece_kind kind;
	int prot;
	uint64_t off; /* file offset of @start (shared files) */
	dev_t dev;
	uint64_t ino;
	const char *path; /* into the maps buffer; "" if none */
};

struct pieces {
	struct piece *p;
	size_t nr, cap;
};

static int pieces_add(struct pieces *ps, const struct piece *p)
{
	if (ps->nr == ps->cap) {
		size_t cap = ps->cap ? 2 * ps->cap : 8;
		struct piece *n = realloc(ps->p, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		ps->p = n;
		ps->cap = cap;
	}
	ps->p[ps->nr++] = *p;
	return 0;
}

static enum piece_kind classify(const char *perms, uint64_t ino, const char *path)
{
	if (perms[3] == 's')
		return ino ? PIECE_SHARED_FILE : PIECE_OTHER;
	/* Private: only plain (or named) anonymous memory; not the heap or stacks. */
	if (ino == 0 && (path[0] == '\0' || !strncmp(path, "[anon:", 6)))
		return PIECE_ANON;
	/* MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB: hugetlbfs's internal file. */
	if (!strncmp(path, "/anon_hugepage", 14))
		return PIECE_ANON_HUGE;
	return PIECE_OTHER;
}

/* Every VMA of @maps (modified: lines are cut), in address order. */
static int parse_vmas(char *maps, struct pieces *vmas)
{
	char *line = maps;
	int r;

	while (line && *line) {
		char *nl = strchr(line, '\n'), perms[8] = "";
		unsigned long long vs, ve, off, ino;
		unsigned maj, min;
		int n = 0;
		struct piece p;

		if (nl)
			*nl = '\0';
		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &vs, &ve, perms, &off, &maj,
			   &min, &ino, &n) < 7 || strlen(perms) < 4)
			return -EIO;
		p = (struct piece){
			.start = vs,
			.end = ve,
			.vma_start = vs,
			.vma_end = ve,
			.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
				(perms[2] == 'x' ? PROT_EXEC : 0),
			.off = off,
			.dev = makedev(maj, min),
			.ino = ino,
			.path = line + n,
		};
		p.kind = classify(perms, ino, p.path);
		r = pieces_add(vmas, &p);
		if (r)
			return r;
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

/* The index of the first VMA of @vmas ending above @addr (nr if none). */
static size_t vma_first_above(const struct pieces *vmas, uint64_t addr)
{
	size_t lo = 0, hi = vmas->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (vmas->p[mid].end > addr)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Split [start, end) into the VMAs @vmas (from parse_vmas) and the holes between them. */
static int clip_vmas(const struct pieces *vmas, uint64_t start, uint64_t end, struct pieces *ps)
{
	uint64_t pos = start;
	int r;

	for (size_t i = vma_first_above(vmas, start); i < vmas->nr && pos < end && vmas->p[i].start < end; i++) {
		struct piece p = vmas->p[i];

		if (p.start > pos) {
			struct piece h = { .start = pos, .end = p.start, .kind = PIECE_HOLE,
					   .path = "" };

			r = pieces_add(ps, &h);
			if (r)
				return r;
			pos = p.start;
		}
		p.off += pos - p.vma_start;
		p.start = pos;
		p.end = GM_MIN(p.vma_end, end);
		r = pieces_add(ps, &p);
		if (r)
			return r;
		pos = p.end;
	}
	if (pos < end) {
		struct piece p = { .start = pos, .end = end, .kind = PIECE_HOLE, .path = "" };

		return pieces_add(ps, &p);
	}
	return 0;
}

/*
 * Split [start, end) into the VMAs of @maps (modified: lines are cut) and
 * the holes between them.
 */
static int parse_maps(char *maps, uint64_t start, uint64_t end, struct pieces *ps)
{
	struct pieces vmas = { NULL, 0, 0 };
	int r = parse_vmas(maps, &vmas);

	if (!r)
		r = clip_vmas(&vmas, start, end, ps);
	free(vmas.p);
	return r;
}

/*
 * Bumped by every change to the address space guestmem learns of (the mmu
 * notifier's hooks below, and conversions): a snapshot read at another
 * value may be stale.  Atomic.
 */
static unsigned long gm_shram_gen;

/*
 * One read of /proc/self/maps (and, at the first conversion, of
 * /proc/self/smaps) for probing many slots, as kvm_shared_ram_enable()
 * does: one read per slot costs O(slots^2) with thousands of slots.  Its
 * own conversions are listed (@conv), so that a slot over one of them (an
 * alias) reads the maps again; any other change bumps gm_shram_gen, which
 * makes the next probe read them again.  Owned by one caller; used under
 * gm_shram_lock.
 */
struct maps_snap {
	char *maps; /* the paths of @vmas point into it */
	struct pieces vmas;
	unsigned long gen; /* gm_shram_gen when read */
	bool stale;	   /* a conversion could not be listed: read again */
	struct conv_range {
		uint64_t start, end;
	} *conv; /* the ranges converted since the read, in no order */
	size_t nr_conv, cap_conv;
	char *smaps;	   /* NULL: not read yet (or unreadable, @smaps_tried) */
	bool smaps_tried;
	struct smaps_ent {
		uint64_t start;
		const char *flags; /* into @smaps */
		uint64_t page_size; /* KernelPageSize, 0 if not seen */
	} *fl;
	size_t nr_fl;
};

static void snap_drop(struct maps_snap *s)
{
	free(s->maps);
	free(s->vmas.p);
	free(s->smaps);
	free(s->fl);
	free(s->conv);
	*s = (struct maps_snap){ 0 };
}

/* Read the maps now: 0, -EOPNOTSUPP (no /proc), -EIO or -ENOMEM. */
static int snap_read(struct maps_snap *s)
{
	int r;

	snap_drop(s);
	s->gen = __atomic_load_n(&gm_shram_gen, __ATOMIC_ACQUIRE);
	s->maps = gm_read_proc_file("/proc/self/maps", SIZE_MAX);
	if (!s->maps)
		return -EOPNOTSUPP;
	r = parse_vmas(s->maps, &s->vmas);
	if (r) {
		free(s->maps);
		s->maps = NULL;
	}
	return r;
}

/* A conversion is replacing [start, end): list it. */
static void snap_mark_changed(struct maps_snap *s, uint64_t start, uint64_t end)
{
	if (s->nr_conv == s->cap_conv) {
		size_t cap = s->cap_conv ? 2 * s->cap_conv : 64;
		struct conv_range *n = realloc(s->conv, cap * sizeof(*n));

		if (!n) {
			s->stale = true;
			return;
		}
		s->conv = n;
		s->cap_conv = cap;
	}
	s->conv[s->nr_conv++] = (struct conv_range){ start, end };
}

/* Does the snapshot still describe [start, end)? */
static bool snap_current(const struct maps_snap *s, uint64_t start, uint64_t end)
{
	if (!s->maps || s->stale || s->gen != __atomic_load_n(&gm_shram_gen, __ATOMIC_ACQUIRE))
		return false;
	for (size_t i = 0; i < s->nr_conv; i++)
		if (s->conv[i].start < end && start < s->conv[i].end)
			return false;
	return true;
}

/* ---- opening the VMM's file -------------------------------------------- */

/* Open @path and keep it only if it is (dev, ino).  -1 otherwise. */
static int open_verified(const char *path, dev_t dev, uint64_t ino, bool *writable)
{
	struct stat st;
	int fd = gm_raw_open(path, O_RDWR | O_CLOEXEC | O_NOCTTY, 0);

	*writable = fd >= 0;
	if (fd < 0)
		fd = gm_raw_open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY, 0);
	if (fd < 0)
		return -1;
	if (gm_raw_fstat(fd, &st) || st.st_dev != dev || st.st_ino != ino) {
		gm_raw_close(fd);
		return -1;
	}
	return fd;
}

struct gm_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* An open fd of this process on (dev, ino), reopened for guestmem; -1 if none. */
static int reopen_from_fd_table(dev_t dev, uint64_t ino, bool *writable)
{
	int dfd = gm_raw_open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	char buf[4096] __attribute__((aligned(8)));
	int found = -1;
	long n;

	if (dfd < 0)
		return -1;
	while (found < 0 && (n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; found < 0 && off < n;) {
			struct gm_dirent64 *d = (struct gm_dirent64 *)(buf + off);
			struct stat st;
			char path[64];

			off += d->d_reclen;
			if (d->d_name[0] < '0' || d->d_name[0] > '9' || atoi(d->d_name) == dfd)
				continue;
			/* stat follows the link to the open file itself. */
			if (gm_raw_fstatat(dfd, d->d_name, &st, 0) || st.st_dev != dev ||
			    st.st_ino != ino)
				continue;
			snprintf(path, sizeof(path), "/proc/self/fd/%s", d->d_name);
			/* Verified again: the VMM may have reused the number meanwhile. */
			found = open_verified(path, dev, ino, writable);
		}
	}
	gm_raw_close(dfd);
	return found;
}

/* The maps path without the " (deleted)" suffix the kernel appends. */
static bool path_usable(const char *path)
{
	size_t len = strlen(path);

	return path[0] == '/' && !(len >= 10 && !strcmp(path + len - 10, " (deleted)"));
}

/*
 * The file a MAP_SHARED piece maps, with one reference for the caller:
 * known already, an open fd of the process, its path, or (with
 * CAP_SYS_ADMIN) /proc/self/map_files.  NULL: not reachable (*err).
 */
static struct gm_shfile *shfile_for_piece_locked(const struct piece *p, int *err)
{
	struct gm_shfile *f = shfile_lookup_locked(p->dev, p->ino);
	bool writable = false;
	char mf[64];
	int fd;

	if (!f) {
		fd = reopen_from_fd_table(p->dev, p->ino, &writable);
		if (fd < 0 && path_usable(p->path))
			fd = open_verified(p->path, p->dev, p->ino, &writable);
		if (fd < 0) {
			snprintf(mf, sizeof(mf), "/proc/self/map_files/%llx-%llx",
				 (unsigned long long)p->vma_start, (unsigned long long)p->vma_end);
			fd = open_verified(mf, p->dev, p->ino, &writable);
		}
		if (fd < 0) {
			*err = -EOPNOTSUPP;
			return NULL;
		}
		f = shfile_add_locked(fd, p->dev, p->ino, writable, false);
		if (!f) {
			*err = -ENOMEM;
			return NULL;
		}
	}
	f->refs++;
	shfile_seen_mapped_locked(f, p->start, p->end);
	return f;
}

/* ---- fork ------------------------------------------------------------------ */

/*
 * After a libc fork, converted memory would be shared between parent and
 * child, where anonymous private memory is copy-on-write: the child maps
 * the same file MAP_PRIVATE instead, so its writes stay its own (until it
 * writes a page it still sees the parent's later writes to it: README).
 * A raw fork system call runs no handler and shares the memory.
 *
 * The handlers use the plain pthread calls, as src/uapi/file.c does: the
 * fork may come from any thread, holding locks lockdep does not rank.
 */
/*
 * A fork child has no keeper of its own (the parent's table is not its
 * own): kept files are opened here first, and the child keeps those.
 */
static void shram_atfork_prepare(void)
{
	pthread_mutex_lock(&gm_shram_lock);
	for (struct gm_shfile *f = gm_shfiles; f; f = f->next)
		if (f->fd < 0)
			f->fork_fd = gm_fd_fetch(f->kfd);
}

static void shram_atfork_parent(void)
{
	for (struct gm_shfile *f = gm_shfiles; f; f = f->next) {
		if (f->fork_fd >= 0)
			gm_fd_close(f->fork_fd);
		f->fork_fd = -1;
	}
	pthread_mutex_unlock(&gm_shram_lock);
}

static void shram_atfork_child(void)
{
	pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
	char *maps = gm_shfiles_ours ? gm_read_proc_file("/proc/self/maps", SIZE_MAX) : NULL;

	for (struct gm_shfile *f = gm_shfiles; f; f = f->next) {
		if (f->fd < 0) { /* the parent's keeper holds it, not ours */
			f->fd = f->fork_fd;
			f->kfd = -1;
		}
		f->fork_fd = -1;
	}

	for (char *line = maps, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		unsigned long long vs, ve, off, ino;
		unsigned maj, min;
		char perms[8] = "";

		nl = strchr(line, '\n');
		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &vs, &ve, perms, &off, &maj, &min,
			   &ino) < 7 || perms[3] != 's')
			continue;
		for (struct gm_shfile *f = gm_shfiles; f; f = f->next) {
			if (!f->ours || f->ino != ino || f->dev != makedev(maj, min))
				continue;
			gm_raw_mmap((void *)(uintptr_t)vs, ve - vs,
				    (perms[0] == 'r' ? PROT_READ : 0) |
					    (perms[1] == 'w' ? PROT_WRITE : 0) |
					    (perms[2] == 'x' ? PROT_EXEC : 0),
				    MAP_PRIVATE | MAP_FIXED, f->fd, (off_t)off);
			break;
		}
	}
	free(maps);
	gm_shram_lock = fresh;
}

static pthread_once_t gm_shram_atfork_once = PTHREAD_ONCE_INIT;

static void shram_atfork_register(void)
{
	pthread_atfork(shram_atfork_prepare, shram_atfork_parent, shram_atfork_child);
}

/* ---- converting anonymous memory ---------------------------------------- */

static bool page_is_zero(const uint64_t *p)
{
	for (size_t i = 0; i < GM_PAGE_SIZE / sizeof(*p); i++)
		if (p[i])
			return false;
	return true;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = gm_raw_pwrite(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 && errno == ENOSPC ? -ENOMEM : -EIO;
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define COPY_BATCH 512

/*
 * Copy the pages of [start, end) that exist (present or swapped out, per
 * /proc/self/pagemap; all of them if it cannot be read) and are not all
 * zero into @fd at @file_off.  Unreadable memory (PROT_NONE) is read
 * through /proc/self/mem, which may fail: then -EOPNOTSUPP.
 */
static int copy_existing(int fd, uint64_t start, uint64_t end, uint64_t file_off, bool readable)
{
	int pm = gm_raw_open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0), mem = -1, r = 0;
	uint64_t *ents = malloc(COPY_BATCH * sizeof(*ents)), *bounce = NULL;

	if (!ents) {
		r = -ENOMEM;
		goto out;
	}
	for (uint64_t a = start; a < end && !r; a += COPY_BATCH * GM_PAGE_SIZE) {
		uint64_t n = GM_MIN((uint64_t)COPY_BATCH, (end - a) >> GM_PAGE_SHIFT);

		if (pm < 0 || gm_raw_pread(pm, ents, n * 8, (off_t)((a >> GM_PAGE_SHIFT) * 8)) !=
				      (ssize_t)(n * 8))
			for (uint64_t i = 0; i < n; i++)
				ents[i] = PM_PRESENT;
		for (uint64_t i = 0; i < n && !r; i++) {
			uint64_t src = a + (i << GM_PAGE_SHIFT);
			const uint64_t *page = (const uint64_t *)(uintptr_t)src;

			if (!(ents[i] & (PM_PRESENT | PM_SWAP)))
				continue;
			if (!readable) {
				if (!bounce && !(bounce = malloc(GM_PAGE_SIZE)))
					r = -ENOMEM;
				if (!r && mem < 0 &&
				    (mem = gm_raw_open("/proc/self/mem", O_RDONLY | O_CLOEXEC, 0)) < 0)
					r = -EOPNOTSUPP;
				if (!r && gm_raw_pread(mem, bounce, GM_PAGE_SIZE, (off_t)src) !=
						  (ssize_t)GM_PAGE_SIZE)
					r = -EOPNOTSUPP;
				page = bounce;
			}
			if (!r && !page_is_zero(page))
				r = write_all(fd, page, GM_PAGE_SIZE, file_off + (src - start));
		}
	}
out:
	if (pm >= 0)
		gm_raw_close(pm);
	if (mem >= 0)
		gm_raw_close(mem);
	free(bounce);
	free(ents);
	return r;
}

/*
 * Index the VmFlags lines of @s->smaps by VMA start (in address order, as
 * the kernel lists them).  Without memory the flags are left out.
 */
static void snap_index_smaps(struct maps_snap *s)
{
	size_t cap = 0;
	bool in = false;

	for (char *line = s->smaps; line && *line;) {
		char *nl = strchr(line, '\n');
		unsigned long long vs, ve;
		char c;

		/* A VMA header: "start-end perms ..."; field lines start with a name. */
		if (sscanf(line, "%llx-%llx %c", &vs, &ve, &c) == 3) {
			in = true;
			if (s->nr_fl == cap) {
				struct smaps_ent *n;

				cap = cap ? 2 * cap : 256;
				n = realloc(s->fl, cap * sizeof(*n));
				if (!n) {
					s->nr_fl = 0;
					return;
				}
				s->fl = n;
			}
			s->fl[s->nr_fl++] = (struct smaps_ent){ vs, NULL, 0 };
		} else if (in && !strncmp(line, "KernelPageSize:", 15)) {
			unsigned long long kb;

			if (sscanf(line + 15, "%llu", &kb) == 1)
				s->fl[s->nr_fl - 1].page_size = kb << 10;
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			s->fl[s->nr_fl - 1].flags = line + 8;
			in = false;
		}
		line = nl ? nl + 1 : NULL;
	}
}

/* The smaps entry of the VMA starting at @vma_start, or NULL. */
static const struct smaps_ent *smaps_ent(const struct maps_snap *s, uint64_t vma_start)
{
	size_t lo = 0, hi = s->nr_fl;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->fl[mid].start == vma_start)
			return &s->fl[mid];
		if (s->fl[mid].start < vma_start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * The VmFlags of the VMA starting at @vma_start ("rd wr mr ..."), or
 * NULL.  Points into the snapshot's smaps, up to the end of its line.
 */
static const char *smaps_vmflags(const struct maps_snap *s, uint64_t vma_start)
{
	const struct smaps_ent *e = smaps_ent(s, vma_start);

	return e ? e->flags : NULL;
}

/* Read smaps into @snap once, before the VMAs change (NULL: flags left out). */
static void snap_read_smaps(struct maps_snap *snap)
{
	if (!snap->smaps_tried) {
		snap->smaps_tried = true;
		snap->smaps = gm_read_proc_file("/proc/self/smaps", SIZE_MAX);
		snap_index_smaps(snap);
	}
}

static bool vmflag(const char *flags, const char *flag)
{
	for (const char *p = flags; p && *p && *p != '\n'; p++)
		if (p[0] == flag[0] && p[1] == flag[1] && (p == flags || p[-1] == ' ') &&
		    (p[2] == ' ' || p[2] == '\n' || p[2] == '\0'))
			return true;
	return false;
}

/*
 * Give the new mapping of @p the per-VMA flags a VMM sets on guest RAM
 * and the kernel keeps in VmFlags: locked, don't fork, don't dump, and
 * the huge page hints (which tmpfs honours in "advise" mode).  KSM and
 * wipe-on-fork do not exist for shared mappings (README).  Best effort.
 */
static void copy_vma_flags(const struct maps_snap *s, const struct piece *p)
{
	const char *flags = smaps_vmflags(s, p->vma_start);
	void *addr = (void *)(uintptr_t)p->start;
	size_t len = p->end - p->start;

	if (!flags)
		return;
	if (vmflag(flags, "dc"))
		gm_raw_madvise(addr, len, MADV_DONTFORK);
	if (vmflag(flags, "dd"))
		gm_raw_madvise(addr, len, MADV_DONTDUMP);
	if (vmflag(flags, "hg"))
		gm_raw_madvise(addr, len, MADV_HUGEPAGE);
	if (vmflag(flags, "nh"))
		gm_raw_madvise(addr, len, MADV_NOHUGEPAGE);
	if (vmflag(flags, "lo"))
		syscall(SYS_mlock, addr, len);
}

/* From here on the maps change: by us only, if the snapshot was current. */
static void snap_begin_change(struct maps_snap *snap, uint64_t start, uint64_t end)
{
	unsigned long gen = __atomic_fetch_add(&gm_shram_gen, 1, __ATOMIC_ACQ_REL);

	if (snap->gen == gen)
		snap->gen = gen + 1;
	snap_mark_changed(snap, start, end);
}

/*
 * Replace the anonymous pieces ps[first..last] (contiguous) by one new
 * memfd mapped MAP_SHARED at the same addresses with each piece's
 * protection, after copying what they hold.  Returns the file with one
 * reference per converted piece and in *done how many were (from @first
 * on; fewer than asked only if an mmap failed), or NULL and *err with the
 * memory untouched.
 *
 * A VMM thread writing the range between the copy and the mmap loses its
 * write; conversions run when memslots are created or the backend is
 * enabled, before guest code runs (README "Memslot RAM").
 */
static struct gm_shfile *convert_anon_locked(const struct piece *ps, size_t first, size_t last,
					     size_t *done, int *err, struct maps_snap *snap)
{
	uint64_t start = ps[first].start, len = ps[last].end - start;
	struct gm_shfile *f;
	struct stat st;
	int fd, r = 0;

	fd = gm_fd_own(gm_raw_memfd_create("guestmem-ram", MFD_CLOEXEC));
	if (fd < 0) {
		*err = errno == EMFILE || errno == ENFILE ? -EMFILE : -ENOMEM;
		return NULL;
	}
	if (gm_backing_set_size(fd, len) || gm_raw_fstat(fd, &st))
		r = -ENOMEM;
	for (size_t i = first; i <= last && !r; i++)
		r = copy_existing(fd, ps[i].start, ps[i].end, ps[i].start - start,
				  ps[i].prot & PROT_READ);
	if (r) {
		gm_fd_close(fd);
		*err = r;
		return NULL;
	}
	snap_read_smaps(snap);
	snap_begin_change(snap, start, ps[last].end);
	for (size_t i = first; i <= last; i++) {
		void *want = (void *)(uintptr_t)ps[i].start;
		void *got = gm_raw_mmap(want, ps[i].end - ps[i].start, ps[i].prot,
					MAP_SHARED | MAP_FIXED, fd, (off_t)(ps[i].start - start));

		/*
		 * Only ENOMEM (no VMA left) can fail here; a piece that failed
		 * keeps its old mapping (Linux >= 6.1 restores it) and is
		 * then reported, with the pieces after it, as not convertible.
		 */
		if (got != want) {
			if (i == first) {
				gm_fd_close(fd);
				*err = -ENOMEM;
				return NULL;
			}
			last = i - 1;
			break;
		}
		copy_vma_flags(snap, &ps[i]);
	}
	f = shfile_add_locked(fd, st.st_dev, st.st_ino, true, true);
	if (!f) {
		/* The VMM's memory is converted but untracked: still correct for it. */
		*err = -ENOMEM;
		return NULL;
	}
	for (size_t i = first; i <= last; i++) {
		f->refs++;
		shfile_seen_mapped_locked(f, ps[i].start, ps[i].end);
	}
	*done = last - first + 1;
	return f;
}

/*
 * The same for a private hugetlb piece @p (MAP_HUGETLB): a hugetlb memfd
 * of the piece's page size mapped MAP_SHARED in its place.  hugetlbfs has
 * no write(2), so each huge page the VMM has (present in pagemap) goes
 * through a bounce buffer: copied out, the memfd's page mapped over it
 * (which frees the old page), copied back.  The pool needs one free huge
 * page for the swap, not a second copy of the region.  NULL and *err if
 * nothing was converted; a failure after the first page leaves the pages
 * before it converted (same contents) and reports -ENOMEM.
 */
static struct gm_shfile *convert_huge_locked(const struct piece *p, uint64_t *conv_end, int *err,
					     struct maps_snap *snap)
{
	const struct smaps_ent *e;
	uint64_t psize, len = p->end - p->start, done = 0;
	int fd, pm, prot_rw = p->prot | PROT_READ | PROT_WRITE, shift = 0, r = 0;
	struct gm_shfile *f;
	uint8_t *bounce;
	struct stat st;

	snap_read_smaps(snap);
	e = smaps_ent(snap, p->vma_start);
	psize = e ? e->page_size : 0;
	if (psize <= GM_PAGE_SIZE || (psize & (psize - 1)) || (p->start & (psize - 1)) ||
	    (len & (psize - 1)) || !(p->prot & PROT_READ)) {
		*err = -EOPNOTSUPP; /* page size unknown, or not readable to copy */
		return NULL;
	}
	while ((1ULL << shift) < psize)
		shift++;
	bounce = malloc(psize);
	fd = gm_fd_own(gm_raw_memfd_create("guestmem-ram",
					   MFD_CLOEXEC | MFD_HUGETLB | ((unsigned)shift << 26)));
	if (!bounce || fd < 0 || gm_backing_set_size(fd, len) || gm_raw_fstat(fd, &st)) {
		*err = fd < 0 && (errno == EMFILE || errno == ENFILE) ? -EMFILE : -ENOMEM;
		if (fd >= 0)
			gm_fd_close(fd);
		free(bounce);
		return NULL;
	}
	pm = gm_raw_open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	snap_begin_change(snap, p->start, p->end);
	for (; done < len && !r; done += psize) {
		uint8_t *at = (uint8_t *)(uintptr_t)(p->start + done);
		uint64_t ent = PM_PRESENT;
		bool have;

		/* A huge page the VMM never touched is not faulted in by the copy. */
		if (pm >= 0 && gm_raw_pread(pm, &ent, 8, (off_t)(((uintptr_t)at >> GM_PAGE_SHIFT) * 8)) != 8)
			ent = PM_PRESENT;
		have = ent & (PM_PRESENT | PM_SWAP);
		if (have)
			memcpy(bounce, at, psize);
		if (gm_raw_mmap(at, psize, have ? prot_rw : p->prot, MAP_SHARED | MAP_FIXED, fd,
				(off_t)done) != at) {
			r = -ENOMEM;
			break;
		}
		if (have) {
			memcpy(at, bounce, psize);
			if (prot_rw != p->prot)
				gm_raw_mprotect(at, psize, p->prot);
		}
	}
	if (pm >= 0)
		gm_raw_close(pm);
	free(bounce);
	if (r && !done) {
		gm_fd_close(fd);
		*err = r;
		return NULL;
	}
	copy_vma_flags(snap, p);
	f = shfile_add_locked(fd, st.st_dev, st.st_ino, true, true);
	if (!f) {
		*err = -ENOMEM;
		return NULL;
	}
	f->refs++;
	shfile_seen_mapped_locked(f, p->start, p->start + done);
	*conv_end = p->start + done;
	*err = r;
	return f;
}

/* ---- probing a slot's range ---------------------------------------------- */

/*
 * The record of [start, end) now (converting anonymous memory), from
 * @snap, which is read (again) first unless it is still current.
 */
static struct kvm_shram_rec *shram_probe_locked(uint64_t start, uint64_t end,
						struct maps_snap *snap)
{
	struct pieces ps = { NULL, 0, 0 };
	struct kvm_shram_rec *r = malloc(sizeof(*r) + 4 * sizeof(r->seg[0]));
	int err = 0;

	lockdep_assert_held(&gm_shram_lock);
	if (!r)
		goto fail;
	*r = (struct kvm_shram_rec){ .refs = 1, .cap = 4 };
	/* Changed since, or over memory it converted (an alias): read again. */
	if (!snap_current(snap, start, end))
		err = snap_read(snap); /* -EOPNOTSUPP: no /proc, nothing can be found */
	if (!err)
		err = clip_vmas(&snap->vmas, start, end, &ps);
	if (err)
		goto whole;
	for (size_t i = 0; i < ps.nr && !err; i++) {
		struct piece *p = &ps.p[i];
		struct gm_shfile *f;
		size_t last = i, done = 0;
		int e = 0;

		switch (p->kind) {
		case PIECE_HOLE:
			err = shram_add_seg(&r, p->start, p->end, NULL, 0, -EFAULT);
			break;
		case PIECE_OTHER:
			err = shram_add_seg(&r, p->start, p->end, NULL, 0, -EOPNOTSUPP);
			break;
		case PIECE_SHARED_FILE:
			f = shfile_for_piece_locked(p, &e);
			err = f ? shram_add_seg(&r, p->start, p->end, f, p->off, 0)
				: shram_add_seg(&r, p->start, p->end, NULL, 0, e);
			if (err && f)
				shfile_put_locked(f);
			break;
		case PIECE_ANON_HUGE: {
			uint64_t conv_end = p->end;

			f = convert_huge_locked(p, &conv_end, &e, snap);
			if (!f) {
				err = shram_add_seg(&r, p->start, p->end, NULL, 0, e);
				break;
			}
			/* A partial conversion: the rest stays out of reach. */
			err = shram_add_seg(&r, p->start, conv_end, f, 0, 0);
			if (err)
				shfile_put_locked(f);
			else if (conv_end < p->end)
				err = shram_add_seg(&r, conv_end, p->end, NULL, 0, e);
			break;
		}
		case PIECE_ANON:
			while (last + 1 < ps.nr && ps.p[last + 1].kind == PIECE_ANON)
				last++;
			f = convert_anon_locked(ps.p, i, last, &done, &e, snap);
			if (!f) {
				err = shram_add_seg(&r, p->start, ps.p[last].end, NULL, 0, e);
			} else {
				for (size_t k = i; k < i + done; k++) {
					if (!err)
						err = shram_add_seg(&r, ps.p[k].start, ps.p[k].end, f,
								    ps.p[k].start - p->start, 0);
					if (err)
						shfile_put_locked(f);
				}
				if (!err && i + done <= last)
					err = shram_add_seg(&r, ps.p[i + done].start,
							    ps.p[last].end, NULL, 0, -EOPNOTSUPP);
			}
			i = last;
			break;
		}
	}
	if (err)
		goto fail;
	free(ps.p);
	return r;

whole: /* one error for the whole range */
	r->nr = 0;
	if (!shram_add_seg(&r, start, end, NULL, 0, err)) {
		free(ps.p);
		return r;
	}
fail:
	if (r) {
		for (uint32_t i = 0; i < r->nr; i++)
			if (r->seg[i].file)
				shfile_put_locked(r->seg[i].file);
		free(r);
	}
	free(ps.p);
	return NULL;
}

/*
 * The slot's current record: probed now if it has none or the notifier
 * marked it stale, through @snap (NULL: a snapshot of its own).  NULL
 * only on ENOMEM.  Context: RCU read lock (the slot stays allocated) or
 * slots_lock.
 */
static struct kvm_shram_rec *shram_get_snap(struct kvm_memory_slot *slot, struct maps_snap *snap)
{
	struct kvm_shram *h = slot->shram;
	struct kvm_shram_rec *r, *old;
	struct maps_snap own = { 0 };

	if (!h)
		return NULL; /* no memory for the holder when the slot was made */
	r = smp_load_acquire(&h->cur);
	if (likely(r && !__atomic_load_n(&r->stale, __ATOMIC_ACQUIRE)))
		return r;
	/*
	 * Not under the lock: glibc holds its atfork lock while it runs our
	 * prepare handler, which takes gm_shram_lock.
	 */
	pthread_once(&gm_shram_atfork_once, shram_atfork_register);
	gm_mutex_lock(&gm_shram_lock, GM_LOCK_SHRAM);
	old = h->cur; /* stable: only replaced under this lock */
	r = old;
	if (!r || __atomic_load_n(&r->stale, __ATOMIC_ACQUIRE)) {
		r = shram_probe_locked(slot->userspace_addr, kvm_memslot_hva_end(slot), snap ? snap : &own);
		if (r) {
			smp_store_release(&h->cur, r);
			shram_put(old);
		}
	}
	gm_mutex_unlock(&gm_shram_lock);
	snap_drop(&own);
	return r;
}

static struct kvm_shram_rec *shram_get(struct kvm_memory_slot *slot)
{
	return shram_get_snap(slot, NULL);
}

/* ---- memslot and notifier hooks ------------------------------------------- */

void kvm_shram_slot_created(struct kvm *kvm, struct kvm_memory_slot *slot)
{
	lockdep_assert_held(&kvm->slots_lock);
	if (slot->flags & KVM_MEMSLOT_GMEM_ONLY)
		return; /* its shared memory is the guest_memfd's */
	(void)shram_get(slot);
}

void kvm_shram_slot_init(struct kvm_memory_slot *slot)
{
	struct kvm_shram *h = calloc(1, sizeof(*h));

	if (h)
		h->refs = 1;
	slot->shram = h; /* NULL: its lookups answer -ENOMEM, its ioctl is unaffected */
}

void kvm_shram_slot_copy(struct kvm_memory_slot *dst, const struct kvm_memory_slot *src)
{
	kvm_shram_slot_free(dst);
	if (src->shram)
		__atomic_fetch_add(&src->shram->refs, 1, __ATOMIC_RELAXED);
	dst->shram = src->shram;
}

void kvm_shram_slot_free(struct kvm_memory_slot *slot)
{
	struct kvm_shram *h = slot->shram;

	slot->shram = NULL;
	if (h && __atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		/* No slot names it any more, and readers of those slots are gone. */
		shram_put(h->cur);
		free(h);
	}
}

void kvm_shram_slot_hva_changed(struct kvm_memory_slot *slot)
{
	struct kvm_shram_rec *r = slot->shram ? smp_load_acquire(&slot->shram->cur) : NULL;

	__atomic_fetch_add(&gm_shram_gen, 1, __ATOMIC_ACQ_REL);
	if (r)
		__atomic_store_n(&r->stale, 1, __ATOMIC_RELEASE);
}

/*
 * Is @f in the maps text?  If so, its mappings there become f->where.
 * Linear: each line is scanned from a bounded copy (sscanf on the whole
 * text measures all of it, per line).
 */
static bool maps_file_where_locked(const char *maps, struct gm_shfile *f)
{
	bool found = false;

	rangemap_fini(&f->where);
	f->where_lost = false;
	for (const char *line = maps; line && *line;) {
		unsigned long long vs, ve, ino;
		unsigned maj, min;
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char buf[128]; /* the fields before the path fit */

		n = GM_MIN(n, sizeof(buf) - 1);
		memcpy(buf, line, n);
		buf[n] = '\0';
		if (sscanf(buf, "%llx-%llx %*s %*x %x:%x %llu", &vs, &ve, &maj, &min, &ino) == 5 &&
		    ino == f->ino && makedev(maj, min) == f->dev) {
			found = true;
			shfile_seen_mapped_locked(f, vs, ve); /* maybe moved (mremap) */
		}
		line = nl ? nl + 1 : NULL;
	}
	return found;
}

/*
 * Whether @f, mapped somewhere in the hull [f->lo, f->hi) that meets the
 * changed [start, end), may have lost its last mapping: its known mappings
 * lose [start, end); if some are left, the change did not reach them.
 */
static bool shfile_may_be_unmapped_locked(struct gm_shfile *f, uint64_t start, uint64_t end)
{
	shfile_where_store_locked(f, start, end, 0);
	return f->where_lost || rangemap_nr_runs(&f->where) == 0;
}

void kvm_shram_hva_changed(uint64_t start, uint64_t end)
{
	char *maps = NULL;
	bool any = false;

	__atomic_fetch_add(&gm_shram_gen, 1, __ATOMIC_ACQ_REL);
	gm_mutex_lock(&gm_shram_lock, GM_LOCK_SHRAM);
	for (struct gm_shfile *f = gm_shfiles; f; f = f->next) {
		f->check = f->mapped && f->lo < end && start < f->hi &&
			   shfile_may_be_unmapped_locked(f, start, end);
		any |= f->check;
	}
	if (any)
		maps = gm_read_proc_file("/proc/self/maps", SIZE_MAX);
	for (struct gm_shfile *f = gm_shfiles, *next; maps && f; f = next) {
		next = f->next;
		if (f->check && !maps_file_where_locked(maps, f)) {
			f->mapped = false;
			shfile_put_locked(f);
		}
	}
	gm_mutex_unlock(&gm_shram_lock);
	free(maps);
}

struct enable_batch {
	struct kvm_memory_slot **slot;
	size_t nr, cap;
};

static int shram_enable_slot(struct kvm_memory_slot *slot, void *data)
{
	struct enable_batch *b = data;

	if (slot->flags & KVM_MEMSLOT_GMEM_ONLY) /* as kvm_shram_slot_created() */
		return 0;
	/* Probed already (kvm_shared_ram_prepare()): a later lookup re-probes
	 * it if the VMM has changed the memory since. */
	if (slot->shram && __atomic_load_n(&slot->shram->cur, __ATOMIC_ACQUIRE))
		return 0;
	if (b->nr == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		struct kvm_memory_slot **n = realloc(b->slot, cap * sizeof(*n));

		if (!n) {
			(void)shram_get(slot); /* on its own, then */
			return 0;
		}
		b->slot = n;
		b->cap = cap;
	}
	b->slot[b->nr++] = slot;
	return 0;
}

static int slot_hva_cmp(const void *a, const void *b)
{
	uint64_t x = (*(struct kvm_memory_slot *const *)a)->userspace_addr;
	uint64_t y = (*(struct kvm_memory_slot *const *)b)->userspace_addr;

	return x < y ? -1 : x > y;
}

/* The part of @u over [start, end), with its own file references; NULL on ENOMEM. */
static struct kvm_shram_rec *shram_slice_locked(const struct kvm_shram_rec *u, uint64_t start,
						uint64_t end)
{
	struct kvm_shram_rec *r = malloc(sizeof(*r) + 4 * sizeof(r->seg[0]));

	lockdep_assert_held(&gm_shram_lock);
	if (!r)
		return NULL;
	*r = (struct kvm_shram_rec){ .refs = 1, .cap = 4 };
	for (uint32_t i = 0; i < u->nr; i++) {
		const struct kvm_shram_seg *sg = &u->seg[i];
		uint64_t s = GM_MAX(sg->start, start), e = GM_MIN(sg->end, end);

		if (s >= e)
			continue;
		if (sg->file)
			sg->file->refs++;
		if (shram_add_seg(&r, s, e, sg->file, sg->offset + (s - sg->start), sg->err)) {
			if (sg->file)
				shfile_put_locked(sg->file);
			for (uint32_t k = 0; k < r->nr; k++)
				if (r->seg[k].file)
					shfile_put_locked(r->seg[k].file);
			free(r);
			return NULL;
		}
	}
	return r;
}

/*
 * Probe the slots of @b[first, last), whose host ranges touch or overlap
 * one another, as one range, so that anonymous memory spanning several
 * of them becomes one file rather than one per slot (thousands of slots
 * would otherwise cost thousands of fds), and give each its part.
 */
static void shram_enable_run(struct enable_batch *b, size_t first, size_t last, uint64_t end,
			     struct maps_snap *snap)
{
	struct kvm_shram_rec *u;

	gm_mutex_lock(&gm_shram_lock, GM_LOCK_SHRAM);
	u = shram_probe_locked(b->slot[first]->userspace_addr, end, snap);
	for (size_t i = first; u && i < last; i++) {
		struct kvm_memory_slot *slot = b->slot[i];
		struct kvm_shram *h = slot->shram;
		struct kvm_shram_rec *r, *old = h ? h->cur : NULL;

		if (!h || (old && !__atomic_load_n(&old->stale, __ATOMIC_ACQUIRE)))
			continue; /* no holder, or already current */
		r = shram_slice_locked(u, slot->userspace_addr, kvm_memslot_hva_end(slot));
		if (r) {
			smp_store_release(&h->cur, r);
			shram_put(old);
		}
	}
	if (u) { /* never published: no reader */
		for (uint32_t i = 0; i < u->nr; i++)
			if (u->seg[i].file)
				shfile_put_locked(u->seg[i].file);
		free(u);
	}
	gm_mutex_unlock(&gm_shram_lock);
}

/*
 * madvise(MADV_DONTNEED / MADV_FREE) on memory guestmem converted: private
 * anonymous memory would read back zeros, a shared mapping would not, so
 * punch the file's pages.  Returns whether all of [start, end) is such
 * memory.  Context: no VM lock held.
 */
bool kvm_shram_discard(uint64_t start, uint64_t end)
{
	struct pieces ps = { NULL, 0, 0 };
	bool all = true, any = false;
	char *maps = NULL;

	if (!READ_ONCE(gm_shfiles_ours) || start >= end)
		return false;
	gm_mutex_lock(&gm_shram_lock, GM_LOCK_SHRAM);
	for (struct gm_shfile *f = gm_shfiles; f; f = f->next)
		any |= f->ours && f->mapped && f->lo < end && start < f->hi;
	if (any)
		maps = gm_read_proc_file("/proc/self/maps", SIZE_MAX);
	if (!maps || parse_maps(maps, start, end, &ps))
		all = false;
	for (size_t i = 0; maps && i < ps.nr; i++) {
		struct piece *p = &ps.p[i];
		struct gm_shfile *f =
			p->kind == PIECE_SHARED_FILE ? shfile_lookup_locked(p->dev, p->ino) : NULL;

		bool fetched;
		int fd;

		if (!f || !f->ours || (fd = shfile_use(f, &fetched)) < 0) {
			all = false;
			continue;
		}
		while (gm_raw_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)p->off, (off_t)(p->end - p->start)) &&
		       errno == EINTR)
			;
		shfile_unuse(fd, fetched);
	}
	gm_mutex_unlock(&gm_shram_lock);
	free(ps.p);
	free(maps);
	return any && all;
}

/* Probe (converting) every slot not probed yet, in one batch.  Context: slots_lock. */
static void shram_probe_slots_locked(struct kvm *kvm)
{
	struct enable_batch b = { NULL, 0, 0 };
	struct maps_snap snap = { 0 };

	lockdep_assert_held(&kvm->slots_lock);
	/* slots_lock: the active sets are stable. */
	for (int as = 0; as < kvm->nr_as; as++)
		kvm_memslots_for_each(kvm->memslots[as], shram_enable_slot, &b);
	/* Not under gm_shram_lock: see shram_get(). */
	pthread_once(&gm_shram_atfork_once, shram_atfork_register);
	/* One maps read for all, and one probe per run of touching slots. */
	if (b.nr)
		qsort(b.slot, b.nr, sizeof(*b.slot), slot_hva_cmp);
	for (size_t i = 0, j; i < b.nr; i = j) {
		uint64_t end = kvm_memslot_hva_end(b.slot[i]);

		for (j = i + 1; j < b.nr && b.slot[j]->userspace_addr <= end; j++)
			end = GM_MAX(end, kvm_memslot_hva_end(b.slot[j]));
		shram_enable_run(&b, i, j, end, &snap);
	}
	snap_drop(&snap);
	free(b.slot);
}

int kvm_shared_ram_enable(struct kvm *kvm)
{
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	if (!READ_ONCE(kvm->shram_enabled)) {
		WRITE_ONCE(kvm->shram_enabled, 1);
		shram_probe_slots_locked(kvm);
	}
	gm_mutex_unlock(&kvm->slots_lock);
	return 0;
}

void kvm_shared_ram_prepare(struct kvm *kvm)
{
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	if (!READ_ONCE(kvm->shram_enabled))
		shram_probe_slots_locked(kvm);
	gm_mutex_unlock(&kvm->slots_lock);
}

/* ---- the lookup ------------------------------------------------------------ */

struct attr_run {
	gfn_t next; /* private: the end of the run so far */
	gfn_t stop; /* shared: the first private gfn */
	bool priv;
};

static int attr_run_cb(void *ctx, uint64_t start, uint64_t end, uint64_t value)
{
	struct attr_run *a = ctx;
	bool p = value & KVM_MEMORY_ATTRIBUTE_PRIVATE;

	if (a->priv) {
		if (start != a->next || !p)
			return 1;
		a->next = end;
		return 0;
	}
	if (p) {
		a->stop = start;
		return 1;
	}
	return 0;
}

/* The end of the run from @gfn (< @limit) with @gfn's private/shared attribute. */
static gfn_t attr_run_end(struct kvm *kvm, gfn_t gfn, gfn_t limit, bool priv)
{
	struct attr_run a = { gfn, limit, priv };

	if (!kvm->cfg.sw_protected_vm)
		return limit; /* no attributes: the caller's word */
	rangemap_for_each(&kvm->mem_attr_array, gfn, limit, attr_run_cb, &a);
	if (priv)
		return GM_MAX(a.next, gfn + 1);
	return GM_MAX(a.stop, gfn + 1);
}

static int gfn_to_private(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
			  gfn_t limit, struct kvm_gfn_backing *out)
{
	struct kvm_gmem *gmem = smp_load_acquire(&slot->gmem.file);
	uint64_t index, off, n;
	int max_order, fd, r;
	void *hva;

	/* Checks the binding and poison, allocates the page as a fault does. */
	r = kvm_gmem_get_pfn(kvm, slot, gfn, &hva, &max_order);
	if (r)
		return r;
	if (!gmem) /* bound when get_pfn looked: only ever goes to NULL */
		return -EFAULT;
	index = gfn - slot->base_gfn + slot->gmem.pgoff;
	r = gm_backing_file_page(&gmem->backing, index, &out->fd, &out->offset);
	if (r)
		return r == -ENOENT ? -EFAULT : r; /* punched since: retry */
	limit = attr_run_end(kvm, gfn, limit, true);
	for (n = 1; gfn + n < limit; n++) {
		if (rangemap_lookup(&gmem->poisoned, index + n) ||
		    gm_backing_file_page(&gmem->backing, index + n, &fd, &off) || fd != out->fd ||
		    off != out->offset + (n << GM_PAGE_SHIFT))
			break;
	}
	out->run_pages = n;
	out->file_id = kvm_gmem_file_id(gmem->ino);
	out->writable = true;
	out->executable = gmem->backing.kind != GM_BACKING_SECRETMEM;
	out->map_align = GM_PAGE_SIZE;
	return 0;
}

/* 6.18 MMAP-capable guest_memfd: the slot's shared memory is the file too. */
static int gfn_to_gmem_shared(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
			      gfn_t limit, struct kvm_gfn_backing *out)
{
	struct kvm_gmem *gmem = smp_load_acquire(&slot->gmem.file);
	int fd;

	if (!gmem || READ_ONCE(gmem->refs) == 0)
		return -EFAULT;
	fd = gm_backing_memfd(&gmem->backing);
	if (fd < 0)
		return -EOPNOTSUPP;
	out->fd = fd;
	out->offset = (gfn - slot->base_gfn + slot->gmem.pgoff) << GM_PAGE_SHIFT;
	out->run_pages = attr_run_end(kvm, gfn, limit, false) - gfn;
	out->file_id = kvm_gmem_file_id(gmem->ino);
	out->writable = true;
	out->executable = gmem->backing.kind != GM_BACKING_SECRETMEM;
	out->map_align = GM_PAGE_SIZE;
	return 0;
}

static int gfn_to_shared(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn, gfn_t limit,
			 struct kvm_gfn_backing *out)
{
	uint64_t hva = kvm_gfn_to_hva_memslot(slot, gfn);
	struct kvm_shram_rec *r = shram_get(slot);
	const struct kvm_shram_seg *s;
	uint32_t lo = 0, hi;

	if (!r)
		return -ENOMEM;
	hi = r->nr;
	while (lo < hi) { /* the segment containing hva: segments are sorted */
		uint32_t mid = lo + (hi - lo) / 2;

		if (r->seg[mid].end <= hva)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->nr || r->seg[lo].start > hva)
		return -EFAULT;
	s = &r->seg[lo];
	if (!s->file)
		return s->err;
	out->fd = s->file->fd;
	out->kfd = s->file->kfd;
	out->offset = s->offset + (hva - s->start);
	limit = GM_MIN(limit, gfn + ((s->end - hva) >> GM_PAGE_SHIFT));
	out->run_pages = attr_run_end(kvm, gfn, limit, false) - gfn;
	out->file_id = s->file->id;
	out->writable = s->file->writable && !(slot->flags & KVM_MEM_READONLY);
	out->executable = s->file->executable;
	out->map_align = s->file->map_align;
	return 0;
}

int kvm_gfn_to_backing_info(struct kvm *kvm, int as_id, gfn_t gfn, bool is_private,
			    uint64_t max_pages, struct kvm_gfn_backing *out)
{
	struct kvm_memory_slot *slot;
	gfn_t limit;

	if (as_id < 0 || as_id >= kvm->nr_as)
		return -EINVAL;
	slot = gfn_to_memslot(kvm, as_id, gfn);
	if (!slot || (slot->flags & KVM_MEMSLOT_INVALID))
		return -ENOENT;
	if (!max_pages)
		max_pages = GMEMFD_DEFAULT_RUN;
	limit = slot->base_gfn + slot->npages;
	if (limit - gfn > max_pages)
		limit = gfn + max_pages;
	if (is_private && !kvm_slot_can_be_private(slot))
		return -EINVAL;
	out->kfd = -1;
	if (is_private)
		return gfn_to_private(kvm, slot, gfn, limit, out);
	if (slot->flags & KVM_MEMSLOT_GMEM_ONLY)
		return gfn_to_gmem_shared(kvm, slot, gfn, limit, out);
	return gfn_to_shared(kvm, slot, gfn, limit, out);
}

static int file_in_use_cb(struct kvm_memory_slot *slot, void *ctx)
{
	uint64_t id = *(uint64_t *)ctx;
	struct kvm_gmem *gmem = smp_load_acquire(&slot->gmem.file);
	struct kvm_shram_rec *r = slot->shram ? smp_load_acquire(&slot->shram->cur) : NULL;

	if (gmem && READ_ONCE(gmem->refs) && (GMEMFD_PRIVATE_ID | gmem->ino) == id)
		return 1;
	for (uint32_t i = 0; r && i < r->nr; i++)
		if (r->seg[i].file && r->seg[i].file->id == id)
			return 1;
	return 0;
}

bool kvm_backing_file_in_use(struct kvm *kvm, uint64_t file_id)
{
	for (int as = 0; as < kvm->nr_as; as++)
		if (kvm_memslots_for_each(kvm_memslots(kvm, as), file_in_use_cb, &file_id))
			return true;
	return false;
}

int kvm_gfn_to_backing(struct kvm *kvm, gfn_t gfn, bool is_private, int *fd,
		       uint64_t *offset, uint64_t *run_pages)
{
	struct kvm_gfn_backing b;
	int r = kvm_gfn_to_backing_info(kvm, 0, gfn, is_private, 0, &b);

	if (!r) {
		*fd = b.fd;
		*offset = b.offset;
		*run_pages = b.run_pages;
	}
	return r;
}
