/* store.c - training jobs on disk: directories, job.json, checkpoints, the old layout's
 * migration. See store.h; docs/STORE.md and docs/TRAINING.md describe the layout. */
#include "store.h"

#include "fs.h"
#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_CAP PD_FS_PATH_MAX
#define TMP_MAX_AGE 600.0          /* seconds before a job directory being created counts as abandoned */
#define CLAIM_TRIES 1000
#define OLD_DIR "jobs"             /* the old layout: DATA_DIR/jobs/j-<n>, beside the adapters */
#define DATA_MAX ((size_t)1 << 34) /* train.jsonl: a guard against absurd files only */

struct pd_train_store {
    char *dir;                     /* DATA_DIR/.jobs, or NULL */
    pthread_mutex_t lock;
    long next_id;                  /* guarded by lock */
};

/* ==== Paths ==== */

/* dir/id[/sub] into buf. 0, or -1 when it does not fit. */
static int job_path(const pd_train_store *s, const char *id, const char *sub, char *buf, size_t cap) {
    int n = sub ? snprintf(buf, cap, "%s/%s/%s", s->dir, id, sub) : snprintf(buf, cap, "%s/%s", s->dir, id);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* "j-<n>" followed by rest: n, or 0 when name is not a job's. */
static long job_number(const char *name, const char **rest) {
    if (strncmp(name, "j-", 2) || name[2] < '1' || name[2] > '9') return 0;
    char *end = NULL;
    long v = strtol(name + 2, &end, 10);
    *rest = end;
    return v > 0 ? v : 0;
}

/* ==== Opening, and the old layout ==== */

/* Moves DATA_DIR/jobs/j-* into the store. DATA_DIR/jobs itself goes when nothing else is left
 * in it; anything else there (the versions of an adapter named "jobs") stays where it is. */
static void migrate(const char *data_dir, const char *store) {
    char old[PATH_CAP];
    if (pd_path_join(old, sizeof old, data_dir, OLD_DIR)) return;
    DIR *d = opendir(old);
    if (!d) return;
    struct dirent *de;
    int moved = 0, failed = 0;
    while ((de = readdir(d))) {
        const char *rest;
        if (!job_number(de->d_name, &rest)) continue;
        char from[PATH_CAP], to[PATH_CAP];
        if (pd_path_join(from, sizeof from, old, de->d_name) || pd_path_join(to, sizeof to, store, de->d_name)) continue;
        if (rename(from, to) == 0) {
            moved++;
        } else {
            failed++;
            fprintf(stderr, "peftd: trainer: cannot move %s to %s: %s\n", from, to, strerror(errno));
        }
    }
    closedir(d);
    if (moved) {
        char err[256];
        if (pd_fs_sync(store, err, sizeof err) || pd_fs_sync(old, err, sizeof err)) fprintf(stderr, "peftd: trainer: %s\n", err);
        fprintf(stderr, "peftd: trainer: moved %d job%s from %s to %s\n", moved, moved == 1 ? "" : "s", old, store);
    }
    if (!failed && rmdir(old) == 0) { /* empty: it only held jobs (ENOTEMPTY: an adapter's versions stay) */
        char err[256];
        if (pd_fs_sync(data_dir, err, sizeof err)) fprintf(stderr, "peftd: trainer: %s\n", err);
    }
}

pd_status pd_train_store_open(const char *data_dir, pd_train_store **out, char *err, size_t errlen) {
    *out = NULL;
    pd_train_store *s = calloc(1, sizeof *s);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->next_id = 1;
    if (data_dir) {
        size_t n = strlen(data_dir) + sizeof PD_TRAIN_STORE_DIR + 1;
        pd_status st = PD_OK;
        if (!(s->dir = malloc(n))) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        else snprintf(s->dir, n, "%s/%s", data_dir, PD_TRAIN_STORE_DIR);
        if (!st) st = pd_fs_mkdir_p(s->dir, err, errlen);
        if (st) {
            pd_train_store_free(s);
            return st;
        }
        migrate(data_dir, s->dir);
    }
    *out = s;
    return PD_OK;
}

void pd_train_store_free(pd_train_store *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s);
}

int pd_train_store_persistent(const pd_train_store *s) { return s->dir != NULL; }

void pd_train_store_next_id(pd_train_store *s, char *id, size_t cap) {
    pthread_mutex_lock(&s->lock);
    snprintf(id, cap, "j-%ld", s->next_id++);
    pthread_mutex_unlock(&s->lock);
}

/* ==== Jobs ==== */

int pd_train_store_lock(pd_train_store *s, const char *id) {
    char p[PATH_CAP];
    if (!s->dir || job_path(s, id, "lock", p, sizeof p)) return -1;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        close(fd);
        return -1;
    }
    return fd;
}

static pd_status write_text(const char *dir, const char *name, const char *text, char *err, size_t errlen) {
    char p[PATH_CAP];
    if (pd_path_join(p, sizeof p, dir, name)) return pd_err(err, errlen, PD_ERR_IO, "%s: path too long", dir);
    return pd_fs_write(p, text, strlen(text), err, errlen);
}

/* state as job.json (cJSON_Print's layout) into dir: atomically, or in place inside a directory
 * that is itself renamed into place. */
static pd_status write_state(const char *dir, const cJSON *state, int atomic, char *err, size_t errlen) {
    char *txt = cJSON_Print(state);
    if (!txt) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_status st = atomic ? pd_fs_write_atomic(dir, "job.json", txt, strlen(txt), err, errlen) : write_text(dir, "job.json", txt, err, errlen);
    free(txt);
    return st;
}

/* Saves adapter a into dir (created); pd_adapter_save_dir fsyncs its files and dir. */
static pd_status save_adapter(const pd_adapter *a, const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0755) && errno != EEXIST) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", dir, strerror(errno));
    return pd_adapter_save_dir(a, dir, err, errlen);
}

pd_status pd_train_store_create(pd_train_store *s, char *id, size_t cap, const pd_train_spec *spec, cJSON *state,
                                int *lock_fd, char *err, size_t errlen) {
    *lock_fd = -1;
    if (!s->dir) return PD_OK;
    char jd[PATH_CAP], tmp[PATH_CAP + 32], p[PATH_CAP + 48];
    if (job_path(s, id, NULL, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", jd, (long)getpid());
    pd_fs_remove_tree(tmp);
    if (mkdir(tmp, 0755)) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", tmp, strerror(errno));
    pd_status st = PD_OK;
    snprintf(p, sizeof p, "%s/lock", tmp);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB)) st = pd_err(err, errlen, PD_ERR_IO, "%s: %s", p, strerror(errno));
    if (!st) st = write_text(tmp, "spec.json", spec->spec_json, err, errlen);
    if (!st) st = write_text(tmp, "train.jsonl", spec->train_jsonl, err, errlen);
    if (!st && spec->eval_jsonl) st = write_text(tmp, "eval.jsonl", spec->eval_jsonl, err, errlen);
    if (!st && spec->source) {
        snprintf(p, sizeof p, "%s/source", tmp);
        st = save_adapter(spec->source, p, err, errlen);
    }
    if (!st) st = write_state(tmp, state, 0, err, errlen);
    if (!st) st = pd_fs_sync(tmp, err, errlen);
    /* the rename claims the id: it fails when the directory exists (another replica took it) */
    for (int tries = 0; !st; tries++) {
        if (rename(tmp, jd) == 0) break;
        if ((errno != EEXIST && errno != ENOTEMPTY) || tries == CLAIM_TRIES) {
            st = pd_err(err, errlen, PD_ERR_IO, "%s: rename: %s", jd, strerror(errno));
            break;
        }
        pd_train_store_next_id(s, id, cap);
        cJSON_ReplaceItemInObjectCaseSensitive(state, "job", cJSON_CreateString(id));
        if (job_path(s, id, NULL, jd, sizeof jd)) st = pd_err(err, errlen, PD_ERR_IO, "path too long");
        else st = write_state(tmp, state, 0, err, errlen);
    }
    if (!st) st = pd_fs_sync(s->dir, err, errlen);
    if (st) {
        pd_fs_remove_tree(tmp);
        if (fd >= 0) close(fd);
        return st;
    }
    *lock_fd = fd;
    return PD_OK;
}

pd_status pd_train_store_write_state(pd_train_store *s, const char *id, const cJSON *state, char *err, size_t errlen) {
    char jd[PATH_CAP];
    if (!s->dir) return PD_OK;
    if (job_path(s, id, NULL, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    return write_state(jd, state, 1, err, errlen);
}

/* ==== Checkpoints ==== */

pd_status pd_train_store_ckpt_write(pd_train_store *s, const char *id, long seq, const pd_adapter *a, const pd_adamw *o,
                                    const char *const *meta_kv, int n_meta, const cJSON *state, char *err, size_t errlen) {
    if (!s->dir) return PD_OK;
    char jd[PATH_CAP], fin[PATH_CAP + 40], tmp[PATH_CAP + 48], p[PATH_CAP + 80];
    if (job_path(s, id, NULL, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    /* a new name every time: the previous checkpoint stays complete until this one is */
    snprintf(fin, sizeof fin, "%s/ckpt-%ld", jd, seq);
    snprintf(tmp, sizeof tmp, "%s.tmp", fin);
    pd_fs_remove_tree(tmp);
    if (mkdir(tmp, 0755)) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", tmp, strerror(errno));
    snprintf(p, sizeof p, "%s/adapter", tmp);
    pd_status st = save_adapter(a, p, err, errlen);
    if (!st) {
        snprintf(p, sizeof p, "%s/optim.safetensors", tmp);
        st = pd_adamw_save(o, p, meta_kv, n_meta, err, errlen);
    }
    if (!st) {
        char *txt = cJSON_Print(state);
        st = txt ? write_text(tmp, "state.json", txt, err, errlen) : pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        free(txt);
    }
    if (!st) st = pd_fs_sync(tmp, err, errlen);
    if (!st) {
        pd_fs_remove_tree(fin);
        if (rename(tmp, fin)) st = pd_err(err, errlen, PD_ERR_IO, "%s: rename: %s", fin, strerror(errno));
    }
    if (!st) st = pd_fs_sync(jd, err, errlen);
    if (st) pd_fs_remove_tree(tmp);
    return st;
}

pd_status pd_train_store_ckpt_read(pd_train_store *s, const char *id, const char *name, pd_adamw *o, cJSON **state,
                                   char *err, size_t errlen) {
    char jd[PATH_CAP], p[PATH_CAP + 120];
    *state = NULL;
    if (!s->dir) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "no job store");
    if (job_path(s, id, NULL, jd, sizeof jd)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    snprintf(p, sizeof p, "%s/%s/optim.safetensors", jd, name);
    pd_status st = pd_adamw_load(o, p, err, errlen);
    if (st) return st;
    snprintf(p, sizeof p, "%s/%s/state.json", jd, name);
    return pd_json_read_file(p, (size_t)1 << 30, state, err, errlen);
}

void pd_train_store_ckpt_prune(pd_train_store *s, const char *id, const char *keep) {
    char jd[PATH_CAP], p[PATH_CAP + 300];
    if (!s->dir || job_path(s, id, NULL, jd, sizeof jd)) return;
    DIR *d = opendir(jd);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "ckpt-", 5) || (keep && !strcmp(de->d_name, keep))) continue;
        snprintf(p, sizeof p, "%s/%s", jd, de->d_name);
        pd_fs_remove_tree(p);
    }
    closedir(d);
}

void pd_train_store_finish(pd_train_store *s, const char *id) {
    static const char *const drop[] = {"train.jsonl", "eval.jsonl", "source", "lock"};
    char p[PATH_CAP];
    if (!s->dir) return;
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (!job_path(s, id, drop[i], p, sizeof p)) pd_fs_remove_tree(p);
    pd_train_store_ckpt_prune(s, id, NULL);
}

void pd_train_store_remove(pd_train_store *s, const char *id) {
    char jd[PATH_CAP], tmp[PATH_CAP + 32];
    if (!s->dir || job_path(s, id, NULL, jd, sizeof jd)) return;
    snprintf(tmp, sizeof tmp, "%s.tmp-rm-%ld", jd, (long)getpid());
    if (rename(jd, tmp)) {
        if (errno != ENOENT) fprintf(stderr, "peftd: trainer: cannot remove %s: %s\n", jd, strerror(errno));
        return;
    }
    pd_fs_remove_tree(tmp);
}

/* ==== Start-up ==== */

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

pd_status pd_train_store_list(pd_train_store *s, long **nums, int *n) {
    *nums = NULL;
    *n = 0;
    if (!s->dir) return PD_OK;
    DIR *d = opendir(s->dir);
    if (!d) return PD_ERR_IO;
    long *ids = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    pd_status st = PD_OK;
    while ((de = readdir(d))) {
        const char *rest;
        long v = job_number(de->d_name, &rest);
        if (!v) continue;
        if (!strncmp(rest, ".tmp", 4)) {
            /* a job being created (here or by a replica), or left by a crash: removed when old */
            char p[PATH_CAP];
            struct stat sb;
            if (!pd_path_join(p, sizeof p, s->dir, de->d_name) && lstat(p, &sb) == 0 &&
                (double)now.tv_sec - (double)sb.st_mtime > TMP_MAX_AGE)
                pd_fs_remove_tree(p);
            continue;
        }
        if (*rest) continue;
        if (cnt == cap) {
            size_t nc = cap ? 2 * cap : 64;
            long *ni = realloc(ids, nc * sizeof *ni);
            if (!ni) { st = PD_ERR_NOMEM; break; }
            ids = ni;
            cap = nc;
        }
        ids[cnt++] = v;
    }
    closedir(d);
    if (cnt) qsort(ids, cnt, sizeof *ids, cmp_long);
    pthread_mutex_lock(&s->lock);
    if (cnt && ids[cnt - 1] >= s->next_id) s->next_id = ids[cnt - 1] + 1;
    pthread_mutex_unlock(&s->lock);
    *nums = ids;
    *n = (int)cnt;
    return st;
}

pd_status pd_train_store_read_state(pd_train_store *s, const char *id, cJSON **state, char *err, size_t errlen) {
    char p[PATH_CAP];
    *state = NULL;
    if (!s->dir) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "no job store");
    if (job_path(s, id, "job.json", p, sizeof p)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    return pd_json_read_file(p, (size_t)1 << 30, state, err, errlen);
}

/* Reads id/name if it exists: *buf NULL and PD_OK when it does not. */
static pd_status read_optional(pd_train_store *s, const char *id, const char *name, char **buf, size_t *len, char *err,
                               size_t errlen) {
    char p[PATH_CAP];
    *buf = NULL;
    *len = 0;
    if (job_path(s, id, name, p, sizeof p)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    if (access(p, F_OK) != 0) return PD_OK;
    return pd_read_file(p, DATA_MAX, buf, len, err, errlen);
}

pd_status pd_train_store_read_spec(pd_train_store *s, const char *id, pd_train_stored *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!s->dir) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "no job store");
    pd_status st = read_optional(s, id, "spec.json", &out->spec, &out->spec_len, err, errlen);
    if (!st && !out->spec) st = pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: no spec.json", id);
    if (!st) st = read_optional(s, id, "train.jsonl", &out->train, &out->train_len, err, errlen);
    if (!st) st = read_optional(s, id, "eval.jsonl", &out->eval, &out->eval_len, err, errlen);
    if (!st && job_path(s, id, "source", out->source_dir, sizeof out->source_dir)) st = pd_err(err, errlen, PD_ERR_IO, "path too long");
    if (!st && access(out->source_dir, F_OK) != 0) out->source_dir[0] = 0;
    if (st) pd_train_stored_clear(out);
    return st;
}

void pd_train_stored_clear(pd_train_stored *d) {
    free(d->spec);
    free(d->train);
    free(d->eval);
    memset(d, 0, sizeof *d);
}
