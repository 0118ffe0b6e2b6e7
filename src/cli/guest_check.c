// SPDX-License-Identifier: MIT
/*
 * GUESTMEM_GUEST, checked by `guestmem exec` before the VMM starts: the
 * drop-in dlopen()s it at the first KVM_RUN, which is far too late to learn
 * that the name was searched in the library path (no '/'), or that the file
 * is not a shared object for this machine with a guestmem_guest_main.
 * We read the ELF headers instead of dlopen()ing: no constructor of the
 * guest runs in this process, and the guest's references to the guest API
 * (resolved by the preload at run time) are not an error here.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define GM_GUEST_ENTRY "guestmem_guest_main"

static bool read_at(int fd, void *buf, size_t len, uint64_t off)
{
	return pread(fd, buf, len, (off_t)off) == (ssize_t)len;
}

/* The e_machine of this program: a guest must be built for the same. */
static int self_machine(void)
{
	Elf64_Ehdr eh;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && read_at(fd, &eh, sizeof(eh), 0);

	if (fd >= 0)
		close(fd);
	return ok ? eh.e_machine : -1;
}

/* Whether the dynamic symbol table defines GM_GUEST_ENTRY as a function. */
static bool has_entry(int fd, const Elf64_Ehdr *eh)
{
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		Elf64_Shdr sh, str;
		uint64_t n;

		if (!read_at(fd, &sh, sizeof(sh), eh->e_shoff + (uint64_t)i * eh->e_shentsize))
			return false;
		if (sh.sh_type != SHT_DYNSYM || sh.sh_entsize != sizeof(Elf64_Sym) ||
		    sh.sh_link >= eh->e_shnum ||
		    !read_at(fd, &str, sizeof(str),
			     eh->e_shoff + (uint64_t)sh.sh_link * eh->e_shentsize))
			continue;
		n = sh.sh_size / sizeof(Elf64_Sym);
		for (uint64_t k = 0; k < n; k++) {
			char name[sizeof(GM_GUEST_ENTRY)];
			Elf64_Sym sym;

			if (!read_at(fd, &sym, sizeof(sym), sh.sh_offset + k * sizeof(sym)))
				return false;
			if (sym.st_shndx == SHN_UNDEF || ELF64_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_name >= str.sh_size ||
			    pread(fd, name, sizeof(name), (off_t)(str.sh_offset + sym.st_name)) <= 0)
				continue;
			if (!strncmp(name, GM_GUEST_ENTRY, sizeof(name)))
				return true;
		}
	}
	return false;
}

static int elf_check(int fd, char *why, size_t len)
{
	Elf64_Ehdr eh;

	if (!read_at(fd, &eh, sizeof(eh), 0) || memcmp(eh.e_ident, ELFMAG, SELFMAG)) {
		snprintf(why, len, "not an ELF file; build the guest with cc -shared -fPIC");
		return -ENOEXEC;
	}
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
	    eh.e_machine != self_machine()) {
		snprintf(why, len, "built for another machine or word size");
		return -ENOEXEC;
	}
	if (eh.e_type != ET_DYN) {
		snprintf(why, len, "not a shared object (ELF type %u); build it with "
				   "cc -shared -fPIC", eh.e_type);
		return -ENOEXEC;
	}
	if (!has_entry(fd, &eh)) {
		snprintf(why, len, "defines no function %s (see <guestmem/guest.h>)",
			 GM_GUEST_ENTRY);
		return -ENOEXEC;
	}
	return 0;
}

int gm_cli_check_guest(const char *path, char *why, size_t len)
{
	struct stat st;
	int fd, r;

	if (!path || !*path)
		return 0; /* no vCPU may ever run; KVM_RUN says so if one does */
	if (!strchr(path, '/')) {
		snprintf(why, len, "a name without '/' is searched for in the library path, "
				   "not here; write ./%s", path);
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, len, "%s", strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(why, len, "not a regular file");
		r = -EINVAL;
	} else {
		r = elf_check(fd, why, len);
	}
	close(fd);
	return r;
}
