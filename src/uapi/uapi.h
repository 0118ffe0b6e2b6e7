/* SPDX-License-Identifier: MIT */
/*
 * The drop-in /dev/kvm: guestmem objects as real file descriptors.
 *
 * Every object the application can hold as an fd (the /dev/kvm handle, a VM,
 * a guest_memfd, a vCPU) is a struct gm_file.  Its fd is one end of an
 * AF_UNIX connection; the library keeps the other end (the "peer") in a
 * descriptor table of its own (keeper.c).  The
 * kernel therefore counts the application's references for us: dup, dup2,
 * fcntl(F_DUPFD), fork and SCM_RIGHTS need no interception, and when the last
 * reference goes away the peer sees a hang-up.  The keeper's watch thread
 * (and, for a close() that goes through guestmem_sys_close, the closing
 * thread itself)
 * then releases the object, like the kernel's ->release on the final fput.
 *
 * Identifying an fd costs one fstat: a socket on sockfs whose inode number
 * is in the registry is ours.  The application's end is also bound to an
 * abstract name, by which a process that did not create the object finds
 * it and reaches its creator (src/uapi/remote.c).
 *
 * Locks: docs/locking.md lists every lock, what it protects and the order.
 */
#ifndef GM_UAPI_UAPI_H
#define GM_UAPI_UAPI_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/kvm_host.h"
#include "lib/usercopy.h" /* gm_copy_from_user/to_user, for every ioctl */

enum gm_file_type {
	GM_FILE_SYSTEM = 0, /* open("/dev/kvm") */
	GM_FILE_VM,	    /* KVM_CREATE_VM */
	GM_FILE_GMEM,	    /* KVM_CREATE_GUEST_MEMFD */
	GM_FILE_VCPU,	    /* KVM_CREATE_VCPU (src/uapi/vcpu_*) */
	GM_FILE_STATS,	    /* KVM_GET_STATS_FD (src/uapi/stats.c) */
	GM_FILE_NR_TYPES,
};

/* The kernel's O_LARGEFILE; glibc defines it as 0 on 64-bit targets. */
#define GM_O_LARGEFILE 0100000

/* VFS properties of a file type (what the kernel's f_mode/i_mode give). */
#define GM_FOPS_NOOP_LLSEEK (1U << 0) /* .llseek = noop_llseek: lseek returns 0 */
#define GM_FOPS_PREAD (1U << 1)	      /* opened through open(2): FMODE_PREAD */
#define GM_FOPS_REG (1U << 2)	      /* S_IFREG inode (guest_memfd) */
#define GM_FOPS_ANON_SETATTR (1U << 3) /* shared anon inode: owner-checked setattr */

struct gm_file;
struct msghdr;

/*
 * A file type's methods.  Every method is optional; a missing one gives
 * what the VFS gives for a missing method (read/write EINVAL, mmap ENODEV,
 * fallocate ENODEV or EOPNOTSUPP, ioctl ENOTTY).  Methods return a value
 * >= 0 or a negative errno and are called with a reference on the file.
 */
struct gm_file_ops {
	unsigned int fops; /* GM_FOPS_* */
	long (*ioctl)(struct gm_file *f, unsigned int cmd, unsigned long arg);
	/* read at *@pos (read(2): the file position; pread: a copy). */
	ssize_t (*read)(struct gm_file *f, void *buf, size_t n, off_t *pos);
	/* After the generic mmap checks; returns 0 and the mapping in *out. */
	int (*mmap)(struct gm_file *f, void *addr, size_t len, int prot, int flags,
		    off_t off, void **out);
	/* Whether this file has the method after all (a guest_memfd's depends
	 * on its flags); NULL: it has if @mmap is set. */
	bool (*has_mmap)(struct gm_file *f);
	/* Called with no checks done: the method runs the VFS's checks for
	 * the VM's profile too (guest_memfd: kvm_gmem_fallocate). */
	int (*fallocate)(struct gm_file *f, int mode, off_t off, off_t len);
	void (*fill_stat)(struct gm_file *f, struct stat *st);
	/* Drop the file's reference on its object.  Context: no uapi locks. */
	void (*release)(struct gm_file *f);
};

struct gm_file {
	enum gm_file_type type;
	const struct gm_file_ops *ops;
	void *obj;	 /* the object; the file owns one reference on it */
	struct kvm *kvm; /* the VM this file pins (VM, gmem, vCPU) or NULL */
	void *priv;	 /* free for the type's own use */

	int peer;	/* library end: O_CLOEXEC, never given out */
	int app_fd;	/* application end between create and install */
	ino_t ino;	/* application end's inode: the registry key */
	int f_flags;	/* F_GETFL without the F_SETFL-able bits */
	char name[40];	/* readlink("/proc/self/fd/N") */
	struct timespec btime; /* creation: atime/mtime/ctime of anon files */
	pthread_mutex_t pos_lock; /* f_pos for read(2) (only ops->read uses it) */
	off_t pos;

	long refs;	  /* 1 for the registry + 1 per operation in flight */
	int hung;	  /* 0 -> 1 once, by whoever saw the last close */
	bool remote;	  /* another process's object, for one call (remote.c) */
	struct gm_file *next; /* hash chain, under gm_files_lock */
};

/* ---- file objects (src/uapi/file.c) ---------------------------------- */

/*
 * Make a file that is not yet visible: the socketpair is created here, so
 * a full fd table fails now with -EMFILE/-ENFILE (the kernel also reserves
 * the fd before building the object).  @cloexec applies to the
 * application's end; @size is a guest_memfd's (named with it, so that a
 * holder elsewhere knows it when the creator is gone), else 0.  Fill
 * obj/kvm/priv, then gm_file_install().
 */
int gm_file_create(enum gm_file_type type, const struct gm_file_ops *ops, const char *name,
		   int f_flags, bool cloexec, uint64_t size, struct gm_file **out);
/* Publish @f; returns the application's fd.  The registry owns @f now. */
int gm_file_install(struct gm_file *f);
/* Undo gm_file_create() (no release method is called). */
void gm_file_abort(struct gm_file *f);

/*
 * The guestmem file behind @fd with a reference, or NULL if @fd is not a
 * guestmem fd (including not open).  Cost: one fstat when any guestmem
 * object exists, nothing otherwise.  Only this process's own objects.
 * Context: any.
 */
struct gm_file *gm_file_lookup(int fd);
/*
 * The same, and also another process's object (remote.c) once this
 * process has been seen holding one (inherited by fork, or found by
 * gm_file_lookup_foreign()); the caller answers for the file as usual.
 */
struct gm_file *gm_file_lookup_any(int fd);
/*
 * The same, looking for another process's object in any case: for the
 * calls whose answer matters across processes (KVM ioctls, fallocate,
 * stat, readlink), at one getsockname() for a socket that is not ours.
 */
struct gm_file *gm_file_lookup_foreign(int fd);
/*
 * Whether @fd is an object's end, as gm_file_lookup_any() (@by_name:
 * gm_file_lookup_foreign()) would find it, but with no reference and no
 * allocation: the seccomp listener's question (a put could release the
 * object, an allocation take a lock of libc's, on the listener's thread).
 */
bool gm_file_is_object_fd(int fd, bool by_name);
/*
 * (A constructor of file.c: if the image starts with another process's
 * object among its fds, inherited across exec, gm_file_lookup_any() looks
 * for such objects from the first call on.)
 */
void gm_file_get(struct gm_file *f);
/* Drop a reference; the last one runs ops->release and frees @f. */
void gm_file_put(struct gm_file *f);

/*
 * If the application closed its last reference to @f, unregister @f and
 * drop the registry's reference.  Idempotent; safe to race with itself.
 */
void gm_file_check_hangup(struct gm_file *f);
/* The same from a thread that just closed an fd of @f (it holds a reference). */
void gm_file_check_hangup_closing(struct gm_file *f);

/* Files of @type not yet released (tests: the object was really let go). */
long gm_uapi_live_objects(int type);

/* The anon_inodefs device and the shared anon inode (fstat of VM fds). */
void gm_anon_inode_stat(struct stat *st);

/*
 * Set once by the preload's constructor: the process is a VMM under
 * `guestmem exec`, whose vCPUs run its machine code unless GUESTMEM_GUEST
 * names a C guest.
 */
extern int gm_uapi_drop_in;

/*
 * Called before this process first holds an object through the library:
 * by gm_file_create() before every new object, and when a received
 * message carries another process's object (gm_uapi_note_received()).
 * The preload's seccomp layer starts a fork child's listener there (set
 * once, before any thread).  The first object a process creates is
 * /dev/kvm's or a VM's, under no lock of the library; a vCPU, guest_memfd
 * or stats file needs a VM of its own, so the hook has nothing left to
 * do by then.
 */
extern void (*gm_uapi_objects_hook)(void);

/*
 * Whether this process holds or held objects: its own, inherited across
 * fork, or received.  Lock-free, for a fork handler (the registry's lock
 * may be held by the fork).
 */
bool gm_uapi_holds_objects(void);

/* Per-thread guard: set while the library itself runs (hva hooks skip). */
extern __thread int gm_uapi_in_library __attribute__((tls_model("initial-exec")));
/*
 * Entering the library on this thread (sets the guard; returns its old
 * value for gm_uapi_leave()) and leaving it: the outermost entry also
 * records the thread for gm_uapi_tid_in_library(), which the seccomp
 * listener asks about a caller (file.c).
 */
int gm_uapi_enter(void);
void gm_uapi_leave(int saved);
bool gm_uapi_tid_in_library(int tid);

/* ---- other processes' objects (src/uapi/remote.c) --------------------- */

/* Name the application end of a new file, so other processes can find it. */
void gm_remote_bind(int app_fd, enum gm_file_type type, ino_t ino, uint64_t size);
/* Whether @fd is a guestmem object's end (by its name; no request sent). */
bool gm_remote_is_object(int fd);
/*
 * After a recvmsg(2) that returned @msg: if it carried descriptors
 * (SCM_RIGHTS) and one is an object, this process holds another's objects
 * from now on, so its file calls on them are the objects' from the first
 * one (a read before any KVM call included).
 */
void gm_uapi_note_received(const struct msghdr *msg);
/* The file behind @fd if it is another process's object (refs = 1), or NULL. */
struct gm_file *gm_remote_lookup(int fd);
/* Free a file gm_remote_lookup() made (its last gm_file_put()). */
void gm_remote_free(struct gm_file *f);
/* In the owner: answer every request waiting on @f's peer (servant thread). */
void gm_remote_serve(struct gm_file *f);

/* ---- the keeper of the library ends (src/uapi/keeper.c) --------------- */

/*
 * Connect the new application end @app_fd (bound, inode @ino) to the
 * keeper and return its peer: a number in the keeper's descriptor table,
 * watched for requests and the last close; or -errno (-EAGAIN: other
 * processes keep the listener's backlog full; -ECONNREFUSED or -ENOENT:
 * the caller is in another network namespace; for both, hand over).
 */
int gm_keeper_connect(int app_fd, ino_t ino);
/*
 * The same for a socketpair's library end @peer_fd (the caller still
 * closes its copy): for a thread in another network namespace than the
 * keeper's listener.  The keeper takes a copy with pidfd_getfd().
 */
int gm_keeper_adopt(int peer_fd, ino_t ino);
/*
 * Whether the application's last reference to @peer's object is gone.
 * The peer stays open until the release (gm_keeper_drop_peer()), so a
 * thread that sees the keeper's table shrink also sees the object gone.
 */
bool gm_keeper_peer_hung_up(int peer);
/* Close @peer (and so stop watching it); -1: nothing. */
void gm_keeper_drop_peer(int peer);
/*
 * One record waiting on @peer, without blocking: its length (0: none or
 * the end) or -errno; *@reply the descriptor that came with it (a keeper
 * number) or -1.
 */
long gm_keeper_recv_request(int peer, void *buf, size_t len, int *reply);
/* Send @buf (NULL: nothing) on the keeper's @reply and close it. */
void gm_keeper_reply(int reply, const void *buf, size_t len);
/* The same with the descriptor @fd attached, a number of the keeper's
 * table (-1: none); the caller closes it after. */
void gm_keeper_reply_fd(int reply, const void *buf, size_t len, int fd);
/* In a fork child: the keeper and its descriptors stayed in the parent. */
void gm_keeper_forget(void);
/* An event on the peer of @ino (keeper.c -> file.c, on the servant thread). */
void gm_file_event(ino_t ino, uint32_t events);
/* Whether @ino's file is still in the registry (any thread, no fds). */
bool gm_file_registered(ino_t ino);

/* ---- ioctl dispatch (dev_ioctl.c, vm_ioctl.c, gmem_fops.c) ------------ */

extern const struct gm_file_ops gm_dev_fops;
extern const struct gm_file_ops gm_vm_fops;
extern const struct gm_file_ops gm_gmem_fops;
/* A guest_memfd's mapping once the method is known to be there: EINVAL but
 * MAP_SHARED, else a shared mapping of @fd, or of an empty memfd when @fd < 0
 * (private memory: every touch SIGBUS); 0 and *@out, or -errno (gmem_fops.c). */
int gm_gmem_map(int fd, void *addr, size_t len, int prot, int flags, off_t off, void **out);
/*
 * What another process maps for guest_memfd @f (remote.c's GM_REMOTE_MAP,
 * for guest_memfds only):
 * -ENODEV without GUEST_MEMFD_FLAG_MMAP, else 0 with *@kept the file
 * (a kept copy, lib/keepfd.h, for the keeper to send; the caller drops
 * it) or -1 for private memory.
 */
int gm_gmem_map_source(struct gm_file *f, int *kept);
/* Whether guest_memfd @f was made with GUEST_MEMFD_FLAG_MMAP (has an mmap method). */
bool gm_gmem_has_mmap(struct gm_file *f);

/*
 * KVM_GET_STATS_FD of a VM (@vcpu NULL) or a vCPU: a new read-only fd
 * holding a VM reference, or a negative errno (src/uapi/stats.c).
 */
struct kvm_vcpu;
long gm_get_stats_fd(struct kvm *kvm, struct kvm_vcpu *vcpu);

/* open("/dev/kvm", @flags): a new system fd or a negative errno. */
int gm_dev_open(int flags);
/* stat("/dev/kvm"): the host's node if it has one, else a devtmpfs-like one. */
void gm_dev_stat(struct stat *st);

/* EIO unless the caller is the VM's creator process and the VM is alive
 * (spec §3.2): the first check of every VM and vCPU ioctl. */
static inline int gm_kvm_check_caller(struct kvm *kvm)
{
	return kvm_vm_ioctl_precheck(kvm);
}

/*
 * VM-fd and /dev/kvm ioctls provided by src/uapi/vcpu_ioctl.c
 * (KVM_CREATE_VCPU, irqchip, ioeventfd, ...; KVM_GET_SUPPORTED_CPUID, ...).
 * Called for every command the uapi core does not handle itself, after the
 * EIO check; set *handled = false to let the caller answer ENOTTY (VM) or
 * EINVAL (/dev/kvm).
 */
long gm_vm_ioctl_vcpu(struct gm_file *f, struct kvm *kvm, unsigned long cmd,
		      unsigned long arg, bool *handled);
long gm_dev_ioctl_vcpu(struct gm_file *f, unsigned long cmd, unsigned long arg,
		       bool *handled);
/*
 * x86 ioctls of src/uapi/x86_ioctl.c (issue 9), same contract: the vCPU
 * one with vcpu->mutex held, after the vCPU file's own commands.
 */
struct kvm_vcpu;
long gm_vcpu_ioctl_x86(struct kvm_vcpu *v, unsigned int cmd, unsigned long arg, bool *handled);
long gm_vm_ioctl_x86(struct kvm *kvm, unsigned int cmd, unsigned long arg, bool *handled);
long gm_dev_ioctl_x86(unsigned int cmd, unsigned long arg, bool *handled);
/*
 * msr_io() of KVM_GET/SET_MSRS on a vCPU and on /dev/kvm: the header
 * (EFAULT), E2BIG at 256 entries, the entries in, @do_msrs over them (it
 * returns how many it processed), the entries back out if @writeback.
 */
struct kvm_msrs;
struct kvm_msr_entry;
typedef int (*gm_do_msrs_fn)(void *ctx, struct kvm_msr_entry *e, uint32_t n);
long gm_msr_io(struct kvm_msrs *u, gm_do_msrs_fn do_msrs, void *ctx, bool writeback);
/*
 * VM-fd ioctls of src/uapi/vm_ioctl_irq.c (KVM_IOEVENTFD, KVM_IRQFD,
 * KVM_CREATE_IRQCHIP, KVM_IRQ_LINE(_STATUS), KVM_SET_GSI_ROUTING,
 * KVM_SIGNAL_MSI, KVM_CREATE_PIT(2)), tried before gm_vm_ioctl_vcpu();
 * same contract.
 */
long gm_vm_ioctl_irq(struct kvm *kvm, unsigned int cmd, unsigned long arg, bool *handled);

/* ---- file operations (src/uapi/fops.c): value >= 0 or -errno --------- */

long gm_fop_ioctl(struct gm_file *f, unsigned int cmd, unsigned long arg);
ssize_t gm_fop_read(struct gm_file *f, void *buf, size_t n);
ssize_t gm_fop_write(struct gm_file *f, const void *buf, size_t n);
ssize_t gm_fop_readv(struct gm_file *f, const void *iov, int cnt, bool write);
ssize_t gm_fop_pread(struct gm_file *f, void *buf, size_t n, off_t off, bool write);
off_t gm_fop_lseek(struct gm_file *f, off_t off, int whence);
int gm_fop_mmap(struct gm_file *f, void *addr, size_t len, int prot, int flags, off_t off,
		void **out);
int gm_fop_fallocate(struct gm_file *f, int mode, off_t off, off_t len);
int gm_fop_ftruncate(struct gm_file *f, off_t len);
int gm_fop_fsync(struct gm_file *f);
int gm_fop_fchmod(struct gm_file *f, mode_t mode);
int gm_fop_fchown(struct gm_file *f, uid_t uid, gid_t gid);
void gm_fop_stat(struct gm_file *f, struct stat *st);
/* fcntl: *handled = false means "do the real fcntl on the socket". */
int gm_fop_fcntl(struct gm_file *f, int fd, int cmd, unsigned long arg, bool *handled);

/* ---- paths (src/uapi/paths.c) ---------------------------------------- */

/* Whether absolute @path names /dev/kvm. */
bool gm_path_is_dev_kvm(const char *path);
/* The times guestmem's stand-in files show (/dev/kvm, module parameters):
 * the first moment one was asked for, fixed after, like a boot time. */
time_t gm_synthetic_file_time(void);

/*
 * KVM's module parameters, /sys/module/{kvm,kvm_intel,kvm_amd}/parameters/NAME
 * (src/uapi/modparams.c): whether absolute @path is one guestmem answers,
 * and open (an fd or -errno), stat and access (0 or -errno) of it.
 */
bool gm_path_is_modparam(const char *path);
int gm_modparam_open(const char *path, int flags);
int gm_modparam_stat(const char *path, struct stat *st);
int gm_modparam_access(const char *path, int mode);
/*
 * The guestmem file an absolute /proc/<self>/fd/N path names, with a
 * reference, or NULL.  Context: any.
 */
struct gm_file *gm_proc_fd_lookup(const char *path);
bool gm_proc_fd_is_own(const char *path);
/* readlink of such a path; >= 0 bytes or -errno. */
ssize_t gm_fop_readlink(struct gm_file *f, char *buf, size_t size);

/* ---- host-mapping invalidation (src/uapi/hva.c) ---------------------- */

/*
 * Remember that [start, end) backs a memslot (grow-only), so that the
 * munmap/mremap/madvise/mprotect hooks skip ranges no VM ever used.
 */
void gm_uapi_hva_note(uint64_t start, uint64_t end);
/*
 * Whether [start, end) ever backed a memslot: the one check the hooks
 * below start with (a leaf lock, nothing else).  Context: any.
 */
bool gm_uapi_hva_noted(uint64_t start, uint64_t end);
/* The same without waiting for its lock: true when it is taken (the
 * seccomp listener's question; hva.c). */
bool gm_uapi_hva_maybe_noted(uint64_t start, uint64_t end);
/*
 * The VMM is about to change [start, end) of its address space: the mmu
 * notifier's range_start for every VM; pass the token to gm_uapi_hva_end()
 * after the change.  NULL (and nothing to end) when the range never backed
 * a memslot, which is the cheap common case.  Context: no VM locks.
 */
struct kvm_mn_token *gm_uapi_hva_start(uint64_t start, uint64_t end);
/* The same for a change that keeps the mappings (madvise, mprotect). */
struct kvm_mn_token *gm_uapi_hva_start_clear(uint64_t start, uint64_t end);
void gm_uapi_hva_end(struct kvm_mn_token *token);
/* Both at once: the change already happened or is atomic to the guest. */
void gm_uapi_hva_invalidate(uint64_t start, uint64_t end);

#endif
