#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/ from the embedded model, ../shared/data and a few
hand-made edge cases. Large real files are cut down (vocabularies to their first entries with
the merges among them) so seeds stay small; the ouro-tiny tokenizer.json is kept whole."""
import json, os, struct, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "shared")
data = os.path.join(shared, "data")
model = os.path.join(root, "models", "ouro-tiny")
out = os.path.join(root, "fuzz", "corpus")


def put(target, name, blob):
    if isinstance(blob, str):
        blob = blob.encode()
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(blob)


# ---- safetensors ----
def st(tensors, metadata=None, pad=True):
    header, body = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(payload)]}
        body += payload
    h = json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + body

with open(os.path.join(model, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(0)
    put("safetensors", "ouro-tiny-header-only", f.read(8 + n))
put("safetensors", "f32", st([("w", "F32", [2, 2], struct.pack("<4f", 1, -2, 3.5, float("inf")))]))
put("safetensors", "mixed", st([("a", "BF16", [3], b"\x80\x3f\x00\x40\xc0\x7f"),
                                ("b", "F16", [1, 2], b"\x00\x3c\x00\x7c"),
                                ("c", "I64", [], struct.pack("<q", -7)),
                                ("e", "F32", [0, 5], b""),
                                ("u", "U8", [3], b"\x01\x02\x03"),
                                ("f", "F64", [1], struct.pack("<d", 0.5))],
                               metadata={"format": "pt"}))
put("safetensors", "unpadded-unaligned", st([("x", "F32", [1], b"\x00\x00\x80\x3f")], pad=False))
put("safetensors", "bool-i8-i16-i32", st([("b", "BOOL", [2], b"\x00\x01"), ("i", "I8", [1], b"\xff"),
                                         ("j", "I16", [1], b"\x01\x00"), ("k", "I32", [1], b"\x01\x00\x00\x00")]))

# ---- hf_config ----
put("hf_config", "ouro-tiny.json", open(os.path.join(model, "config.json")).read())
put("hf_config", "ouro-1.4b.json", json.dumps({
    "architectures": ["OuroForCausalLM"], "model_type": "ouro", "hidden_size": 2048,
    "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 128,
    "intermediate_size": 5632, "vocab_size": 49152, "max_position_embeddings": 65536,
    "rope_theta": 1000000, "rope_scaling": None, "rms_norm_eps": 1e-06, "hidden_act": "silu",
    "tie_word_embeddings": False, "total_ut_steps": 4, "early_exit_threshold": 1.0,
    "use_sliding_window": False, "torch_dtype": "bfloat16", "eos_token_id": [0, 2], "bos_token_id": 1}))
put("hf_config", "minimal.json", '{"model_type": "ouro", "vocab_size": 300, "hidden_size": 32, '
    '"num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 44, "early_exit_step": 1}')

# ---- tokenizer.json: ouro-tiny whole, qwen3 cut down, hand-made small ones ----
sample = "Hello world! It's 2024, naïve café 中文 <|endoftext|>\n\t  x"
tiny_tok = open(os.path.join(model, "tokenizer.json")).read()
put("tokenizer_json", "ouro-tiny", tiny_tok.encode() + b"\0" + sample.encode())

def cut_bpe(doc, keep):
    m = doc["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    merges = [p for p in m["merges"]
              if (p if isinstance(p, list) else p.split(" ")) and
              all(t in vocab for t in (p if isinstance(p, list) else p.split(" "))) and
              "".join(p if isinstance(p, list) else p.split(" ")) in vocab]
    m["vocab"], m["merges"] = vocab, merges[:400]
    doc["added_tokens"] = [dict(t, id=keep + i) for i, t in enumerate(doc.get("added_tokens", [])[:4])]
    return doc

qwen = json.load(open(os.path.join(data, "tokenizers", "qwen3", "tokenizer.json")))
put("tokenizer_json", "qwen3-cut", json.dumps(cut_bpe(qwen, 600)).encode() + b"\0" + sample.encode())
small = cut_bpe(json.loads(tiny_tok), 300)
put("tokenizer_json", "ouro-tiny-cut", json.dumps(small))
alt = json.loads(json.dumps(small))
alt["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}]}
alt["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]}
alt["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}
alt["added_tokens"].append({"id": 299, "content": "[X]", "single_word": True, "lstrip": True,
                            "rstrip": True, "normalized": True, "special": False})
put("tokenizer_json", "sequence-digits-split", json.dumps(alt).encode() + b"\0" + b"a1 23 [X] b\xff")
wp = json.loads(json.dumps(small))
wp["model"].update({"unk_token": "<|endoftext|>", "fuse_unk": True, "byte_fallback": True,
                    "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>"})
wp["pre_tokenizer"] = None
wp["decoder"] = None
put("tokenizer_json", "unk-fallback-prefix", json.dumps(wp).encode() + b"\0" + b"\x00\x01zz")

# ---- gpt2: encoder.json + vocab.bpe cut to the first ids ----
enc = json.load(open(os.path.join(data, "tokenizers", "gpt2", "encoder.json")))
keep = {k: v for k, v in enc.items() if v < 400}
lines = open(os.path.join(data, "tokenizers", "gpt2", "vocab.bpe"), encoding="utf-8").read().split("\n")
merges = [lines[0]] + [l for l in lines[1:] if l and all(t in keep for t in l.split(" ")) and l.replace(" ", "") in keep]
put("gpt2", "gpt2-cut", json.dumps(keep).encode() + b"\0" + "\n".join(merges).encode() + b"\0" + sample.encode())
put("gpt2", "tiny", b'{"a": 0, "b": 1, "ab": 2, "\\u0120": 3}\0#version: 0.2\na b\n\0ab ab')

# ---- task_jsonl: the first documents of every shared task ----
tasks = os.path.join(data, "tasks")
for name in sorted(os.listdir(tasks)):
    if name.endswith(".jsonl"):
        with open(os.path.join(tasks, name), encoding="utf-8") as f:
            put("task_jsonl", name, "".join([f.readline(), f.readline()]))
put("task_jsonl", "crlf-blank-numeric-id", '{"task": "t", "id": 7, "requests": [{"context": "", '
    '"continuation": " a"}, {"context": "q", "continuation": "b"}], "gold": 1}\r\n\r\n  \n')

# ---- args: NUL-separated argv (after the subcommand) ----
for i, argv in enumerate([
        ["--model", "m", "--ids", "1,2, 3", "--loops=4", "--exit", "step:2"],
        ["--model=m", "-o", "out", "--seqlen", "2048", "--nsamples", "128", "--batch", "8", "pos"],
        ["--temperature", "0.7", "--top-p=0.9", "--max-new-tokens", "64", "--decode", "--help"],
        ["--ids", "-9223372036854775808,9223372036854775807", "--threads", "99999999999999999999"],
]):
    put("args", f"argv{i}", "\0".join(argv))

# ---- quantized_dir: config.json (with quantization_config), NUL, model.safetensors ----
# Whole loadable checkpoints of a 1-layer model small enough to stay a few KB, under the blocks
# QuantConfig::to_json writes, plus ouro-tiny's real layout cut to the safetensors header.
import random
rng = random.Random(0)


def qconfig(method="rtn", bits=4, sym=True, group=0, a_bits=16, a_mode="dynamic", sets=(0, 0, 0), extra=None):
    q = {"quant_method": "loopq", "format_version": 1, "method": method,
         "weights": {"bits": bits, "symmetric": sym, "group_size": group, "mse_clip_search": True,
                     "packing": "int4_low_nibble_even" if bits <= 4 else "int8"},
         "activations": {"bits": a_bits, "symmetric": True, "clip": 1.0, "group_size": 0, "mode": a_mode,
                         "granularity": "per_tensor_static" if a_mode == "static" else "per_token_dynamic",
                         "search_rows": 1024},
         "adaptations": {"act_param_sets": sets[0], "out_affine_sets": sets[1], "state_sets": sets[2],
                         "fit_windows": 8},
         "kv_cache": {"bits": 16, "symmetric": False, "group_size": 128, "clip": 0.95,
                      "qk_head_hadamard": False, "per_loop": True},
         "calibration": {"file": "", "nsamples": 0, "seqlen": 0, "seed": 0},
         "modules_not_quantized": ["embed_tokens", "norms", "lm_head", "early_exit_gate"],
         "quantize_seconds": 1.5}
    q.update(extra or {})
    return q


mini = {"model_type": "ouro", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 4, "intermediate_size": 8,
        "max_position_embeddings": 64, "total_ut_steps": 2, "tie_word_embeddings": True}
sites = [("self_attn.q_proj", 8, 8), ("self_attn.k_proj", 8, 8), ("self_attn.v_proj", 8, 8),
         ("self_attn.o_proj", 8, 8), ("mlp.gate_proj", 8, 8), ("mlp.up_proj", 8, 8), ("mlp.down_proj", 8, 8)]


def f32s(n, lo=0.01, hi=1.0):
    return struct.pack(f"<{n}f", *[rng.uniform(lo, hi) for _ in range(n)])


def quantized(cfg, q, layers=1):
    w, a = q["weights"], q["adaptations"]
    tensors = [("model.embed_tokens.weight", "F32", [cfg["vocab_size"], cfg["hidden_size"]],
                f32s(cfg["vocab_size"] * cfg["hidden_size"]))]
    for l in range(layers):
        for n in ("input_layernorm", "input_layernorm_2", "post_attention_layernorm", "post_attention_layernorm_2"):
            tensors.append((f"model.layers.{l}.{n}.weight", "F32", [cfg["hidden_size"]], f32s(cfg["hidden_size"], 0.5, 1.5)))
        for stem, out, inp in sites:
            s = f"model.layers.{l}.{stem}"
            groups = inp // w["group_size"] if w["group_size"] else 1
            lo, hi = (-(1 << (w["bits"] - 1)), (1 << (w["bits"] - 1)) - 1)
            if w["bits"] <= 4:
                codes = bytes(((rng.randint(lo, hi) & 15) | ((rng.randint(lo, hi) & 15) << 4)) for _ in range(out * inp // 2))
                tensors.append((s + ".qweight", "U8", [out, inp // 2], codes))
            else:
                tensors.append((s + ".qweight", "I8", [out, inp], bytes(rng.randint(lo, hi) & 255 for _ in range(out * inp))))
            tensors.append((s + ".scales", "F32", [out, groups], f32s(out * groups)))
            if not w["symmetric"]:
                tensors.append((s + ".zeros", "F32", [out, groups], f32s(out * groups, -2, 2)))
            if a["act_param_sets"]:
                name = ".loop_act_scale" if q["activations"]["mode"] == "static" else ".loop_act_clip"
                tensors.append((s + name, "F32", [a["act_param_sets"]], f32s(a["act_param_sets"], 0.5, 1.0)))
            if a["out_affine_sets"]:
                n = a["out_affine_sets"] * out
                tensors.append((s + ".loop_out_scale", "F16", [a["out_affine_sets"], out], struct.pack(f"<{n}e", *[1.0] * n)))
                tensors.append((s + ".loop_out_bias", "F16", [a["out_affine_sets"], out], struct.pack(f"<{n}e", *[0.0] * n)))
    tensors.append(("model.norm.weight", "F32", [cfg["hidden_size"]], f32s(cfg["hidden_size"], 0.5, 1.5)))
    if a["state_sets"]:
        for name in ("model.loop_state.weight", "model.loop_state.bias"):
            tensors.append((name, "F32", [a["state_sets"], cfg["hidden_size"]], f32s(a["state_sets"] * cfg["hidden_size"])))
    return st(tensors, metadata={"format": "pt", "quantization": "loopq"})


def qdir(name, q, cfg=mini):
    put("quantized_dir", name, json.dumps(dict(cfg, quantization_config=q), indent=1).encode() + b"\0" + quantized(cfg, q))


qdir("rtn-w4-sym", qconfig())
qdir("rtn-w4-asym-g4", qconfig(sym=False, group=4))
qdir("gptq-w8-g2", qconfig("gptq", bits=8, group=2, extra={"gptq": {
    "percdamp": 0.01, "block_size": 128, "act_order": True, "static_groups": True, "sequential": "layer",
    "trajectory": False, "loop_weights": []}}))
qdir("rtn-w3-asym", qconfig(bits=3, sym=False))
qdir("rtn-w6-sym", qconfig(bits=6))
qdir("loopq-static-affine-state", qconfig("loopq", a_bits=8, a_mode="static", sets=(2, 2, 2), extra={
    "loopq": {"components": "ABCD", "weights": "gptq", "smoothing": False, "smoothing_report": None},
    "selective_rotation": {"groups": ["attn_in", "o_in", "mlp_in", "down_in"],
                           "rotate": [[True, False, True, False]], "measurements": None},
    "rotation": {"seed": 7, "residual": "random_hadamard_online_at_q_k_v_gate_up_inputs"}}))
qdir("learned-static-clip", qconfig("learned-static", a_bits=4, sets=(1, 0, 0),
                                    extra={"learned_static": {"weights": "rtn"}}))
# ouro-tiny's real layout (4 layers, 256 wide) as written by `loopq quantize --method rtn
# --w-asym --group-size 64`, cut after the safetensors header.
tiny_cfg = json.load(open(os.path.join(model, "config.json")))
tq = qconfig(sym=False, group=64)
hdr = {}
off = 0
def add(name, dtype, shape):
    global off
    n = 1
    for x in shape:
        n *= x
    size = n * {"F32": 4, "U8": 1}[dtype]
    hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
    off += size
d, F, V = tiny_cfg["hidden_size"], tiny_cfg["intermediate_size"], tiny_cfg["vocab_size"]
add("model.embed_tokens.weight", "F32", [V, d])
for l in range(tiny_cfg["num_hidden_layers"]):
    for n in ("input_layernorm", "input_layernorm_2", "post_attention_layernorm", "post_attention_layernorm_2"):
        add(f"model.layers.{l}.{n}.weight", "F32", [d])
    for stem, rows, cols in [("self_attn.q_proj", d, d), ("self_attn.k_proj", d, d), ("self_attn.v_proj", d, d),
                           ("self_attn.o_proj", d, d), ("mlp.gate_proj", F, d), ("mlp.up_proj", F, d),
                           ("mlp.down_proj", d, F)]:
        s = f"model.layers.{l}.{stem}"
        add(s + ".qweight", "U8", [rows, cols // 2])
        add(s + ".scales", "F32", [rows, cols // 64])
        add(s + ".zeros", "F32", [rows, cols // 64])
add("model.norm.weight", "F32", [d])
add("lm_head.weight", "F32", [V, d])
h = json.dumps(dict(hdr, __metadata__={"format": "pt", "quantization": "loopq"})).encode()
put("quantized_dir", "ouro-tiny-rtn-header-only",
    json.dumps(dict(tiny_cfg, quantization_config=tq), indent=2).encode() + b"\0" + struct.pack("<Q", len(h)) + h)
