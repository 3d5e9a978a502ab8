"""Independent PyTorch reference for the BERT-family encoders peftd serves.

Written from the Hugging Face `transformers` semantics (modeling_bert.py,
modeling_distilbert.py, modeling_roberta.py, read for behaviour only), out of
plain torch.nn modules, so that `model.state_dict()` keys are exactly the
Hugging Face checkpoint tensor names:

  bert.embeddings.{word,position,token_type}_embeddings.weight, .LayerNorm.*
  bert.encoder.layer.N.attention.self.{query,key,value}.*
  bert.encoder.layer.N.attention.output.{dense,LayerNorm}.*
  bert.encoder.layer.N.intermediate.dense.*, .output.{dense,LayerNorm}.*
  bert.pooler.dense.* (sequence classification only), classifier.*, qa_outputs.*
  distilbert.embeddings.{word,position}_embeddings.weight, .LayerNorm.*
  distilbert.transformer.layer.N.attention.{q,k,v,out}_lin.*
  distilbert.transformer.layer.N.{sa_layer_norm,output_layer_norm}.*
  distilbert.transformer.layer.N.ffn.{lin1,lin2}.*, pre_classifier.*, classifier.*
  roberta.* as bert.* (no pooler), classifier.dense.*, classifier.out_proj.*

Semantics:
  * BERT: embeddings = word + position + token_type, LayerNorm(eps=layer_norm_eps);
    post-LN layers; pooler = tanh(dense(h[:, 0])); classifier on the pooled output.
  * RoBERTa: same encoder; position ids = cumsum(input_ids != pad) * mask + pad,
    i.e. real tokens count from padding_idx + 1 and pad tokens sit at padding_idx;
    with inputs_embeds, positions are padding_idx + 1 ... sequentially. Head:
    out_proj(tanh(dense(h[:, 0]))).
  * DistilBERT: word + position only, every LayerNorm eps 1e-12 (hard-coded in
    HF, not in the config); q/k/v/out_lin attention, sa_layer_norm,
    ffn.lin1 -> activation -> ffn.lin2, output_layer_norm; head =
    classifier(relu(pre_classifier(h[:, 0]))).
  * QA heads: qa_outputs (hidden -> 2) on every token; [..., 0] = start, [..., 1] = end.
  * Attention mask: additive (1 - mask) * finfo(dtype).min on the key axis.
  * Activations: "gelu" (erf), "gelu_new" / "gelu_pytorch_tanh" / "gelu_fast"
    (tanh approximation), "relu", "silu".
  * Dropout modules exist (HF names) but the reference always runs in eval mode.

Extension points for PEFT (a later helper builds on these; keep them stable):
  * Every projection is an `nn.Linear` attribute with the HF name (query, key,
    value, attention.output.dense, intermediate.dense, output.dense; DistilBERT
    q_lin, k_lin, v_lin, out_lin, ffn.lin1, ffn.lin2), so LoRA can wrap/replace
    them in place (e.g. setattr(layer.attention.self, "query", LoraLinear(...))).
  * Prefix tuning: every model forward accepts `past_key_values`, a list with one
    (key, value) pair per layer, each (batch, heads, n_prefix, head_dim). They are
    concatenated in front of the keys/values; `attention_mask`, if given, must then
    cover n_prefix + seq_len (PEFT prepends ones), and positions are shifted by
    past_key_values_length (BERT: arange(P, P+T); RoBERTa: cumsum + P).
  * Prompt tuning: forward accepts `inputs_embeds` instead of `input_ids` (the
    caller prepends the virtual-token embeddings and extends the mask).
  * Bottleneck adapters (AdapterHub): the "dense -> dropout -> LayerNorm(h +
    residual)" sub-layer step is `SubLayerOutput.forward`, and the final
    "LayerNorm(h + residual)" part is the separate method
    `SubLayerOutput.residual_norm(h, input_tensor)`; DistilBERT has the same
    hooks as `TransformerBlock.attention_residual` and `.ffn_residual`. Override
    them (subclass or bind a new method) to insert an adapter.

The reference is meant to run in float64 (`model.double()`), with weights taken
from the stored checkpoint tensors and upcast, so results are comparable across
f32/f16/bf16 checkpoints.
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# ============================================================================
# Config
# ============================================================================


class Config:
    """Normalized view of a HF config.json for the three families."""

    def __init__(self, d):
        self.raw = dict(d)
        self.model_type = d["model_type"]
        self.architecture = (d.get("architectures") or [None])[0]
        if self.model_type == "distilbert":
            self.hidden_size = d["dim"]
            self.num_hidden_layers = d["n_layers"]
            self.num_attention_heads = d["n_heads"]
            self.intermediate_size = d["hidden_dim"]
            self.hidden_act = d.get("activation", "gelu")
            self.type_vocab_size = 0
            self.layer_norm_eps = 1e-12
            if d.get("sinusoidal_pos_embds"):
                raise NotImplementedError("sinusoidal_pos_embds=true")
        else:
            self.hidden_size = d["hidden_size"]
            self.num_hidden_layers = d["num_hidden_layers"]
            self.num_attention_heads = d["num_attention_heads"]
            self.intermediate_size = d["intermediate_size"]
            self.hidden_act = d.get("hidden_act", "gelu")
            self.type_vocab_size = d.get("type_vocab_size", 2)
            self.layer_norm_eps = d.get("layer_norm_eps", 1e-12)
            pet = d.get("position_embedding_type", "absolute")
            if pet != "absolute":
                raise NotImplementedError("position_embedding_type=" + pet)
        self.vocab_size = d["vocab_size"]
        self.max_position_embeddings = d["max_position_embeddings"]
        self.pad_token_id = d.get("pad_token_id", 0 if self.model_type != "roberta" else 1)
        id2label = d.get("id2label") or {"0": "LABEL_0", "1": "LABEL_1"}
        self.id2label = {int(k): v for k, v in id2label.items()}
        self.num_labels = len(self.id2label)

    @classmethod
    def load(cls, model_dir):
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            return cls(json.load(f))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def get_activation(name):
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return gelu_tanh
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise ValueError("unsupported activation %r" % name)


def additive_mask(attention_mask, dtype):
    """(B, K) 1/0 mask -> (B, 1, 1, K) additive mask for the scores."""
    m = attention_mask.to(dtype)[:, None, None, :]
    return (1.0 - m) * torch.finfo(dtype).min


def attend(q, k, v, mask_add, past_key_value=None):
    """Scaled dot-product attention on (B, H, T, D) tensors, prefix-aware."""
    if past_key_value is not None:
        pk, pv = past_key_value
        k = torch.cat([pk.to(k.dtype), k], dim=2)
        v = torch.cat([pv.to(v.dtype), v], dim=2)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask_add is not None:
        scores = scores + mask_add
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v)


def split_heads(x, heads):
    b, t, h = x.shape
    return x.view(b, t, heads, h // heads).transpose(1, 2)


def merge_heads(x):
    b, nh, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, nh * d)


# ============================================================================
# BERT / RoBERTa
# ============================================================================


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(0.1)

    def make_position_ids(self, input_ids, inputs_embeds, past_len):
        t = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        dev = (input_ids if input_ids is not None else inputs_embeds).device
        return torch.arange(past_len, past_len + t, device=dev)[None, :]

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, past_key_values_length=0):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        b, t = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = self.make_position_ids(input_ids, inputs_embeds, past_key_values_length)
        if token_type_ids is None:
            token_type_ids = torch.zeros(b, t, dtype=torch.long, device=inputs_embeds.device)
        e = (inputs_embeds + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(position_ids))
        return self.dropout(self.LayerNorm(e))


class RobertaEmbeddings(BertEmbeddings):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.padding_idx = cfg.pad_token_id

    def make_position_ids(self, input_ids, inputs_embeds, past_len):
        p = self.padding_idx
        if input_ids is not None:
            mask = (input_ids != p).long()
            return (torch.cumsum(mask, dim=1) + past_len) * mask + p
        t = inputs_embeds.shape[1]
        return torch.arange(p + 1, p + 1 + t, device=inputs_embeds.device)[None, :]


class BertSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden_size
        self.num_attention_heads = cfg.num_attention_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.dropout = nn.Dropout(0.1)

    def forward(self, hidden_states, mask_add=None, past_key_value=None):
        nh = self.num_attention_heads
        q = split_heads(self.query(hidden_states), nh)
        k = split_heads(self.key(hidden_states), nh)
        v = split_heads(self.value(hidden_states), nh)
        return merge_heads(attend(q, k, v, mask_add, past_key_value))


class SubLayerOutput(nn.Module):
    """HF BertSelfOutput / BertOutput: dense -> dropout -> LayerNorm(h + residual)."""

    def __init__(self, in_features, cfg):
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, hidden_states, input_tensor):
        h = self.dropout(self.dense(hidden_states))
        return self.residual_norm(h, input_tensor)

    def residual_norm(self, h, input_tensor):
        """Overridable: AdapterHub bottleneck adapters go here."""
        return self.LayerNorm(h + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = SubLayerOutput(cfg.hidden_size, cfg)

    def forward(self, hidden_states, mask_add=None, past_key_value=None):
        return self.output(self.self(hidden_states, mask_add, past_key_value), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = get_activation(cfg.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = SubLayerOutput(cfg.intermediate_size, cfg)

    def forward(self, hidden_states, mask_add=None, past_key_value=None):
        a = self.attention(hidden_states, mask_add, past_key_value)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, h, mask_add=None, past_key_values=None):
        for i, layer in enumerate(self.layer):
            h = layer(h, mask_add, past_key_values[i] if past_key_values is not None else None)
        return h


class BertPooler(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h):
        return torch.tanh(self.dense(h[:, 0]))


def _prepare(input_ids, inputs_embeds, attention_mask, past_key_values, dtype):
    x = input_ids if input_ids is not None else inputs_embeds
    b, t = x.shape[:2]
    past = past_key_values[0][0].shape[2] if past_key_values is not None else 0
    if attention_mask is None:
        attention_mask = torch.ones(b, past + t, dtype=torch.long, device=x.device)
    assert attention_mask.shape[1] == past + t, "attention_mask must cover prefix + tokens"
    return past, additive_mask(attention_mask, dtype)


class BertModel(nn.Module):
    embeddings_cls = BertEmbeddings

    def __init__(self, cfg, add_pooling_layer=True):
        super().__init__()
        self.embeddings = self.embeddings_cls(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, past_key_values=None):
        dtype = self.embeddings.word_embeddings.weight.dtype
        past, mask_add = _prepare(input_ids, inputs_embeds, attention_mask, past_key_values, dtype)
        h = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past)
        h = self.encoder(h, mask_add, past_key_values)
        return h, (self.pooler(h) if self.pooler is not None else None)


class RobertaModel(BertModel):
    embeddings_cls = RobertaEmbeddings


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.bert = BertModel(cfg, add_pooling_layer=True)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, **kw):
        _, pooled = self.bert(**kw)
        return self.classifier(self.dropout(pooled))


class BertForQuestionAnswering(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)

    def forward(self, **kw):
        h, _ = self.bert(**kw)
        lg = self.qa_outputs(h)
        return lg[..., 0], lg[..., 1]


class RobertaClassificationHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(0.1)
        self.out_proj = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, h):
        x = self.dropout(h[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class RobertaForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.roberta = RobertaModel(cfg, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(cfg)

    def forward(self, **kw):
        h, _ = self.roberta(**kw)
        return self.classifier(h)


class RobertaForQuestionAnswering(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.roberta = RobertaModel(cfg, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)

    def forward(self, **kw):
        h, _ = self.roberta(**kw)
        lg = self.qa_outputs(h)
        return lg[..., 0], lg[..., 1]


# ============================================================================
# DistilBERT
# ============================================================================


class DistilEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(0.1)

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None,
                past_key_values_length=0):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        t = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(past_key_values_length, past_key_values_length + t,
                                        device=inputs_embeds.device)[None, :]
        return self.dropout(self.LayerNorm(inputs_embeds + self.position_embeddings(position_ids)))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_size
        self.n_heads = cfg.num_attention_heads
        self.q_lin = nn.Linear(d, d)
        self.k_lin = nn.Linear(d, d)
        self.v_lin = nn.Linear(d, d)
        self.out_lin = nn.Linear(d, d)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, mask_add=None, past_key_value=None):
        q = split_heads(self.q_lin(x), self.n_heads)
        k = split_heads(self.k_lin(x), self.n_heads)
        v = split_heads(self.v_lin(x), self.n_heads)
        return self.out_lin(merge_heads(attend(q, k, v, mask_add, past_key_value)))


class FFN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.lin1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.lin2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.activation = get_activation(cfg.hidden_act)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.lin2(self.activation(self.lin1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = MultiHeadSelfAttention(cfg)
        self.sa_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.ffn = FFN(cfg)
        self.output_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)

    def forward(self, x, mask_add=None, past_key_value=None):
        sa = self.attention_residual(self.attention(x, mask_add, past_key_value), x)
        return self.ffn_residual(self.ffn(sa), sa)

    def attention_residual(self, sa_output, x):
        """Overridable: LayerNorm(out_lin output + residual)."""
        return self.sa_layer_norm(sa_output + x)

    def ffn_residual(self, ffn_output, sa_output):
        """Overridable: LayerNorm(lin2 output + residual)."""
        return self.output_layer_norm(ffn_output + sa_output)


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([TransformerBlock(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, h, mask_add=None, past_key_values=None):
        for i, layer in enumerate(self.layer):
            h = layer(h, mask_add, past_key_values[i] if past_key_values is not None else None)
        return h


class DistilBertModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = DistilEmbeddings(cfg)
        self.transformer = Transformer(cfg)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, past_key_values=None):
        # token_type_ids are accepted and ignored, as DistilBERT has none.
        dtype = self.embeddings.word_embeddings.weight.dtype
        past, mask_add = _prepare(input_ids, inputs_embeds, attention_mask, past_key_values, dtype)
        h = self.embeddings(input_ids, position_ids, inputs_embeds, past)
        return self.transformer(h, mask_add, past_key_values), None


class DistilBertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.distilbert = DistilBertModel(cfg)
        self.pre_classifier = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)
        self.dropout = nn.Dropout(0.2)

    def forward(self, **kw):
        h, _ = self.distilbert(**kw)
        x = F.relu(self.pre_classifier(h[:, 0]))
        return self.classifier(self.dropout(x))


class DistilBertForQuestionAnswering(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.distilbert = DistilBertModel(cfg)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)
        self.dropout = nn.Dropout(0.1)

    def forward(self, **kw):
        h, _ = self.distilbert(**kw)
        lg = self.qa_outputs(self.dropout(h))
        return lg[..., 0], lg[..., 1]


ARCHITECTURES = {
    "BertForSequenceClassification": BertForSequenceClassification,
    "BertForQuestionAnswering": BertForQuestionAnswering,
    "DistilBertForSequenceClassification": DistilBertForSequenceClassification,
    "DistilBertForQuestionAnswering": DistilBertForQuestionAnswering,
    "RobertaForSequenceClassification": RobertaForSequenceClassification,
    "RobertaForQuestionAnswering": RobertaForQuestionAnswering,
}

BASE_PREFIX = {"bert": "bert.", "distilbert": "distilbert.", "roberta": "roberta."}


def build(cfg):
    return ARCHITECTURES[cfg.architecture](cfg)


# ============================================================================
# Checkpoint loading (the rules the C loader is expected to follow too)
# ============================================================================


def read_checkpoint_tensors(model_dir):
    """model.safetensors, or a sharded model.safetensors.index.json. A pickle
    (pytorch_model.bin) is refused on purpose."""
    from safetensors_io import load_file
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(single):
        return load_file(single)[0]
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            t, _ = load_file(os.path.join(model_dir, shard))
            for k, v in t.items():
                assert wm.get(k) == shard, "tensor %s not mapped to %s" % (k, shard)
                out[k] = v
        assert set(out) == set(wm), "index and shards disagree"
        return out
    raise FileNotFoundError("no safetensors checkpoint in %s (pickles are refused)" % model_dir)


def canonical_names(tensors, model):
    """Map checkpoint names onto the model's: legacy LayerNorm gamma/beta ->
    weight/bias, add the base-model prefix when the checkpoint lacks it, drop
    tensors the model does not use (cls.* pretraining heads, position_ids
    buffers, pooler for heads without one)."""
    expected = set(model.state_dict().keys())
    prefix = next(p for p in BASE_PREFIX.values() if any(k.startswith(p) for k in expected))
    has_prefix = any(k.startswith(prefix) for k in tensors)
    out = {}
    for k, v in tensors.items():
        n = k
        if n.endswith(".gamma"):
            n = n[:-len(".gamma")] + ".weight"
        elif n.endswith(".beta"):
            n = n[:-len(".beta")] + ".bias"
        if not has_prefix and prefix + n in expected:
            n = prefix + n
        if n in expected:
            out[n] = v
    missing = expected - set(out)
    if missing:
        raise KeyError("checkpoint lacks %s" % sorted(missing))
    return out


def load_model(model_dir, dtype=torch.float64):
    """Build the model from config.json and load the stored tensors, upcast."""
    cfg = Config.load(model_dir)
    model = build(cfg).to(dtype)
    sd = canonical_names(read_checkpoint_tensors(model_dir), model)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
    return model.eval(), cfg
