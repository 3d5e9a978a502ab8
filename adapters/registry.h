/* registry.h - the adapter registry: name -> current immutable version, hot swap, persistence.
 *
 * A publish loads and validates the new version completely, writes its files under
 * DATA_DIR/<name>/<version>/ atomically (temporary directory, fsync, rename), then swaps it in
 * under the registry lock and drops the registry's reference to the old version; requests that
 * pinned the old version finish on it. Deleting works the same way. With a resident budget,
 * least-recently-used versions leave memory and are loaded again from disk on demand.
 * Several processes may share one DATA_DIR (replicas): pd_registry_sync picks up what others
 * published or deleted; a version number is claimed by renaming a complete temporary directory
 * to it (the rename fails if the number exists), so two writers never share a number.
 * docs/STORE.md describes the layout, crash safety and limits.
 *
 * Names match [A-Za-z0-9._-]{1,64} and do not start with '.' (PD_ADAPTER_NAME_RULE): never "."
 * or "..", and never one of DATA_DIR's own entries (.changes, .jobs); nothing else reaches a path.
 * Thread-safety: every function may be called from any thread. */
#ifndef PD_REGISTRY_H
#define PD_REGISTRY_H

#include "adapter.h"

typedef struct pd_registry pd_registry;

typedef struct pd_adapter_info {
    char name[65];
    int version;
    pd_method method;
    pd_task task;
    int num_labels;
    char **labels;       /* owned by the info; pd_adapter_info_clear frees */
    int64_t params;
    size_t bytes;        /* bytes of its files on disk (or in memory without a data dir) */
    int resident;
    double created_at;   /* unix seconds: first version */
    double updated_at;   /* unix seconds: this version */
} pd_adapter_info;

void pd_adapter_info_clear(pd_adapter_info *i);

/* data_dir NULL: memory only. max_resident_bytes 0: no limit (without a data_dir the budget is
 * ignored: nothing could be loaded again). Registers every adapter found in data_dir (the
 * newest complete version of each; abandoned temporary directories are removed). Without a
 * budget each is loaded now, and adapters that fail to load are skipped with a message on
 * stderr; with a budget only meta.json is read and a version loads on its first
 * pd_registry_get (which then returns any load error). Returns PD_OK or an error (unreadable
 * data_dir). */
pd_status pd_registry_open(const pd_model *base, const char *data_dir, size_t max_resident_bytes, pd_registry **out,
                           char *err, size_t errlen);
void pd_registry_free(pd_registry *r);

/* The name rule, for messages. */
#define PD_ADAPTER_NAME_RULE "1-64 of A-Z a-z 0-9 . _ -, not starting with ."

int pd_registry_valid_name(const char *name);

/* Pins the current version of name: *out gets a reference the caller releases with
 * pd_adapter_release. PD_ERR_NOT_FOUND for unknown names. */
pd_status pd_registry_get(pd_registry *r, const char *name, pd_adapter **out, int *version, char *err, size_t errlen);

/* pd_registry_get without reading from disk, for threads that must not block on it (HTTP
 * event loops): a resident version is pinned as by pd_registry_get; a version that must be
 * loaded first gives PD_OK with *out NULL (call pd_registry_get on a thread that may wait).
 * PD_ERR_NOT_FOUND for unknown names, or the error a version's earlier load attempt gave. */
pd_status pd_registry_get_cached(pd_registry *r, const char *name, pd_adapter **out, int *version, char *err, size_t errlen);

/* Publishes files as the next version of name. *created = 1 if the name was new. info (may be
 * NULL) gets the new version's description. */
pd_status pd_registry_publish(pd_registry *r, const char *name, const pd_adapter_files *f, int *created,
                              pd_adapter_info *info, char *err, size_t errlen);

/* Publishes an adapter built in memory (training): saves it with pd_adapter_save_dir. */
pd_status pd_registry_publish_adapter(pd_registry *r, const char *name, pd_adapter *a, int *created,
                                      pd_adapter_info *info, char *err, size_t errlen);

pd_status pd_registry_delete(pd_registry *r, const char *name, char *err, size_t errlen);

/* Describes one adapter / all adapters (sorted by name). pd_registry_list returns a malloc'd
 * array of *n infos; free with pd_registry_list_free. */
pd_status pd_registry_info(pd_registry *r, const char *name, pd_adapter_info *out, char *err, size_t errlen);
pd_status pd_registry_list(pd_registry *r, pd_adapter_info **out, int *n);
void pd_registry_list_free(pd_adapter_info *l, int n);

/* The versions of name kept on disk (the current one and up to two before it; older ones are
 * pruned), newest first, in *out (free with pd_registry_list_free); *current gets the version
 * requests use. Reads meta.json files: call it off the event loops. PD_ERR_NOT_FOUND for an
 * unknown or deleted name. */
pd_status pd_registry_versions(pd_registry *r, const char *name, pd_adapter_info **out, int *n, int *current, char *err,
                               size_t errlen);

/* Full path of a file of the current version (for downloads). PD_ERR_NOT_FOUND if the name,
 * or a file of that name, does not exist. file must be one of pd_adapter_file_names. */
pd_status pd_registry_file_path(pd_registry *r, const char *name, const char *file, char *path, size_t cap,
                                char *err, size_t errlen);

/* Re-reads data_dir for versions published or deleted by other processes. Cheap when nothing
 * changed. Returns the number of changes applied. */
int pd_registry_sync(pd_registry *r);

typedef struct pd_registry_stats {
    int registered, resident;
    size_t resident_bytes;
    uint64_t swaps, loads, evictions;
} pd_registry_stats;
void pd_registry_stats_get(pd_registry *r, pd_registry_stats *s);

#endif
