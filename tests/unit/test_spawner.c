// SPDX-License-Identifier: MIT
/*
 * test_spawner - the guest-process spawner (src/gproc/spawner.h), through
 * the gp_* API as the library uses it under `guestmem exec`: a guest
 * process is the spawner's child, not ours; it lives until we let go of
 * it (destroy, or exit); with a user it runs as that user and we can no
 * longer signal, renice or limit it; the spawner ends when its door has no
 * holder left; a named door that is not there fails closed when --user
 * asked for it and falls back to our own child otherwise.
 *
 * Each case runs in a process of its own (the harness forks), so each
 * reads GUESTMEM_GPROCD afresh.
 */
#include "harness.h"
#include "gproc/gproc.h"
#include "gproc/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* /proc/@pid/comm without its newline, into @out. */
static void comm(pid_t pid, char *out, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	out[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, out, len - 1);
	close(fd);
	if (n <= 0)
		return;
	out[n] = '\0';
	if (out[n - 1] == '\n')
		out[n - 1] = '\0';
}

static bool proc_gone(pid_t pid)
{
	char path[64], state;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	state = test_stat_state(path);
	return !state || state == 'Z' || state == 'X';
}

/* Start a spawner for this process (as `guestmem exec` does); its door. */
static int start(const struct gp_creds *cr, bool strict)
{
	char env[64];
	int door = gp_spawner_start(cr, strict, env, sizeof(env));

	ASSERT_TRUE(door >= 0);
	ASSERT_EQ(setenv(GP_SPAWNER_ENV, env, 1), 0);
	return door;
}

TEST(child_of_the_spawner)
{
	char name[32], want[32];
	struct gp_vm *vm;
	uint32_t id;
	pid_t pid, spawner;
	int door = start(NULL, false);

	ASSERT_EQ(gp_vm_create(&vm), 0);
	pid = gp_vm_pid(vm);
	ASSERT_TRUE(pid > 0);
	spawner = (pid_t)test_proc_status(pid, "PPid");
	EXPECT_TRUE(spawner > 0 && spawner != getpid());
	comm(spawner, name, sizeof(name));
	EXPECT_STR_EQ(name, "guestmemd");
	/* Named after us: how people and tests find it. */
	comm(pid, name, sizeof(name));
	snprintf(want, sizeof(want), "gproc:%d", (int)getpid());
	EXPECT_STR_EQ(name, want);
	/* Neither ours to reap nor in our session. */
	EXPECT_ERRNO(waitpid(-1, NULL, WNOHANG | __WALL), ECHILD);
	EXPECT_NE(getsid(pid), getsid(0));
	/* It serves: a backing made there. */
	EXPECT_EQ(gp_vm_create_backing(vm, 0, 1 << 20, &id), 0);
	gp_vm_destroy(vm);
	/* Reaped by the spawner once we let go. */
	ASSERT_WAIT(kill(pid, 0) && errno == ESRCH, 5000);
	/* Nobody holds the door and no child is left: it ends. */
	close(door);
	ASSERT_WAIT(proc_gone(spawner), 5000);
}

/*
 * With a user, the guest process is that user's: a VMM of another user
 * cannot signal it, renice it, read its limits or change them, and the VM
 * still works.  Root only (CAP_SETUID), as `guestmem exec --user`.
 */
/* Many threads asking at once: each gets its own process, and all go. */
#define ASKERS 6
#define ROUNDS 4

static void *ask_rounds(void *arg)
{
	pid_t *pids = arg;

	for (int i = 0; i < ROUNDS; i++) {
		struct gp_vm *vm;
		uint32_t id;

		if (gp_vm_create(&vm))
			return (void *)1;
		pids[i] = gp_vm_pid(vm);
		if (gp_vm_create_backing(vm, 0, 1 << 20, &id)) {
			gp_vm_destroy(vm);
			return (void *)2;
		}
		gp_vm_destroy(vm);
	}
	return NULL;
}

TEST(concurrent_requests)
{
	pthread_t t[ASKERS];
	pid_t pids[ASKERS][ROUNDS];
	int door = start(NULL, false);

	memset(pids, 0, sizeof(pids));
	for (int i = 0; i < ASKERS; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, ask_rounds, pids[i]), 0);
	for (int i = 0; i < ASKERS; i++) {
		void *r;

		ASSERT_EQ(pthread_join(t[i], &r), 0);
		EXPECT_EQ((long)r, 0);
	}
	/* Every one was started and is reaped. */
	for (int i = 0; i < ASKERS; i++)
		for (int j = 0; j < ROUNDS; j++) {
			EXPECT_TRUE(pids[i][j] > 0);
			ASSERT_WAIT(kill(pids[i][j], 0) && errno == ESRCH, 5000);
		}
	close(door);
}

/*
 * @body run by a VMM of an ordinary user (uid 65534) in a child of ours:
 * its exit status, a bit per check that failed (100, 101: set-up).
 */
static int as_user_vmm(int (*body)(struct gp_vm *vm, pid_t pid))
{
	int status, bad;
	pid_t child = fork();

	ASSERT_TRUE(child >= 0);
	if (child == 0) {
		struct gp_vm *vm;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(100);
		if (gp_vm_create(&vm))
			_exit(101);
		bad = body(vm, gp_vm_pid(vm));
		gp_vm_destroy(vm);
		_exit(bad);
	}
	ASSERT_EQ(waitpid(child, &status, 0), child);
	ASSERT_TRUE(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Bits: uid, gid, kill, setpriority, prlimit, a request. */
static int out_of_reach(struct gp_vm *vm, pid_t pid)
{
	struct rlimit rl;
	uint32_t id;
	int bad = 0;

	bad |= (test_proc_status(pid, "Uid") != 65533) << 0;
	bad |= (test_proc_status(pid, "Gid") != 65533) << 1;
	bad |= !(kill(pid, SIGKILL) == -1 && errno == EPERM) << 2;
	bad |= !(setpriority(PRIO_PROCESS, (id_t)pid, 19) == -1 && errno == EPERM) << 3;
	bad |= !(prlimit(pid, RLIMIT_NOFILE, NULL, &rl) == -1 && errno == EPERM) << 4;
	bad |= (gp_vm_create_backing(vm, 0, 1 << 20, &id) != 0) << 5;
	return bad;
}

/*
 * With a user, the guest process is that user's: a VMM of another user
 * cannot signal it, renice it, read its limits or change them, and the VM
 * still works.  Root only (CAP_SETUID), as `guestmem exec --user`.
 */
/* Whether a child of ours can become @uid here (a user namespace may map
 * only some ids). */
static bool can_become(uid_t uid)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(gp_become(&(struct gp_creds){ true, uid, uid }) != 0);
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       WEXITSTATUS(status) == 0;
}

TEST(another_user_out_of_reach)
{
	const struct gp_creds cr = { true, 65533, 65533 };

	if (geteuid() != 0)
		SKIP("needs root (CAP_SETUID, CAP_SETGID), as guestmem exec --user");
	if (!can_become(65533) || !can_become(65534))
		SKIP("uid 65533 or 65534 cannot be taken here");
	start(&cr, true);
	ASSERT_EQ(as_user_vmm(out_of_reach), 0);
}

/* Bits: uid, gid, parent, signal. */
static int as_asked(struct gp_vm *vm, pid_t pid)
{
	int bad = 0;

	(void)vm;
	bad |= (test_proc_status(pid, "Uid") != 65534) << 0;
	bad |= (test_proc_status(pid, "Gid") != 65534) << 1;
	bad |= (test_proc_status(pid, "PPid") == getpid()) << 2;
	/* Ours to signal, as a child of ours would be. */
	bad |= (kill(pid, 0) != 0) << 3;
	return bad;
}

/*
 * Without a user, the guest process runs as whoever asked (the kernel's
 * word, not the request's): a VMM that dropped root after `guestmem exec`
 * does not get a root guest process from the spawner, which is root.
 */
TEST(asking_user_by_default)
{
	if (geteuid() != 0)
		SKIP("needs root, to be a VMM that drops it");
	if (!can_become(65534))
		SKIP("uid 65534 cannot be taken here");
	start(NULL, false);
	ASSERT_EQ(as_user_vmm(as_asked), 0);
}

/* The spawner's pid: the parent of a guest process it started. */
static pid_t spawner_pid(void)
{
	struct gp_vm *vm;
	pid_t p;

	ASSERT_EQ(gp_vm_create(&vm), 0);
	p = (pid_t)test_proc_status(gp_vm_pid(vm), "PPid");
	gp_vm_destroy(vm);
	ASSERT_TRUE(p > 0 && p != getpid());
	return p;
}

/*
 * The spawner killed (without --user it is the VMM's user's, who can):
 * an error, never a hang; the next guest process is started here, unless
 * --user asked for the spawner's user.
 */
/* Start a spawner (@strict: as with --user) and kill it, as its user can. */
static void start_and_kill(bool strict)
{
	pid_t sp;

	start(NULL, strict);
	sp = spawner_pid();
	ASSERT_EQ(kill(sp, SIGKILL), 0);
	ASSERT_WAIT(proc_gone(sp), 5000);
}

TEST(spawner_killed_lenient_spawns_here)
{
	struct gp_vm *vm;

	start_and_kill(false);
	ASSERT_EQ(gp_vm_create(&vm), 0);
	EXPECT_EQ(test_proc_status(gp_vm_pid(vm), "PPid"), getpid());
	gp_vm_destroy(vm);
}

TEST(spawner_killed_strict_fails)
{
	struct gp_vm *vm;

	start_and_kill(true);
	ASSERT_EQ(gp_vm_create(&vm), -EIO);
}

/* A named door that is not there: fail closed when a user was asked for. */
TEST(missing_door_strict_fails)
{
	struct gp_vm *vm;

	ASSERT_EQ(setenv(GP_SPAWNER_ENV, "1000:12345:1", 1), 0);
	ASSERT_EQ(gp_vm_create(&vm), -EIO);
}

/* ... and falls back to our own child otherwise (a reused number is not it). */
TEST(missing_door_lenient_spawns_here)
{
	struct gp_vm *vm;
	char env[64];
	int fd = open("/dev/null", O_RDONLY);

	ASSERT_TRUE(fd >= 0);
	/* A real descriptor, but not a socket with that inode. */
	snprintf(env, sizeof(env), "%d:1:0", fd);
	ASSERT_EQ(setenv(GP_SPAWNER_ENV, env, 1), 0);
	ASSERT_EQ(gp_vm_create(&vm), 0);
	EXPECT_EQ(test_proc_status(gp_vm_pid(vm), "PPid"), getpid());
	gp_vm_destroy(vm);
	close(fd);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
