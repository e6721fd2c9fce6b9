/* SPDX-License-Identifier: MIT */
/* librstmem internals shared by its source files. Not installed. */
#ifndef RSTMEM_PRIVATE_H
#define RSTMEM_PRIVATE_H

#include "rstmem/rstmem.h"

/* Only what rstmem.h declares leaves the library (with -fvisibility=hidden
 * and librstmem.map, which must list the same names). */
#define RSTMEM_EXPORT __attribute__((visibility("default")))

/* One line on stderr when RSTMEM_DEBUG is set (non-empty, not "0"); else
 * nothing. Keeps errno. */
void rstmem_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* RSTMEM_PRIVATE_H */
