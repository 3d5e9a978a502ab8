/* fs.h - file-system helpers for state that must survive a crash: whole writes followed by
 * fsync, atomic replacement of a file, fsync of a path (a directory, so that a rename or a new
 * entry in it is durable), mkdir -p and removing a tree. The model generator, adapter saving,
 * the registry and the training job store all write through these.
 *
 * Failures return PD_ERR_IO with the path and the errno text in err (PD_ERR_INVALID for a
 * path that does not fit PD_FS_PATH_MAX). Thread-safety: no shared state; concurrent writers
 * must use distinct paths. */
#ifndef PD_FS_H
#define PD_FS_H

#include "common.h"

#define PD_FS_PATH_MAX 4096

/* write(2) until all n bytes are written (EINTR retried). 0, or -1 with errno set. */
int pd_fs_write_all(int fd, const void *buf, size_t n);

/* Writes len bytes to path (created or truncated, mode 0644), fsyncs and closes it; a failed
 * write leaves no file behind. */
pd_status pd_fs_write(const char *path, const void *buf, size_t len, char *err, size_t errlen);

/* Replaces dir/name atomically: writes dir/.name.tmp with pd_fs_write, renames it over
 * dir/name, then fsyncs dir. A reader sees the old contents or the new, never a mix. */
pd_status pd_fs_write_atomic(const char *dir, const char *name, const void *buf, size_t len, char *err, size_t errlen);

/* fsyncs a file or a directory by path. */
pd_status pd_fs_sync(const char *path, char *err, size_t errlen);

/* mkdir -p: creates path and its missing parents (mode 0755); existing directories are fine. */
pd_status pd_fs_mkdir_p(const char *path, char *err, size_t errlen);

/* Removes path and everything below it, depth first, never following symbolic links. Best
 * effort: an entry that cannot be removed, or that another process removes first, is skipped. */
void pd_fs_remove_tree(const char *path);

/* 1 if dir/name exists (following symbolic links), else 0. */
int pd_fs_exists(const char *dir, const char *name);

#endif
