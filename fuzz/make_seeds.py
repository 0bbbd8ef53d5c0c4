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
