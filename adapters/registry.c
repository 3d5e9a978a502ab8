/* registry.c - the adapter registry: a hash table from name to the current immutable version,
 * hot swap under one mutex, versions persisted under DATA_DIR with atomic renames, an LRU of
 * resident versions under a byte budget, and sync between replicas sharing DATA_DIR.
 *
 * Design (docs/STORE.md has the operator's view):
 * - One mutex (reg->lock) guards the table, every entry and the counters. Loading, parsing and
 *   file writes run outside it; only pointer swaps and bookkeeping run under it.
 * - Entries are never removed from the table before pd_registry_free: a deleted name keeps its
 *   entry (live = 0) so its version numbers keep increasing, and a thread that dropped the lock
 *   may keep using its entry pointer.
 * - The version number is the global order: a current version is only ever replaced by a
 *   higher one, whichever process or thread wrote it. A deletion is a version too (a tombstone),
 *   so "delete" and "publish" race by the same rule and every replica ends in the same state.
 * - Disk is the truth between processes. A version directory exists only once complete
 *   (written as .tmp-*, fsync'd, renamed); rename onto an existing non-empty directory fails,
 *   which is how concurrent writers claim distinct numbers.
 * - Replicas learn of changes through DATA_DIR/.changes, an append-only log of "name version"
 *   lines that sync reads from its last offset (one open + fstat when nothing changed), plus a
 *   full re-scan at least FULL_SCAN_EVERY seconds apart for changes the log missed. */
#include "registry.h"

#include "fs.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEEP_VERSIONS 3          /* complete versions kept per name after a publish */
#define TMP_MAX_AGE 600.0        /* seconds before a .tmp-* dir counts as abandoned */
#define FULL_SCAN_EVERY 30.0     /* seconds between full re-scans in pd_registry_sync, at least */
#define FULL_SCAN_SHARE 100.0    /* ... and at least this many times the last scan's duration */
#define LOG_NAME ".changes"
#define LOG_ROTATE_BYTES (1 << 20)
#define META_NAME "meta.json"
#define META_MAX ((size_t)1 << 20)
#define FILE_MAX ((size_t)1 << 36) /* 64 GiB: only a guard against absurd files */
#define VERSION_MAX 999999999    /* nine digits: a version is a short canonical decimal */
#define CLAIM_TRIES 1000
#define PATH_CAP 4096
#define NAME_CAP 65

/* ==== Small helpers ==== */

/* The files a version directory may hold, as adapter.h names them. Bit i of meta.files says
 * known_file[i] is there; only these can be downloaded or read back. */
enum { F_CONFIG, F_WEIGHTS_PEFT, F_WEIGHTS_AH, F_HEAD_CONFIG, F_HEAD_WEIGHTS, F_COUNT };
static const char *const known_file[F_COUNT] = {
    "adapter_config.json", "adapter_model.safetensors", "adapter.safetensors", "head_config.json",
    "model_head.safetensors",
};

static int known_index(const char *name) {
    for (int i = 0; i < F_COUNT; i++)
        if (!strcmp(name, known_file[i])) return i;
    return -1;
}

/* Unix time in whole milliseconds (as seconds). Timestamps go through meta.json, and cJSON
 * prints a double with 15 significant digits whenever that reads back within DBL_EPSILON, so
 * sub-microsecond parts would not survive a restart: created_at would differ by a ulp from the
 * value in memory. An integer count of milliseconds divided by 1000 is the double nearest its
 * decimal text, so it reads back exactly. */
static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double ms = (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
    return ms / 1000.0;
}

static uint64_t rand64(void) {
    uint64_t x;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) == (ssize_t)sizeof x) return x;
    /* No entropy yet (early boot): names only need to differ between concurrent writers. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)&x;
}

static char *str_dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* A version number as written in a directory name: canonical decimal, 1..VERSION_MAX. */
static int version_parse(const char *s) {
    if (s[0] < '1' || s[0] > '9') return 0;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || p - s >= 9) return 0;
        v = v * 10 + (*p - '0');
    }
    return (int)v;
}

/* ==== Disk primitives ==== */

typedef struct vlist {
    int *v; /* version numbers, highest first */
    int n, cap;
} vlist;

static int cmp_int_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* Lists the version directories of namedir, highest first. clean: also removes .trash-*
 * leftovers and .tmp-* directories older than TMP_MAX_AGE (younger ones may be a publish in
 * progress on another replica). Returns 0, 1 if namedir does not exist, -1 on errors. */
static int versions_list(const char *namedir, int clean, vlist *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(namedir);
    if (!d) return errno == ENOENT || errno == ENOTDIR ? 1 : -1;
    struct dirent *de;
    double now = clean ? wall_now() : 0;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.') {
            if (!clean) continue;
            int trash = !strncmp(n, ".trash-", 7), tmp = !strncmp(n, ".tmp-", 5);
            if (!trash && !tmp) continue;
            char p[PATH_CAP];
            if (pd_path_join(p, sizeof p, namedir, n)) continue;
            struct stat sb;
            if (lstat(p, &sb) != 0) continue;
            if (trash || now - (double)sb.st_mtime > TMP_MAX_AGE) pd_fs_remove_tree(p);
            continue;
        }
        int v = version_parse(n);
        if (!v) continue;
        if (out->n == out->cap) {
            int cap = out->cap ? out->cap * 2 : 8;
            int *nv = realloc(out->v, (size_t)cap * sizeof *nv);
            if (!nv) { closedir(d); free(out->v); memset(out, 0, sizeof *out); return -1; }
            out->v = nv;
            out->cap = cap;
        }
        out->v[out->n++] = v;
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_int_desc);
    return 0;
}

/* ==== meta.json ==== */

/* What the registry knows of a version without loading it. */
typedef struct meta {
    int deleted;          /* a tombstone */
    pd_method method;
    pd_task task;
    int num_labels;
    char **labels;        /* (num_labels) the adapter's label names, for info */
    int64_t params;
    size_t bytes;         /* adapter files on disk (or given, without a data dir) */
    double created_at, updated_at;
    unsigned files;       /* bit i: known_file[i] is in the version dir; 0: unknown set, use load_dir */
    char *labels_json;    /* labels given apart from the files (JSON array), re-applied on load */
} meta;

static void meta_clear(meta *m) {
    pd_strv_free(m->labels, m->num_labels);
    free(m->labels_json);
    memset(m, 0, sizeof *m);
}

/* Describes a loaded adapter. labels/labels_len: the labels given with the upload (may be
 * NULL); for an adapter built in memory (save = 1) its own labels are recorded instead so a
 * reload from disk gets exactly the same ones. */
static pd_status meta_from_adapter(const pd_adapter *a, const char *labels, size_t labels_len, int save, meta *m) {
    memset(m, 0, sizeof *m);
    m->method = pd_adapter_method(a);
    m->task = pd_adapter_task(a);
    m->params = pd_adapter_params(a);
    int n = pd_adapter_num_labels(a);
    if (n > 0) {
        if (!(m->labels = calloc((size_t)n, sizeof *m->labels))) return PD_ERR_NOMEM;
        m->num_labels = n;
        for (int i = 0; i < n; i++) {
            char b[PD_LABEL_CAP];
            if (!(m->labels[i] = strdup(pd_label_name(pd_adapter_label(a, i), i, b, sizeof b)))) { meta_clear(m); return PD_ERR_NOMEM; }
        }
    }
    if (labels && labels_len) {
        if (!(m->labels_json = str_dup_n(labels, labels_len))) { meta_clear(m); return PD_ERR_NOMEM; }
    } else if (save && n > 0) {
        cJSON *arr = cJSON_CreateStringArray((const char *const *)m->labels, n);
        m->labels_json = arr ? cJSON_PrintUnformatted(arr) : NULL;
        cJSON_Delete(arr);
        if (!m->labels_json) { meta_clear(m); return PD_ERR_NOMEM; }
    }
    return PD_OK;
}

/* meta.json text for version v; NULL when out of memory. */
static char *meta_print(int v, const meta *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddNumberToObject(o, "format", 1) && cJSON_AddNumberToObject(o, "version", v);
    if (m->deleted) {
        ok = ok && cJSON_AddBoolToObject(o, "deleted", 1) && cJSON_AddNumberToObject(o, "updated_at", m->updated_at);
    } else {
        ok = ok && cJSON_AddNumberToObject(o, "created_at", m->created_at) &&
             cJSON_AddNumberToObject(o, "updated_at", m->updated_at) &&
             cJSON_AddStringToObject(o, "method", pd_method_name(m->method)) &&
             cJSON_AddStringToObject(o, "task", pd_task_name(m->task)) &&
             cJSON_AddNumberToObject(o, "num_labels", m->num_labels) &&
             cJSON_AddNumberToObject(o, "params", (double)m->params) &&
             cJSON_AddNumberToObject(o, "bytes", (double)m->bytes);
        if (ok && m->num_labels > 0) {
            cJSON *arr = cJSON_CreateStringArray((const char *const *)m->labels, m->num_labels);
            ok = arr && cJSON_AddItemToObject(o, "label_names", arr);
            if (arr && !ok) cJSON_Delete(arr); /* not added: still ours (test_allocfail) */
        }
        cJSON *files = ok ? cJSON_AddArrayToObject(o, "files") : NULL;
        ok = ok && files;
        for (int i = 0; ok && i < F_COUNT; i++)
            if (m->files & (1u << i)) {
                cJSON *s = cJSON_CreateString(known_file[i]);
                ok = s && cJSON_AddItemToArray(files, s);
            }
        if (ok && m->labels_json) {
            cJSON *l = cJSON_ParseWithLengthOpts(m->labels_json, strlen(m->labels_json), NULL, 0);
            /* the adapter accepted it, so it parses; if not, keep it verbatim */
            if (!l) l = cJSON_CreateString(m->labels_json);
            ok = l && cJSON_AddItemToObject(o, "labels", l);
            if (l && !ok) cJSON_Delete(l);
        }
    }
    char *s = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Parses meta.json of version v (the "version" field must say v). */
static pd_status meta_parse(const char *text, size_t len, int v, meta *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    pd_status st = PD_ERR_FORMAT;
    if (!cJSON_IsObject(o)) { pd_err(err, errlen, st, "meta.json: not a JSON object"); goto out; }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "version");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != (double)v) {
        pd_err(err, errlen, st, "meta.json: \"version\" does not match the directory %d", v);
        goto out;
    }
    const cJSON *upd = cJSON_GetObjectItemCaseSensitive(o, "updated_at");
    m->updated_at = cJSON_IsNumber(upd) ? upd->valuedouble : 0;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deleted"))) {
        m->deleted = 1;
        st = PD_OK;
        goto out;
    }
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(o, "created_at");
    m->created_at = cJSON_IsNumber(cr) ? cr->valuedouble : m->updated_at;
    const cJSON *me = cJSON_GetObjectItemCaseSensitive(o, "method");
    const cJSON *ta = cJSON_GetObjectItemCaseSensitive(o, "task");
    int task = cJSON_IsString(ta) ? pd_task_parse(ta->valuestring) : -1;
    if (!cJSON_IsString(me) || pd_method_parse(me->valuestring, &m->method) || task < 0) {
        pd_err(err, errlen, st, "meta.json: bad \"method\" or \"task\"");
        goto out;
    }
    m->task = (pd_task)task;
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(o, "params");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(o, "bytes");
    m->params = cJSON_IsNumber(pa) && pa->valuedouble >= 0 ? (int64_t)pa->valuedouble : 0;
    m->bytes = cJSON_IsNumber(by) && by->valuedouble >= 0 ? (size_t)by->valuedouble : 0;
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(o, "label_names");
    if (cJSON_IsArray(ln) && cJSON_GetArraySize(ln) > 0) {
        int n = cJSON_GetArraySize(ln);
        if (!(m->labels = calloc((size_t)n, sizeof *m->labels))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
        m->num_labels = n;
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, ln) {
            if (!(m->labels[i++] = strdup(cJSON_IsString(it) ? it->valuestring : ""))) {
                st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
                goto out;
            }
        }
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    int unknown = !cJSON_IsArray(files);
    const cJSON *it;
    cJSON_ArrayForEach(it, files) {
        int k = cJSON_IsString(it) ? known_index(it->valuestring) : -1;
        if (k < 0) unknown = 1;
        else m->files |= 1u << k;
    }
    if (unknown || !(m->files & (1u << F_CONFIG))) m->files = 0;
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "labels");
    if (lab && !cJSON_IsNull(lab)) {
        m->labels_json = cJSON_IsString(lab) ? strdup(lab->valuestring) : cJSON_PrintUnformatted(lab);
        if (!m->labels_json) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto out; }
    }
    st = PD_OK;
out:
    cJSON_Delete(o);
    if (st) meta_clear(m);
    return st;
}

/* ==== The registry ==== */

typedef struct entry {
    struct entry *hnext;        /* hash chain */
    struct entry *prev, *next;  /* LRU list, resident entries only (most recent first) */
    int version;                /* current version if live; else the last number seen (tombstone) */
    int live;                   /* registered: pd_registry_get can return it */
    int loading;                /* a thread is loading `version` from disk for pd_registry_get */
    pd_adapter *a;              /* the registry's reference; NULL when not resident */
    size_t a_bytes;             /* pd_adapter_bytes(a) when resident */
    meta m;                     /* of `version` */
    int fail_version;           /* this version failed to load here (not retried) */
    pd_status fail_st;
    char *fail_msg;
    char name[NAME_CAP];
} entry;

struct pd_registry {
    const pd_model *base;
    char *dir;                  /* NULL: memory only */
    size_t budget;              /* resident bytes; 0: no limit */
    pthread_mutex_t lock;
    pthread_cond_t load_done;   /* broadcast when a pd_registry_get load finishes */
    /* guarded by reg->lock */
    entry **bucket;
    size_t nbucket, nentry;
    entry lru;                  /* sentinel: lru.next is the most recently used */
    int registered, resident;
    size_t resident_bytes;
    uint64_t swaps, loads, evictions;
    /* guarded by reg->sync_lock: where the reader of DATA_DIR/.changes stands */
    pthread_mutex_t sync_lock;
    dev_t log_dev;
    ino_t log_ino;
    off_t log_off;
    double last_full;           /* when the last full scan ended (pd_now) */
    double full_secs;           /* how long it took */
};

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* caller holds reg->lock */
static entry *table_find(pd_registry *r, const char *name) {
    for (entry *e = r->bucket[name_hash(name) & (r->nbucket - 1)]; e; e = e->hnext)
        if (!strcmp(e->name, name)) return e;
    return NULL;
}

/* Finds or adds name; NULL when out of memory. Doubles the table past one entry per bucket so
 * lookups stay O(1) with any number of names. caller holds reg->lock */
static entry *table_get(pd_registry *r, const char *name) {
    entry *e = table_find(r, name);
    if (e) return e;
    if (r->nentry >= r->nbucket) {
        size_t nb = r->nbucket * 2;
        entry **b = calloc(nb, sizeof *b);
        if (b) {
            for (size_t i = 0; i < r->nbucket; i++)
                for (entry *x = r->bucket[i], *nx; x; x = nx) {
                    nx = x->hnext;
                    size_t k = name_hash(x->name) & (nb - 1);
                    x->hnext = b[k];
                    b[k] = x;
                }
            free(r->bucket);
            r->bucket = b;
            r->nbucket = nb;
        } /* else: keep the old table, only slower */
    }
    if (!(e = calloc(1, sizeof *e))) return NULL;
    snprintf(e->name, sizeof e->name, "%s", name);
    size_t k = name_hash(name) & (r->nbucket - 1);
    e->hnext = r->bucket[k];
    r->bucket[k] = e;
    r->nentry++;
    return e;
}

/* caller holds reg->lock */
static void lru_unlink(entry *e) {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

/* caller holds reg->lock */
static void lru_push_front(pd_registry *r, entry *e) {
    e->next = r->lru.next;
    e->prev = &r->lru;
    r->lru.next->prev = e;
    r->lru.next = e;
}

static void fail_clear(entry *e) {
    free(e->fail_msg);
    e->fail_msg = NULL;
    e->fail_version = 0;
    e->fail_st = PD_OK;
}

/* Takes e's adapter out of memory accounting; returns the registry's reference for the
 * caller to release (after unlocking, preferably). caller holds reg->lock */
static pd_adapter *entry_unload(pd_registry *r, entry *e) {
    pd_adapter *a = e->a;
    if (!a) return NULL;
    lru_unlink(e);
    r->resident--;
    r->resident_bytes -= e->a_bytes;
    e->a = NULL;
    e->a_bytes = 0;
    return a;
}

/* caller holds reg->lock */
static void entry_set_resident(pd_registry *r, entry *e, pd_adapter *a) {
    PD_ASSERT(!e->a);
    e->a = a;
    e->a_bytes = pd_adapter_bytes(a);
    r->resident++;
    r->resident_bytes += e->a_bytes;
    lru_push_front(r, e);
}

/* Makes version v current for e with adapter a (NULL: registered but not resident, loaded on
 * first use). Takes ownership of a and of *m. Returns the previous adapter reference for the
 * caller to release. caller holds reg->lock */
static pd_adapter *entry_install(pd_registry *r, entry *e, int v, pd_adapter *a, meta *m) {
    pd_adapter *old = entry_unload(r, e);
    if (e->live && e->version != v) r->swaps++;
    if (!e->live) {
        e->live = 1;
        r->registered++;
    }
    e->version = v;
    meta_clear(&e->m);
    e->m = *m;
    memset(m, 0, sizeof *m);
    fail_clear(e);
    if (a) entry_set_resident(r, e, a);
    return old;
}

/* Unregisters e at version v (a tombstone, or the last number it had). Returns the previous
 * adapter reference for the caller to release. caller holds reg->lock */
static pd_adapter *entry_kill(pd_registry *r, entry *e, int v) {
    pd_adapter *old = entry_unload(r, e);
    if (e->live) {
        e->live = 0;
        r->registered--;
    }
    e->version = v;
    meta_clear(&e->m);
    fail_clear(e);
    return old;
}

/* Drops least-recently-used versions nobody but the registry holds until the resident total
 * fits the budget; keep (just used) always stays. Versions pinned by requests stay too: dropping
 * them would free nothing and make the next get load a second copy. Releasing an unpinned
 * adapter only frees memory, so it is done here under the lock, where no get can retain it
 * in between. caller holds reg->lock */
static void evict_over_budget(pd_registry *r, entry *keep) {
    if (!r->budget || !r->dir) return; /* without a data dir nothing could be loaded again */
    for (entry *e = r->lru.prev; e != &r->lru && r->resident_bytes > r->budget;) {
        entry *prev = e->prev;
        if (e != keep && pd_adapter_refcount(e->a) == 1) {
            pd_adapter_release(entry_unload(r, e));
            r->evictions++;
        }
        e = prev;
    }
}

/* ==== Reading and writing versions ==== */

static int name_dir(const pd_registry *r, const char *name, char *buf, size_t cap) {
    return pd_path_join(buf, cap, r->dir, name);
}

static int version_dir(const pd_registry *r, const char *name, int v, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s/%s/%d", r->dir, name, v);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static pd_status meta_load(pd_registry *r, const char *name, int v, meta *m, char *err, size_t errlen) {
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/%s/%d/" META_NAME, r->dir, name, v) >= (int)sizeof path)
        return pd_err(err, errlen, PD_ERR_IO, "path too long");
    char *txt;
    size_t len;
    pd_status st = pd_read_file(path, META_MAX, &txt, &len, err, errlen);
    if (st) return st;
    st = meta_parse(txt, len, v, m, err, errlen);
    free(txt);
    return st;
}

/* Loads version v of name from its directory: its files as they were written (uploads
 * byte for byte) with the separately given labels re-applied, through the same validating
 * pd_adapter_load as the publish. files = 0 (a directory this code did not describe):
 * pd_adapter_load_dir. */
static pd_status version_load(pd_registry *r, const char *name, int v, unsigned files, const char *labels_json,
                              pd_adapter **out, char *err, size_t errlen) {
    char vdir[PATH_CAP];
    if (version_dir(r, name, v, vdir, sizeof vdir)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    if (!files) return pd_adapter_load_dir(r->base, vdir, out, err, errlen);
    char *buf[F_COUNT] = {0};
    size_t len[F_COUNT] = {0};
    pd_status st = PD_OK;
    for (int i = 0; i < F_COUNT && !st; i++) {
        if (!(files & (1u << i))) continue;
        char path[PATH_CAP];
        if (pd_path_join(path, sizeof path, vdir, known_file[i])) st = pd_err(err, errlen, PD_ERR_IO, "path too long");
        else st = pd_read_file(path, FILE_MAX, &buf[i], &len[i], err, errlen);
    }
    if (!st) {
        pd_adapter_files f = {0};
        int w = buf[F_WEIGHTS_PEFT] ? F_WEIGHTS_PEFT : F_WEIGHTS_AH;
        f.config = buf[F_CONFIG], f.config_len = len[F_CONFIG];
        f.weights = buf[w], f.weights_len = len[w];
        f.head_config = buf[F_HEAD_CONFIG], f.head_config_len = len[F_HEAD_CONFIG];
        f.head_weights = buf[F_HEAD_WEIGHTS], f.head_weights_len = len[F_HEAD_WEIGHTS];
        f.labels = labels_json, f.labels_len = labels_json ? strlen(labels_json) : 0;
        st = pd_adapter_load(r->base, &f, out, err, errlen);
    }
    for (int i = 0; i < F_COUNT; i++) free(buf[i]);
    return st;
}

/* The file name each uploaded part is stored under: the names pd_adapter_file_names gives
 * for this adapter (so a download offers what a save would write), the weights file by format. */
static void upload_names(const pd_adapter *a, int slot[4]) {
    int peft = 0, ah = 0;
    for (const char *const *n = pd_adapter_file_names(a); n && *n; n++) {
        if (!strcmp(*n, known_file[F_WEIGHTS_PEFT])) peft = 1;
        if (!strcmp(*n, known_file[F_WEIGHTS_AH])) ah = 1;
    }
    slot[0] = F_CONFIG;
    slot[1] = ah ? F_WEIGHTS_AH : peft ? F_WEIGHTS_PEFT
            : pd_adapter_method(a) == PD_METHOD_BOTTLENECK ? F_WEIGHTS_AH : F_WEIGHTS_PEFT;
    slot[2] = F_HEAD_CONFIG;
    slot[3] = F_HEAD_WEIGHTS;
}

/* Writes meta.json into dir through a temporary name, so a retry with another number
 * replaces it whole. */
static pd_status meta_write(const char *dir, int v, const meta *m, char *err, size_t errlen) {
    char *txt = meta_print(v, m);
    if (!txt) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_status st = pd_fs_write_atomic(dir, META_NAME, txt, strlen(txt), err, errlen);
    free(txt);
    return st;
}

/* Records in m the files pd_adapter_save_dir wrote (and fsync'd) into dir. */
static pd_status saved_files_list(const char *dir, meta *m, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int unknown = 0;
    pd_status st = PD_OK;
    while (!st && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[PATH_CAP];
        struct stat sb;
        if (pd_path_join(p, sizeof p, dir, de->d_name) || lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            st = pd_err(err, errlen, PD_ERR_IO, "%s: unexpected entry %s", dir, de->d_name);
            break;
        }
        m->bytes += (size_t)sb.st_size;
        int k = known_index(de->d_name);
        if (k < 0) unknown = 1;
        else m->files |= 1u << k;
    }
    closedir(d);
    if (unknown || !(m->files & (1u << F_CONFIG))) m->files = 0;
    return st;
}

/* Appends "name version" to DATA_DIR/.changes for the other replicas' pd_registry_sync. A
 * hint only: losing a line delays a replica until its next full scan. The log is cut back
 * to empty past LOG_ROTATE_BYTES; readers notice the shrink and re-scan everything. */
static void log_change(pd_registry *r, const char *name, int v) {
    char path[PATH_CAP], line[NAME_CAP + 16];
    if (pd_path_join(path, sizeof path, r->dir, LOG_NAME)) return;
    int n = snprintf(line, sizeof line, "%s %d\n", name, v);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (write(fd, line, (size_t)n) != n) { /* nothing to do: the full scan covers it */ }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && sb.st_size > LOG_ROTATE_BYTES && ftruncate(fd, 0) != 0) { /* retried next time */ }
    close(fd);
}

typedef enum { W_UPLOAD, W_SAVE, W_TOMBSTONE } wkind;

/* Writes a new version of name: into DATA_DIR/<name>/.tmp-<v>-<pid>-<rand>/, every file
 * fsync'd, then the directory, then renamed to <v> (and the parent fsync'd). The number is
 * claimed by that rename: it fails if <v> already exists (every version directory holds at
 * least meta.json), and the next number is tried. min_version: a number this process already
 * knows is taken. m: the description (created_at, updated_at, files, bytes are filled in).
 * Nothing is left behind on failure. */
static pd_status version_write(pd_registry *r, const char *name, int min_version, wkind kind,
                               const pd_adapter_files *f, const pd_adapter *a, meta *m, int *out_v,
                               char *err, size_t errlen) {
    char ndir[PATH_CAP], tmp[PATH_CAP], dst[PATH_CAP];
    if (name_dir(r, name, ndir, sizeof ndir)) return pd_err(err, errlen, PD_ERR_IO, "path too long");
    if (mkdir(ndir, 0755) == 0) {
        pd_status st = pd_fs_sync(r->dir, err, errlen);
        if (st) return st;
    } else if (errno != EEXIST) {
        return pd_err(err, errlen, PD_ERR_IO, "%s: mkdir: %s", ndir, strerror(errno));
    }
    vlist vl;
    if (versions_list(ndir, 0, &vl) < 0) return pd_err(err, errlen, PD_ERR_IO, "%s: %s", ndir, strerror(errno));
    int v = (vl.n ? vl.v[0] : 0) > min_version ? vl.v[0] : min_version;
    /* created_at survives versions: take it from the newest complete version unless that is
     * a tombstone (a re-created name is a new adapter). */
    double now = wall_now();
    m->created_at = now;
    m->updated_at = now;
    for (int i = 0; i < vl.n && kind != W_TOMBSTONE; i++) {
        meta prev;
        if (meta_load(r, name, vl.v[i], &prev, NULL, 0)) continue; /* incomplete: look lower */
        if (!prev.deleted && prev.created_at > 0) m->created_at = prev.created_at;
        meta_clear(&prev);
        break;
    }
    free(vl.v);
    if (v >= VERSION_MAX) return pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: version numbers exhausted", name);
    v++;

    if (snprintf(tmp, sizeof tmp, "%s/.tmp-%d-%d-%016llx", ndir, v, (int)getpid(), (unsigned long long)rand64()) >=
        (int)sizeof tmp)
        return pd_err(err, errlen, PD_ERR_IO, "path too long");
    if (mkdir(tmp, 0755) != 0) return pd_err(err, errlen, PD_ERR_IO, "%s: mkdir: %s", tmp, strerror(errno));

    pd_status st = PD_OK;
    if (kind == W_UPLOAD) {
        int slot[4];
        upload_names(a, slot);
        const void *part[4] = {f->config, f->weights, f->head_config, f->head_weights};
        size_t plen[4] = {f->config_len, f->weights_len, f->head_config_len, f->head_weights_len};
        for (int i = 0; i < 4 && !st; i++) {
            if (!part[i] || !plen[i]) continue;
            char path[PATH_CAP];
            st = pd_path_join(path, sizeof path, tmp, known_file[slot[i]]) ? pd_err(err, errlen, PD_ERR_IO, "path too long")
                                                                           : pd_fs_write(path, part[i], plen[i], err, errlen);
            m->files |= 1u << slot[i];
            m->bytes += plen[i];
        }
    } else if (kind == W_SAVE) {
        st = pd_adapter_save_dir(a, tmp, err, errlen);
        if (!st) st = saved_files_list(tmp, m, err, errlen);
    }
    if (!st) st = meta_write(tmp, v, m, err, errlen);

    for (int tries = 0; !st; tries++) {
        if (snprintf(dst, sizeof dst, "%s/%d", ndir, v) >= (int)sizeof dst) {
            st = pd_err(err, errlen, PD_ERR_IO, "path too long");
            break;
        }
        if (rename(tmp, dst) == 0) break;
        if ((errno != ENOTEMPTY && errno != EEXIST) || tries == CLAIM_TRIES) {
            st = pd_err(err, errlen, PD_ERR_IO, "%s: rename to %s: %s", tmp, dst, strerror(errno));
            break;
        }
        /* Another writer took v: move past everything that exists now. */
        int nv = v + 1;
        if (versions_list(ndir, 0, &vl) == 0) {
            if (vl.n && vl.v[0] >= nv) nv = vl.v[0] + 1;
            free(vl.v);
        }
        if (nv > VERSION_MAX) { st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: version numbers exhausted", name); break; }
        v = nv;
        st = meta_write(tmp, v, m, err, errlen);
    }
    if (st) {
        pd_fs_remove_tree(tmp);
        return st;
    }
    /* The rename happened; only its durability is in doubt. Report it, but the version exists
     * and other replicas may already see it, so it stays. */
    st = pd_fs_sync(ndir, err, errlen);
    log_change(r, name, v);
    *out_v = v;
    return st;
}

#define PRUNED_MARK ".pruned"

/* Empties version directory ndir/sub but keeps it, holding only a ".pruned" marker: a
 * directory that is not empty can never be claimed again by rename(), so a writer that chose
 * its number before this version was pruned moves past it instead of reusing the number
 * (rename() onto a missing or empty directory would succeed). The marker is written first, so
 * a half-pruned directory is recognisable; it has no meta.json, so scans skip it. Returns 1 if
 * the directory was already pruned. */
static int version_prune_one(const char *ndir, const char *sub) {
    char dir[PATH_CAP], p[PATH_CAP];
    if (snprintf(dir, sizeof dir, "%s/%s", ndir, sub) >= (int)sizeof dir) return 0;
    if (pd_path_join(p, sizeof p, dir, PRUNED_MARK)) return 0;
    struct stat sb;
    int done = stat(p, &sb) == 0;
    if (!done) {
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return 0;
        close(fd);
    }
    DIR *d = opendir(dir);
    if (!d) return done;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, PRUNED_MARK)) continue;
        if (pd_path_join(p, sizeof p, dir, de->d_name)) continue;
        if (unlink(p) != 0 && errno == EISDIR) pd_fs_remove_tree(p);
    }
    closedir(d);
    return done;
}

/* Removes versions of name nobody should need: after a publish, all but the KEEP_VERSIONS
 * highest; after a tombstone t, everything below t. Pruned versions stay as empty marker
 * directories (see version_prune_one), so version numbers are never handed out twice. */
static void versions_prune(pd_registry *r, const char *name, int tombstone) {
    char ndir[PATH_CAP];
    if (name_dir(r, name, ndir, sizeof ndir)) return;
    vlist vl;
    if (versions_list(ndir, 0, &vl) != 0) return;
    int kept = 0;
    for (int i = 0; i < vl.n; i++) {
        char sub[16], mark[PATH_CAP];
        snprintf(sub, sizeof sub, "%d", vl.v[i]);
        struct stat sb;
        if (snprintf(mark, sizeof mark, "%s/%s/" PRUNED_MARK, ndir, sub) < (int)sizeof mark && stat(mark, &sb) == 0)
            continue; /* already pruned */
        if (tombstone ? vl.v[i] >= tombstone : kept++ < KEEP_VERSIONS) continue;
        version_prune_one(ndir, sub);
    }
    free(vl.v);
}

/* ==== Sync with the disk ==== */

static int status_is_final(pd_status st) {
    /* worth remembering: loading the same bytes again gives the same answer */
    return st == PD_ERR_FORMAT || st == PD_ERR_UNSUPPORTED || st == PD_ERR_MISMATCH || st == PD_ERR_INVALID;
}

/* Brings one name in line with its directory: a newer complete version is loaded (when the
 * registry has no budget, or the old one was resident) or registered for loading on first use;
 * a newer tombstone unregisters; a vanished directory unregisters. Never moves a name to a
 * lower version than it has. A newer version that fails to load leaves the old one serving
 * (stderr says why) and is not retried. Returns 1 if the current version changed. */
static int sync_name(pd_registry *r, const char *name, int clean) {
    pthread_mutex_lock(&r->lock);
    entry *e = table_find(r, name);
    int known = e ? e->version : 0, known_live = e && e->live, resident = e && e->a;
    int failed = e ? e->fail_version : 0;
    pthread_mutex_unlock(&r->lock);

    char ndir[PATH_CAP];
    if (name_dir(r, name, ndir, sizeof ndir)) return 0;
    vlist vl;
    int rc = versions_list(ndir, clean, &vl);
    if (rc < 0) return 0; /* unreadable right now: leave as is */
    int newest = 0, changed = 0;
    meta m = {0};
    for (int i = 0; i < vl.n && vl.v[i] > known; i++)
        if (!meta_load(r, name, vl.v[i], &m, NULL, 0)) { newest = vl.v[i]; break; }
    int any = vl.n > 0, n_versions = vl.n, any_below = vl.n > 0 && vl.v[vl.n - 1] < newest;
    free(vl.v);

    pd_adapter *old = NULL, *a = NULL;
    if (!newest) {
        if (any || !known_live) return 0;
        /* The directory is gone (removed by hand): unregister, unless this process moved on. */
        pthread_mutex_lock(&r->lock);
        if (e->live && e->version == known) {
            old = entry_kill(r, e, known);
            changed = 1;
        }
        pthread_mutex_unlock(&r->lock);
        pd_adapter_release(old);
        return changed;
    }
    if (clean && (m.deleted ? any_below : n_versions > KEEP_VERSIONS))
        versions_prune(r, name, m.deleted ? newest : 0); /* a crash between rename and prune */
    if (m.deleted) {
        pthread_mutex_lock(&r->lock);
        entry *x = table_get(r, name);
        if (x && newest > x->version) {
            changed = x->live;
            old = entry_kill(r, x, newest);
        }
        pthread_mutex_unlock(&r->lock);
        pd_adapter_release(old);
        meta_clear(&m);
        return changed;
    }
    if (newest == failed) { meta_clear(&m); return 0; }
    if (!r->budget || resident) {
        char msg[512] = "";
        pd_status st = version_load(r, name, newest, m.files, m.labels_json, &a, msg, sizeof msg);
        if (st && !status_is_final(st)) {
            /* a read error, or the version pruned meanwhile: the next scan tries again */
            fprintf(stderr, "peftd: registry: %s version %d: %s (will retry)\n", name, newest, msg);
            meta_clear(&m);
            return 0;
        }
        if (st) {
            fprintf(stderr, "peftd: registry: %s version %d does not load: %s%s\n", name, newest, msg,
                    known_live ? " (the previous version stays current)" : " (skipped)");
            pthread_mutex_lock(&r->lock);
            entry *x = table_get(r, name);
            if (x && newest > x->version) {
                fail_clear(x);
                x->fail_version = newest;
                x->fail_st = st;
                x->fail_msg = strdup(msg);
                if (!x->live) x->version = newest; /* a new name: stays unregistered */
            }
            pthread_mutex_unlock(&r->lock);
            meta_clear(&m);
            return 0;
        }
    }
    pthread_mutex_lock(&r->lock);
    if (a) r->loads++;
    entry *x = table_get(r, name);
    if (x && newest > x->version) {
        old = entry_install(r, x, newest, a, &m);
        if (a) evict_over_budget(r, x);
        a = NULL;
        changed = 1;
    }
    pthread_mutex_unlock(&r->lock);
    pd_adapter_release(old);
    pd_adapter_release(a);
    meta_clear(&m);
    return changed;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Re-reads every name directory (and unregisters names whose directory vanished).
 * caller holds reg->sync_lock */
static int full_scan(pd_registry *r) {
    double t0 = pd_now();
    DIR *d = opendir(r->dir);
    if (!d) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int oom = 0;
    while ((de = readdir(d))) {
        if (!pd_registry_valid_name(de->d_name)) continue; /* dot entries: .changes, strays */
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) { oom = 1; break; }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name))) { oom = 1; break; }
        n++;
    }
    closedir(d);
    int changes = 0;
    for (size_t i = 0; i < n; i++) changes += sync_name(r, names[i], 1);
    if (!oom) {
        /* Names registered here whose directory is not in the listing. */
        if (n > 1) qsort(names, n, sizeof *names, cmp_str);
        char (*gone)[NAME_CAP] = NULL;
        size_t ng = 0, gcap = 0;
        pthread_mutex_lock(&r->lock);
        for (size_t b = 0; b < r->nbucket; b++)
            for (entry *e = r->bucket[b]; e; e = e->hnext) {
                const char *key = e->name;
                if (!e->live || (n && bsearch(&key, names, n, sizeof *names, cmp_str))) continue;
                if (ng == gcap) {
                    size_t nc = gcap ? gcap * 2 : 16;
                    char (*ngone)[NAME_CAP] = realloc(gone, nc * sizeof *ngone);
                    if (!ngone) continue;
                    gone = ngone;
                    gcap = nc;
                }
                memcpy(gone[ng++], e->name, NAME_CAP);
            }
        pthread_mutex_unlock(&r->lock);
        for (size_t i = 0; i < ng; i++) changes += sync_name(r, gone[i], 0);
        free(gone);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    double t = pd_now();
    r->full_secs = t - t0;
    r->last_full = t;
    return changes;
}

/* Where the change log stands now (so what is appended from here on is read next time).
 * caller holds reg->sync_lock */
static void log_mark(pd_registry *r) {
    char path[PATH_CAP];
    struct stat sb;
    if (pd_path_join(path, sizeof path, r->dir, LOG_NAME) == 0 && stat(path, &sb) == 0) {
        r->log_dev = sb.st_dev;
        r->log_ino = sb.st_ino;
        r->log_off = sb.st_size;
    } else {
        r->log_dev = 0;
        r->log_ino = 0;
        r->log_off = 0;
    }
}

int pd_registry_sync(pd_registry *r) {
    if (!r || !r->dir) return 0;
    pthread_mutex_lock(&r->sync_lock);
    /* A full scan reads every name directory (10,000 READDIRs on NFS): it is a safety net for
     * lost log lines, so it never takes more than 1/FULL_SCAN_SHARE of the time. */
    double every = r->full_secs * FULL_SCAN_SHARE > FULL_SCAN_EVERY ? r->full_secs * FULL_SCAN_SHARE : FULL_SCAN_EVERY;
    int full = pd_now() - r->last_full >= every;
    char path[PATH_CAP];
    char **names = NULL;
    int nn = 0, cap = 0;
    if (!full && pd_path_join(path, sizeof path, r->dir, LOG_NAME) == 0) {
        /* open (not stat) so NFS revalidates the attributes (close-to-open consistency) */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        if (fd < 0) {
            full = r->log_ino != 0 || errno != ENOENT; /* the log vanished: re-scan once */
        } else if (fstat(fd, &sb) != 0 || sb.st_ino != r->log_ino || sb.st_dev != r->log_dev ||
                   sb.st_size < r->log_off) {
            full = 1;
        } else if (sb.st_size > r->log_off) {
            size_t want = (size_t)(sb.st_size - r->log_off);
            if (want > LOG_ROTATE_BYTES * 2) want = LOG_ROTATE_BYTES * 2;
            char *buf = malloc(want + 1);
            ssize_t got = buf ? pread(fd, buf, want, r->log_off) : -1;
            if (got <= 0) {
                full = 1;
            } else {
                /* whole lines only; a line being written is read next time */
                char *end = memrchr(buf, '\n', (size_t)got);
                for (char *p = buf; end && p < end && !full;) {
                    char *nl = memchr(p, '\n', (size_t)(end - p + 1));
                    *nl = 0;
                    char *sp = strchr(p, ' ');
                    if (sp) *sp = 0;
                    if (!pd_registry_valid_name(p)) { full = 1; break; } /* torn line */
                    if (nn == cap) {
                        int c2 = cap ? cap * 2 : 16;
                        char **n2 = realloc(names, (size_t)c2 * sizeof *n2);
                        if (!n2) { full = 1; break; }
                        names = n2;
                        cap = c2;
                    }
                    if (!(names[nn] = strdup(p))) { full = 1; break; }
                    nn++;
                    p = nl + 1;
                }
                if (end && !full) r->log_off += (off_t)(end - buf + 1);
            }
            free(buf);
        }
        if (fd >= 0) close(fd);
    }
    int changes = 0;
    if (full) {
        log_mark(r);
        changes = full_scan(r);
    } else {
        if (nn > 1) qsort(names, (size_t)nn, sizeof *names, cmp_str);
        for (int i = 0; i < nn; i++)
            if (i == 0 || strcmp(names[i], names[i - 1])) changes += sync_name(r, names[i], 0);
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    pthread_mutex_unlock(&r->sync_lock);
    return changes;
}

/* ==== Public API ==== */

int pd_registry_valid_name(const char *name) {
    if (!name || !name[0] || name[0] == '.') return 0; /* also rules out "." and ".." */
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= 64) return 0;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

void pd_adapter_info_clear(pd_adapter_info *i) {
    if (!i) return;
    pd_strv_free(i->labels, i->num_labels);
    memset(i, 0, sizeof *i);
}

/* info_fill's fields that need no allocation (the labels stay NULL). */
static void info_fill_fixed(pd_adapter_info *i, const char *name, int v, const meta *m, int resident) {
    memset(i, 0, sizeof *i);
    snprintf(i->name, sizeof i->name, "%s", name);
    i->version = v;
    i->method = m->method;
    i->task = m->task;
    i->params = m->params;
    i->bytes = m->bytes;
    i->resident = resident;
    i->created_at = m->created_at;
    i->updated_at = m->updated_at;
}

static pd_status info_fill(pd_adapter_info *i, const char *name, int v, const meta *m, int resident) {
    info_fill_fixed(i, name, v, m, resident);
    if (m->num_labels > 0) {
        if (!(i->labels = pd_strv_dup(m->labels, m->num_labels))) return PD_ERR_NOMEM;
        i->num_labels = m->num_labels;
    }
    return PD_OK;
}

pd_status pd_registry_open(const pd_model *base, const char *data_dir, size_t max_resident_bytes, pd_registry **out,
                           char *err, size_t errlen) {
    *out = NULL;
    if (!base) return pd_err(err, errlen, PD_ERR_INVALID, "registry: no base model");
    pd_registry *r = calloc(1, sizeof *r);
    if (!r) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    r->base = base;
    r->budget = max_resident_bytes;
    r->lru.next = r->lru.prev = &r->lru;
    r->nbucket = 1024;
    if (!(r->bucket = calloc(r->nbucket, sizeof *r->bucket))) { free(r); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->sync_lock, NULL);
    pthread_cond_init(&r->load_done, NULL);
    if (!data_dir) {
        *out = r;
        return PD_OK;
    }
    /* room for /<name>/.trash-<version>-<pid>-<rand>/<file> */
    if (strlen(data_dir) > PATH_CAP - 256) {
        pd_registry_free(r);
        return pd_err(err, errlen, PD_ERR_INVALID, "data dir path too long");
    }
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
        pd_status st = pd_err(err, errlen, PD_ERR_IO, "%s: cannot create: %s", data_dir, strerror(errno));
        pd_registry_free(r);
        return st;
    }
    DIR *d = opendir(data_dir);
    if (!d) {
        pd_status st = pd_err(err, errlen, PD_ERR_IO, "%s: cannot read: %s", data_dir, strerror(errno));
        pd_registry_free(r);
        return st;
    }
    closedir(d);
    if (!(r->dir = strdup(data_dir))) { pd_registry_free(r); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
    pthread_mutex_lock(&r->sync_lock);
    log_mark(r);
    full_scan(r);
    pthread_mutex_unlock(&r->sync_lock);
    *out = r;
    return PD_OK;
}

void pd_registry_free(pd_registry *r) {
    if (!r) return;
    for (size_t b = 0; r->bucket && b < r->nbucket; b++)
        for (entry *e = r->bucket[b], *n; e; e = n) {
            n = e->hnext;
            pd_adapter_release(e->a);
            meta_clear(&e->m);
            free(e->fail_msg);
            free(e);
        }
    free(r->bucket);
    free(r->dir);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->sync_lock);
    pthread_cond_destroy(&r->load_done);
    free(r);
}

/* pd_registry_get, and pd_registry_get_cached when !may_load: a version that must be read from
 * disk first (or that another thread is reading) is left alone and *out stays NULL. */
static pd_status get(pd_registry *r, const char *name, int may_load, pd_adapter **out, int *version, char *err, size_t errlen) {
    *out = NULL;
    if (version) *version = 0;
    if (!pd_registry_valid_name(name)) return pd_err(err, errlen, PD_ERR_INVALID, "invalid adapter name");
    int resynced = 0;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        entry *e = table_find(r, name);
        if (!e || !e->live) {
            pthread_mutex_unlock(&r->lock);
            return pd_err(err, errlen, PD_ERR_NOT_FOUND, "adapter \"%s\" not found", name);
        }
        if (e->a) {
            pd_adapter_retain(e->a);
            *out = e->a;
            if (version) *version = e->version;
            if (r->lru.next != e) {
                lru_unlink(e);
                lru_push_front(r, e);
            }
            pthread_mutex_unlock(&r->lock);
            return PD_OK;
        }
        if (e->fail_version == e->version) {
            pd_status st = pd_err(err, errlen, e->fail_st, "%s", e->fail_msg ? e->fail_msg : "adapter does not load");
            pthread_mutex_unlock(&r->lock);
            return st;
        }
        if (!may_load) {
            pthread_mutex_unlock(&r->lock);
            return PD_OK;
        }
        if (e->loading) { /* another get loads it: wait rather than load a second copy */
            pthread_cond_wait(&r->load_done, &r->lock);
            continue;
        }
        PD_ASSERT(r->dir); /* without a data dir every live version is resident */
        int v = e->version;
        unsigned files = e->m.files;
        char *lj = e->m.labels_json ? strdup(e->m.labels_json) : NULL;
        if (e->m.labels_json && !lj) {
            pthread_mutex_unlock(&r->lock);
            return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        }
        e->loading = 1;
        pthread_mutex_unlock(&r->lock);

        char msg[512] = "";
        pd_adapter *a = NULL;
        pd_status st = version_load(r, name, v, files, lj, &a, msg, sizeof msg);
        free(lj);

        pthread_mutex_lock(&r->lock);
        if (!st) r->loads++; /* every load from disk counts, kept or not */
        e->loading = 0;
        pthread_cond_broadcast(&r->load_done);
        if (st) {
            if (e->version != v || !e->live) continue; /* replaced meanwhile: try the new one */
            if (st == PD_ERR_NOT_FOUND && !resynced) {
                /* pruned or deleted by another replica: look at the disk once more */
                resynced = 1;
                pthread_mutex_unlock(&r->lock);
                sync_name(r, name, 0);
                pthread_mutex_lock(&r->lock);
                continue;
            }
            if (status_is_final(st)) {
                fail_clear(e);
                e->fail_version = v;
                e->fail_st = st;
                e->fail_msg = strdup(msg);
            }
            pthread_mutex_unlock(&r->lock);
            return pd_err(err, errlen, st, "%s", msg);
        }
        if (e->live && e->version == v && !e->a) {
            entry_set_resident(r, e, a);
            evict_over_budget(r, e);
            continue; /* hands it out above */
        }
        /* Superseded while loading: drop this copy (never shared, so this frees it). */
        pd_adapter_release(a);
    }
}

pd_status pd_registry_get(pd_registry *r, const char *name, pd_adapter **out, int *version, char *err, size_t errlen) {
    return get(r, name, 1, out, version, err, errlen);
}

pd_status pd_registry_get_cached(pd_registry *r, const char *name, pd_adapter **out, int *version, char *err, size_t errlen) {
    return get(r, name, 0, out, version, err, errlen);
}

/* Publishes adapter a (one reference, taken over) as the next version of name. f: the upload
 * (written byte for byte), or NULL to write a with pd_adapter_save_dir. */
static pd_status publish(pd_registry *r, const char *name, pd_adapter *a, const pd_adapter_files *f, int *created,
                         pd_adapter_info *info, char *err, size_t errlen) {
    meta m;
    if (meta_from_adapter(a, f ? f->labels : NULL, f ? f->labels_len : 0, !f, &m)) {
        pd_adapter_release(a);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    /* The answer's labels are copied before the version is written: once it is, publishing
     * has happened and must not fail for want of memory (test_allocfail). */
    char **labels = NULL;
    if (info && m.num_labels > 0 && !(labels = pd_strv_dup(m.labels, m.num_labels))) {
        pd_adapter_release(a);
        meta_clear(&m);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    int n_labels = labels ? m.num_labels : 0;
    int v = 0;
    pthread_mutex_lock(&r->lock);
    entry *e0 = table_find(r, name);
    int known = e0 ? e0->version : 0, was_live = e0 && e0->live;
    pthread_mutex_unlock(&r->lock);
    if (r->dir) {
        pd_status st = version_write(r, name, known, f ? W_UPLOAD : W_SAVE, f, a, &m, &v, err, errlen);
        if (st && !v) {
            pd_adapter_release(a);
            meta_clear(&m);
            pd_strv_free(labels, n_labels);
            return st;
        }
        /* Renamed into place but the final fsync failed: the version exists (other replicas may
         * serve it already), so it is served here too; a crash could still lose it. */
        if (st) fprintf(stderr, "peftd: registry: %s version %d: %s\n", name, v, err ? err : "fsync failed");
    } else {
        m.created_at = m.updated_at = wall_now();
        if (f) m.bytes = f->config_len + f->weights_len + f->head_config_len + f->head_weights_len;
        else m.bytes = pd_adapter_bytes(a);
    }

    pd_adapter *old = NULL;
    pd_status st = PD_OK;
    pthread_mutex_lock(&r->lock);
    entry *e = table_get(r, name);
    if (!e) {
        st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    } else {
        if (!r->dir) {
            v = e->version + 1;
            if (e->live) m.created_at = e->m.created_at;
        }
        if (v > e->version || (v == e->version && e->live && !e->a)) {
            old = entry_install(r, e, v, a, &m);
            a = NULL;
            evict_over_budget(r, e);
        }
        /* Ours is current, whoever installed it (a sync may have read it from disk first);
         * else a newer version (another thread or replica) already is, and ours stays on disk. */
        int ours = e->live && e->version == v;
        if (created) *created = ours && !was_live;
        if (info) {
            if (ours) info_fill_fixed(info, name, v, &e->m, e->a != NULL);
            else info_fill_fixed(info, name, v, &m, 0);
            info->labels = labels;
            info->num_labels = n_labels;
            labels = NULL;
        }
    }
    pthread_mutex_unlock(&r->lock);
    pd_adapter_release(old);
    pd_adapter_release(a);
    meta_clear(&m);
    pd_strv_free(labels, n_labels);
    if (st == PD_ERR_NOMEM) pd_err(err, errlen, st, "out of memory");
    if (r->dir) versions_prune(r, name, 0);
    return st;
}

/* The outputs cleared and the name checked, before either way of publishing. */
static pd_status publish_begin(const char *name, int *created, pd_adapter_info *info, char *err, size_t errlen) {
    if (created) *created = 0;
    if (info) memset(info, 0, sizeof *info);
    if (!pd_registry_valid_name(name))
        return pd_err(err, errlen, PD_ERR_INVALID, "invalid adapter name (" PD_ADAPTER_NAME_RULE ")");
    return PD_OK;
}

pd_status pd_registry_publish(pd_registry *r, const char *name, const pd_adapter_files *f, int *created,
                              pd_adapter_info *info, char *err, size_t errlen) {
    pd_status st = publish_begin(name, created, info, err, errlen);
    if (st) return st;
    if (!f) return pd_err(err, errlen, PD_ERR_INVALID, "no adapter files");
    pd_adapter *a = NULL;
    st = pd_adapter_load(r->base, f, &a, err, errlen); /* validates completely first */
    if (st) return st;
    return publish(r, name, a, f, created, info, err, errlen);
}

pd_status pd_registry_publish_adapter(pd_registry *r, const char *name, pd_adapter *a, int *created,
                                      pd_adapter_info *info, char *err, size_t errlen) {
    pd_status st = publish_begin(name, created, info, err, errlen);
    if (st) return st;
    if (!a) return pd_err(err, errlen, PD_ERR_INVALID, "no adapter");
    pd_adapter_retain(a); /* the registry's own reference; the caller keeps theirs */
    return publish(r, name, a, NULL, created, info, err, errlen);
}

pd_status pd_registry_delete(pd_registry *r, const char *name, char *err, size_t errlen) {
    if (!pd_registry_valid_name(name)) return pd_err(err, errlen, PD_ERR_INVALID, "invalid adapter name");
    pthread_mutex_lock(&r->lock);
    entry *e = table_find(r, name);
    int live = e && e->live, known = e ? e->version : 0;
    pthread_mutex_unlock(&r->lock);
    if (!live) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "adapter \"%s\" not found", name);
    int t = 0;
    if (r->dir) {
        meta m = {0};
        m.deleted = 1;
        pd_status st = version_write(r, name, known, W_TOMBSTONE, NULL, NULL, &m, &t, err, errlen);
        meta_clear(&m);
        if (st && !t) return st; /* nothing written: the adapter stays live */
        if (st) fprintf(stderr, "peftd: registry: %s tombstone %d: %s\n", name, t, err ? err : "fsync failed");
    }
    pd_adapter *old = NULL;
    pthread_mutex_lock(&r->lock);
    /* With a data dir the tombstone is a version and only wins over lower ones; in memory the
     * delete applies to whatever is current. */
    if (r->dir ? t > e->version : e->live) old = entry_kill(r, e, r->dir ? t : e->version);
    pthread_mutex_unlock(&r->lock);
    pd_adapter_release(old); /* pinned requests keep their reference */
    if (r->dir) versions_prune(r, name, t);
    return PD_OK;
}

pd_status pd_registry_info(pd_registry *r, const char *name, pd_adapter_info *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!pd_registry_valid_name(name)) return pd_err(err, errlen, PD_ERR_INVALID, "invalid adapter name");
    pthread_mutex_lock(&r->lock);
    entry *e = table_find(r, name);
    pd_status st = !e || !e->live ? PD_ERR_NOT_FOUND : info_fill(out, e->name, e->version, &e->m, e->a != NULL);
    pthread_mutex_unlock(&r->lock);
    if (st == PD_ERR_NOT_FOUND) return pd_err(err, errlen, st, "adapter \"%s\" not found", name);
    if (st) return pd_err(err, errlen, st, "out of memory");
    return PD_OK;
}

static int cmp_info(const void *a, const void *b) {
    return strcmp(((const pd_adapter_info *)a)->name, ((const pd_adapter_info *)b)->name);
}

pd_status pd_registry_list(pd_registry *r, pd_adapter_info **out, int *n) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&r->lock);
    int cnt = r->registered;
    pd_adapter_info *l = calloc(cnt > 0 ? (size_t)cnt : 1, sizeof *l);
    int k = 0;
    pd_status st = l ? PD_OK : PD_ERR_NOMEM;
    for (size_t b = 0; !st && b < r->nbucket; b++)
        for (entry *e = r->bucket[b]; !st && e; e = e->hnext) {
            if (!e->live) continue;
            PD_ASSERT(k < cnt);
            st = info_fill(&l[k], e->name, e->version, &e->m, e->a != NULL);
            k++;
        }
    pthread_mutex_unlock(&r->lock);
    if (st) {
        pd_registry_list_free(l, k);
        return st;
    }
    qsort(l, (size_t)k, sizeof *l, cmp_info);
    *out = l;
    *n = k;
    return PD_OK;
}

pd_status pd_registry_versions(pd_registry *r, const char *name, pd_adapter_info **out, int *n, int *current, char *err,
                               size_t errlen) {
    *out = NULL;
    *n = 0;
    if (!pd_registry_valid_name(name)) return pd_err(err, errlen, PD_ERR_INVALID, "invalid adapter name");
    pthread_mutex_lock(&r->lock);
    entry *e = table_find(r, name);
    int live = e && e->live, cur = live ? e->version : 0, resident = live && e->a != NULL;
    pd_adapter_info one;
    pd_status st = live && !r->dir ? info_fill(&one, e->name, cur, &e->m, resident) : PD_OK;
    pthread_mutex_unlock(&r->lock);
    if (!live) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "adapter \"%s\" not found", name);
    if (st) return pd_err(err, errlen, st, "out of memory");
    *current = cur;
    if (!r->dir) { /* memory only: the current version is all there is */
        if (!(*out = malloc(sizeof one))) {
            pd_adapter_info_clear(&one);
            return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        }
        **out = one;
        *n = 1;
        return PD_OK;
    }
    char ndir[PATH_CAP];
    vlist vl;
    if (name_dir(r, name, ndir, sizeof ndir) || versions_list(ndir, 0, &vl) < 0)
        return pd_err(err, errlen, PD_ERR_IO, "cannot read the versions of \"%s\"", name);
    pd_adapter_info *l = calloc(vl.n > 0 ? (size_t)vl.n : 1, sizeof *l);
    int k = 0;
    for (int i = 0; l && i < vl.n; i++) { /* newest first; pruned versions and tombstones have no meta */
        meta m = {0};
        if (meta_load(r, name, vl.v[i], &m, NULL, 0) == PD_OK && !m.deleted) {
            if (info_fill(&l[k], name, vl.v[i], &m, resident && vl.v[i] == cur)) {
                meta_clear(&m);
                break;
            }
            k++;
        }
        meta_clear(&m);
    }
    free(vl.v);
    if (!l) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    *out = l;
    *n = k;
    return PD_OK;
}

void pd_registry_list_free(pd_adapter_info *l, int n) {
    if (!l) return;
    for (int i = 0; i < n; i++) pd_adapter_info_clear(&l[i]);
    free(l);
}

pd_status pd_registry_file_path(pd_registry *r, const char *name, const char *file, char *path, size_t cap,
                                char *err, size_t errlen) {
    if (cap) path[0] = 0;
    if (!pd_registry_valid_name(name)) return pd_err(err, errlen, PD_ERR_INVALID, "invalid adapter name");
    int k = file ? known_index(file) : -1; /* a fixed list: nothing from a request becomes a path */
    pthread_mutex_lock(&r->lock);
    entry *e = table_find(r, name);
    int live = e && e->live, v = e ? e->version : 0;
    unsigned files = e ? e->m.files : 0;
    pthread_mutex_unlock(&r->lock);
    if (!live) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "adapter \"%s\" not found", name);
    if (!r->dir) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "adapter \"%s\" has no files (memory-only registry)", name);
    if (k < 0 || !(files & (1u << k)))
        return pd_err(err, errlen, PD_ERR_NOT_FOUND, "adapter \"%s\" has no file \"%s\"", name, file ? file : "");
    int n = snprintf(path, cap, "%s/%s/%d/%s", r->dir, name, v, known_file[k]);
    if (n < 0 || (size_t)n >= cap) return pd_err(err, errlen, PD_ERR_INVALID, "path buffer too small");
    return PD_OK;
}

void pd_registry_stats_get(pd_registry *r, pd_registry_stats *s) {
    pthread_mutex_lock(&r->lock);
    s->registered = r->registered;
    s->resident = r->resident;
    s->resident_bytes = r->resident_bytes;
    s->swaps = r->swaps;
    s->loads = r->loads;
    s->evictions = r->evictions;
    pthread_mutex_unlock(&r->lock);
}
