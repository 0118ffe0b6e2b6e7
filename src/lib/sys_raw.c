// SPDX-License-Identifier: MIT
/* The raw system calls' gate (sys_raw.h): 0 unless the preload sets one. */

#include "sys_raw.h"

#if defined(__x86_64__)
unsigned long gm_raw_gate;
#endif
