// SPDX-License-Identifier: MIT
/* open_kvm: open("/dev/kvm") twice through plain libc; print each errno. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	for (int i = 0; i < 2; i++) {
		int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

		printf("open: %s\n", fd >= 0 ? "ok" : strerrorname_np(errno));
	}
	return 0;
}
