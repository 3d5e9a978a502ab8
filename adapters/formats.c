/* formats.c - the table of adapter file formats and methods (adapter_impl.h): the object
 * (adapter.c) and training (trainable.c) reach each method's loader, training callbacks and
 * fresh-adapter builder through it, and no method file calls back into them. */
#include "adapter_impl.h"

#include "peft.h"

#include <string.h>

/* ==== PEFT ==== */

static int peft_detect(const cJSON *config) { return cJSON_GetObjectItemCaseSensitive(config, "peft_type") != NULL; }

/* PEFT keeps the head inside adapter_model.safetensors; peft_type names the method. */
static pd_status peft_load(pd_adapter *a, const pd_st_file *st, const pd_st_file *head_st, const pd_adapter_files *f, char *err,
                           size_t errlen) {
    if (head_st || (f->head_config && f->head_config_len))
        return pd_err(err, errlen, PD_ERR_INVALID,
                      "head_config.json / model_head.safetensors are AdapterHub files; a PEFT adapter keeps its head in adapter_model.safetensors");
    pd_status s = pd_peft_begin(a, err, errlen);
    if (s) return s;
    return pd_method_ops_of(a->method)->load(a, st, head_st, f, err, errlen);
}

static pd_status peft_save_config(const pd_adapter *a, cJSON **config, cJSON **head_config) {
    *head_config = NULL;
    return pd_peft_config_for_save(a, config);
}

static const char *const PEFT_FILES[] = {"adapter_config.json", "adapter_model.safetensors", NULL};

static const pd_format_ops PEFT = {"PEFT", PEFT_FILES, NULL, 1, peft_detect, peft_load, peft_save_config};

/* ==== AdapterHub ==== */

static pd_status hub_save_config(const pd_adapter *a, cJSON **config, cJSON **head_config) {
    *head_config = NULL;
    if (!(*config = cJSON_Duplicate(a->config, 1))) return PD_ERR_NOMEM;
    pd_status s = a->head_config ? pd_hub_head_config_for_save(a, head_config) : PD_OK;
    if (s) {
        cJSON_Delete(*config);
        *config = NULL;
    }
    return s;
}

static const char *const HUB_FILES[] = {"adapter_config.json", "adapter.safetensors", NULL};
static const char *const HUB_FILES_HEAD[] = {"adapter_config.json", "adapter.safetensors", "head_config.json",
                                             "model_head.safetensors", NULL};

static const pd_format_ops HUB = {"AdapterHub", HUB_FILES, HUB_FILES_HEAD, 0, pd_hub_detect, pd_hub_load, hub_save_config};

/* ==== The tables ==== */

static const pd_format_ops *const FORMATS[] = {&PEFT, &HUB};

static const pd_method_ops METHODS[] = {
    {PD_METHOD_LORA, "lora", &PEFT, pd_lora_load, pd_lora_train_init, pd_lora_params_changed, pd_lora_fresh, NULL,
     pd_lora_config_keys},
    {PD_METHOD_IA3, "ia3", &PEFT, pd_lora_load, pd_lora_train_init, pd_lora_params_changed, pd_lora_fresh, NULL, pd_ia3_config_keys},
    {PD_METHOD_PREFIX, "prefix_tuning", &PEFT, pd_prompt_load, pd_prompt_train_init, pd_prompt_params_changed, pd_prompt_fresh,
     pd_prompt_mlp, pd_prefix_config_keys},
    {PD_METHOD_PROMPT, "prompt_tuning", &PEFT, pd_prompt_load, pd_prompt_train_init, pd_prompt_params_changed, pd_prompt_fresh,
     pd_prompt_mlp, pd_prompt_config_keys},
    {PD_METHOD_BOTTLENECK, "bottleneck", &HUB, pd_hub_load, pd_hub_train_init, pd_hub_params_changed, pd_hub_fresh, NULL,
     pd_hub_config_keys},
};

#define N_METHODS (sizeof METHODS / sizeof METHODS[0])

const pd_format_ops *pd_format_detect(const cJSON *config) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (FORMATS[i]->detect(config)) return FORMATS[i];
    return NULL;
}

const pd_method_ops *pd_method_ops_of(pd_method m) {
    for (size_t i = 0; i < N_METHODS; i++)
        if (METHODS[i].method == m) return &METHODS[i];
    return NULL;
}

const char *pd_method_name(pd_method m) {
    const pd_method_ops *o = pd_method_ops_of(m);
    return o ? o->name : "?";
}

int pd_method_parse(const char *name, pd_method *out) {
    for (size_t i = 0; i < N_METHODS; i++)
        if (!strcmp(METHODS[i].name, name)) {
            *out = METHODS[i].method;
            return 0;
        }
    return -1;
}
