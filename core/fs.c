/* fs.c - durable writes and directory trees. See fs.h. */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pd_fs_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

pd_status pd_fs_write(const char *path, const void *buf, size_t len, char *err, size_t errlen) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(errno));
    const char *what = "write";
    int bad = pd_fs_write_all(fd, buf, len);
    if (!bad && (bad = fsync(fd)) != 0) what = "fsync";
    int e = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        what = "close";
        e = errno;
    }
    if (bad) {
        unlink(path);
        return pd_err(err, errlen, PD_ERR_IO, "%s: %s: %s", path, what, strerror(e));
    }
    return PD_OK;
}

pd_status pd_fs_write_atomic(const char *dir, const char *name, const void *buf, size_t len, char *err, size_t errlen) {
    char path[PD_FS_PATH_MAX], tmp[PD_FS_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp)
        return pd_err(err, errlen, PD_ERR_INVALID, "%s/%s: path too long", dir, name);
    pd_status st = pd_fs_write(tmp, buf, len, err, errlen);
    if (st) return st;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return pd_err(err, errlen, PD_ERR_IO, "%s: rename: %s", path, strerror(e));
    }
    return pd_fs_sync(dir, err, errlen);
}

pd_status pd_fs_sync(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    return rc ? pd_err(err, errlen, PD_ERR_IO, "%s: fsync: %s", path, strerror(e)) : PD_OK;
}

pd_status pd_fs_mkdir_p(const char *path, char *err, size_t errlen) {
    char p[PD_FS_PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return pd_err(err, errlen, PD_ERR_INVALID, "%s: path too long", path);
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return pd_err(err, errlen, PD_ERR_IO, "mkdir %s: %s", p, strerror(errno));
        *q = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return pd_err(err, errlen, PD_ERR_IO, "mkdir %s: %s", p, strerror(errno));
    return PD_OK;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path); /* best effort: another process may be removing the same tree */
    return 0;
}

void pd_fs_remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

int pd_fs_exists(const char *dir, const char *name) {
    char p[PD_FS_PATH_MAX];
    struct stat sb;
    return !pd_path_join(p, sizeof p, dir, name) && stat(p, &sb) == 0;
}
