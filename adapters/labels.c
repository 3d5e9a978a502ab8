/* labels.c - label names of an adapter's classification head, from wherever its files keep
 * them: an array of names, id2label ({"0": "neg"}) or label2id ({"neg": 0}); else the base
 * model's, else LABEL_i. See adapter_impl.h. */
#include "adapter_impl.h"

#include <string.h>

pd_status pd_labels_parse(const cJSON *v, int n, const char *what, char ***out, char *err, size_t errlen) {
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return PD_OK;
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
        return pd_err(err, errlen, PD_ERR_INVALID, "%s: labels must be an array of strings or an id2label/label2id object", what);
    int cnt = cJSON_GetArraySize(v);
    if (cnt != n)
        return pd_err(err, errlen, PD_ERR_INVALID, "%s has %d labels but the classifier has %d outputs", what, cnt, n);
    char **l = calloc((size_t)(n ? n : 1), sizeof(char *));
    if (!l) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const cJSON *it;
    int i = 0;
    pd_status st = PD_OK;
    cJSON_ArrayForEach(it, v) {
        const char *name = NULL;
        long id = i;
        if (cJSON_IsArray(v)) {
            if (!cJSON_IsString(it)) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label %d is not a string", what, i); break; }
            name = it->valuestring;
        } else if (cJSON_IsString(it)) { /* id2label: {"0": "neg"} */
            char *e = NULL;
            id = strtol(it->string, &e, 10);
            name = it->valuestring;
            if (!*it->string || *e) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: id2label key \"%s\" is not an integer", what, it->string); break; }
        } else if (cJSON_IsNumber(it)) { /* label2id: {"neg": 0} */
            id = (long)it->valuedouble;
            name = it->string;
            if ((double)id != it->valuedouble) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label2id value of \"%s\" is not an integer", what, it->string); break; }
        } else {
            st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label entries must be strings (id2label) or integers (label2id)", what);
            break;
        }
        if (id < 0 || id >= n || l[id]) { st = pd_err(err, errlen, PD_ERR_INVALID, "%s: label ids must cover 0..%d exactly once", what, n - 1); break; }
        if (!(l[id] = strdup(name))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); break; }
        i++;
    }
    if (st) { pd_strv_free(l, n); return st; }
    *out = l;
    return PD_OK;
}

pd_status pd_adapter_set_labels(pd_adapter *a, int n, const cJSON *from_config, const char *config_what,
                                const pd_adapter_files *f, char *err, size_t errlen) {
    char **l = NULL;
    pd_status st;
    if (f && f->labels && f->labels_len) {
        cJSON *v = NULL;
        char jerr[160];
        if ((st = pd_json_parse(f->labels, f->labels_len, &v, jerr, sizeof jerr)))
            return pd_err(err, errlen, st == PD_ERR_NOMEM ? st : PD_ERR_INVALID, "labels: %s", jerr);
        if (!cJSON_IsArray(v)) {
            cJSON_Delete(v);
            return pd_err(err, errlen, PD_ERR_INVALID, "labels: not a JSON array of strings");
        }
        st = pd_labels_parse(v, n, "labels", &l, err, errlen);
        cJSON_Delete(v);
        if (st) return st;
    }
    if (!l) {
        st = pd_labels_parse(from_config, n, config_what, &l, err, errlen);
        if (st) return st;
    }
    if (!l) {
        l = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!l) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        int base = a->cfg->labels && a->cfg->num_labels == n;
        for (int i = 0; i < n; i++) {
            char b[PD_LABEL_CAP];
            l[i] = strdup(pd_label_name(base ? a->cfg->labels[i] : NULL, i, b, sizeof b));
            if (!l[i]) { pd_strv_free(l, n); return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); }
        }
    }
    pd_strv_free(a->labels, a->num_labels);
    a->labels = l;
    a->num_labels = n;
    a->head.labels = l;
    a->head.num_labels = n;
    return PD_OK;
}
