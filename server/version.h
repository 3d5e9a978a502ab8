/* version.h - the peftd release number, reported by `peftd --version`, GET /info and the
 * peftd_build_info metric. */
#ifndef PD_VERSION_H
#define PD_VERSION_H

#define PD_VERSION "0.1.0"

#endif
