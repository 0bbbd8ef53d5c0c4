#!/usr/bin/env python3
"""Independent PyTorch reference for the Ouro forward pass, checked against `loopq forward`.

Written from ../shared/docs/ouro-architecture.md (sections 4 and 5), not from loopq's C++. It
generates small random checkpoints (random norm weights, GQA, a non-power-of-2 MLP, a gate),
runs `loopq forward --dump` on them and compares every per-loop state, every per-loop logit
tensor, the exit distribution and the exit-mode selection, at several loop counts.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import torch

torch.set_grad_enabled(False)

DTYPES = {"F32": (torch.float32, 4), "BF16": (torch.bfloat16, 2), "F16": (torch.float16, 2)}


def write_safetensors(path, tensors, dtype):
    """Minimal safetensors writer (the format spec: u64 header length, JSON header, data)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.to(DTYPES[dtype][0]).contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if DTYPES[dtype][1] == 2 else t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).reshape(info["shape"])
    return out


def make_checkpoint(cfg, seed, tied):
    g = torch.Generator().manual_seed(seed)
    d, V, F = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def rnd(*shape, std=0.15):
        return torch.randn(*shape, generator=g) * std

    def norm():
        return torch.rand(d, generator=g) + 0.5  # random, so a mis-wired norm cannot hide

    w = {"model.embed_tokens.weight": rnd(V, d, std=1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "input_layernorm_2.weight"] = norm()
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "post_attention_layernorm_2.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = rnd(H * hd, d)
        w[p + "self_attn.k_proj.weight"] = rnd(KV * hd, d)
        w[p + "self_attn.v_proj.weight"] = rnd(KV * hd, d)
        w[p + "self_attn.o_proj.weight"] = rnd(d, H * hd)
        w[p + "mlp.gate_proj.weight"] = rnd(F, d)
        w[p + "mlp.up_proj.weight"] = rnd(F, d)
        w[p + "mlp.down_proj.weight"] = rnd(d, F)
    w["model.norm.weight"] = norm()
    w["model.early_exit_gate.weight"] = rnd(1, d, std=0.5)
    w["model.early_exit_gate.bias"] = rnd(1, std=0.5)
    if not tied:
        w["lm_head.weight"] = rnd(V, d, std=0.3)
    return w


# ---- the reference forward pass, from the architecture document ----

def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def reference_forward(cfg, w, ids, loops):
    d, H, KV, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, N = cfg["rms_norm_eps"], cfg["num_hidden_layers"]
    S = len(ids)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    pos = torch.arange(S, dtype=torch.float32)
    ang = torch.outer(pos, inv_freq)
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [S, hd], same for every loop
    causal = torch.full((S, S), float("-inf")).triu(1)

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    states = []
    for _ in range(loops):
        for i in range(N):
            p = f"model.layers.{i}."
            h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(S, H, hd).transpose(0, 1)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(S, KV, hd).transpose(0, 1)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(S, KV, hd).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(H // KV, dim=0)  # repeat_kv: KV head j serves query heads j*G..
            v = v.repeat_interleave(H // KV, dim=0)
            att = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + causal, dim=-1) @ v
            o = att.transpose(0, 1).reshape(S, H * hd) @ w[p + "self_attn.o_proj.weight"].T
            x = x + rmsnorm(o, w[p + "input_layernorm_2.weight"], eps)
            m = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
            a = torch.nn.functional.silu(m @ w[p + "mlp.gate_proj.weight"].T) * (m @ w[p + "mlp.up_proj.weight"].T)
            x = x + rmsnorm(a @ w[p + "mlp.down_proj.weight"].T, w[p + "post_attention_layernorm_2.weight"], eps)
        x = rmsnorm(x, w["model.norm.weight"], eps)
        states.append(x)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    logits = [s @ head.T for s in states]
    lam = [torch.sigmoid(s @ w["model.early_exit_gate.weight"].T + w["model.early_exit_gate.bias"]).squeeze(-1) for s in states]
    probs, rem = [], torch.ones(S)
    for t in range(loops - 1):
        probs.append(lam[t] * rem)
        rem = rem * (1 - lam[t])
    probs.append(rem)
    return states, logits, torch.stack(probs)


def select(mode, logits, probs):
    if mode == "last":
        return logits[-1]
    if mode.startswith("step:"):
        return logits[int(mode[5:])]
    if mode == "expected":
        return sum(probs[t].unsqueeze(-1) * logits[t] for t in range(len(logits)))
    q = float(mode[4:])
    cdf = probs.cumsum(0)
    out = torch.empty_like(logits[-1])
    for s in range(cdf.shape[1]):
        t = next((t for t in range(cdf.shape[0]) if cdf[t, s] >= q), cdf.shape[0] - 1)
        out[s] = logits[t][s]
    return out


def rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loopq", required=True)
    args = ap.parse_args()
    failures = 0
    cases = [
        # (name, dtype, tied, kv heads, loops list, exit modes)
        ("f32-gqa", "F32", False, 2, [1, 2, 4, 6], ["last", "step:1", "expected", "cdf:0.5"]),
        ("bf16-mha-tied", "BF16", True, 4, [3], ["last", "cdf:0.9"]),
        ("f16-gqa", "F16", False, 1, [4], ["expected"]),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for ci, (name, dtype, tied, kv, loop_list, modes) in enumerate(cases):
            cfg = {
                "architectures": ["OuroForCausalLM"], "model_type": "ouro", "vocab_size": 97,
                "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": kv, "head_dim": 16, "intermediate_size": 88,
                "max_position_embeddings": 512, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
                "hidden_act": "silu", "tie_word_embeddings": tied, "total_ut_steps": 4,
                "early_exit_threshold": 1.0, "torch_dtype": "float32",
            }
            mdir = os.path.join(tmp, name)
            os.makedirs(mdir)
            with open(os.path.join(mdir, "config.json"), "w") as f:
                json.dump(cfg, f)
            w = make_checkpoint(cfg, seed=100 + ci, tied=tied)
            write_safetensors(os.path.join(mdir, "model.safetensors"), w, dtype)
            # The reference sees exactly the stored (rounded) weights, in fp32.
            w = {k: v.to(DTYPES[dtype][0]).float() for k, v in w.items()}
            ids = [int(i) for i in torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(ci))]
            for loops in loop_list:
                states, logits, probs = reference_forward(cfg, w, ids, loops)
                for mode in modes:
                    if mode.startswith("step:") and int(mode[5:]) >= loops:
                        continue
                    dump = os.path.join(tmp, f"{name}-{loops}-{mode.replace(':', '_')}.safetensors")
                    cmd = [args.loopq, "forward", "--model", mdir, "--ids", ",".join(map(str, ids)),
                           "--loops", str(loops), "--exit", mode, "--dump", dump, "--threads", "2"]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        print(f"FAIL {name} loops={loops} {mode}: loopq exited {r.returncode}: {r.stderr.strip()}")
                        failures += 1
                        continue
                    got = read_safetensors(dump)
                    checks = [("exit_prob", got["exit_prob"], probs), ("logits", got["logits"], logits[-1]),
                              ("logits.exit", got["logits.exit"], select(mode, logits, probs))]
                    for t in range(loops):
                        checks.append((f"state.loop{t + 1}", got[f"state.loop{t + 1}"], states[t]))
                        checks.append((f"logits.loop{t + 1}", got[f"logits.loop{t + 1}"], logits[t]))
                    worst = 0.0
                    for key, a, b in checks:
                        if a.shape != b.shape:
                            print(f"FAIL {name} loops={loops} {mode} {key}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
                            failures += 1
                            continue
                        e = rel_err(a, b)
                        worst = max(worst, e)
                        if e > 2e-5:
                            print(f"FAIL {name} loops={loops} {mode} {key}: rel err {e:.3e}")
                            failures += 1
                    print(f"ok   {name} loops={loops} exit={mode}: {len(checks)} tensors, worst rel err {worst:.2e}")
    passed = sum(len(c[4]) * len(c[5]) for c in cases)
    print(f"{'FAILED' if failures else 'PASSED'}: reference comparison, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
