"""End-to-end A/B of row padding (session 10), in one process: every run is made twice, with the
measured plan as it is and with the same plan's padding ignored, in alternating order; the fastest
of 2 repeats per prompt counts. Output: docs/bench/padding_ab.txt.

    python docs/bench/padding_ab.py
"""
import functools, time, torch
torch.set_num_threads(2)
from specdec.integrations import projection as P
from specdec.integrations.hf import load_model
from specdec.defaults import default_target, default_draft
from specdec.bench.spec import build_method
from specdec.bench.prompts import load_spec_bench
from specdec.decoder import Decoder
FLAG = {"pad": True}
orig = P.FloatProjection.__call__
def call(self, x):
    if FLAG["pad"]:
        return orig(self, x)
    rows = x.shape[0]
    for bound, apply, prepared, pad in self._dispatch:
        if rows <= bound: break
    return apply(x, prepared, self.weight, self.bias)
P.FloatProjection.__call__ = call
target = load_model(default_target())
draft_loader = functools.lru_cache(maxsize=1)(lambda: load_model(default_draft()))
specs = ["target-only", "svip+draft:int8=true", "svip+ouroboros:int8=true"]
methods = [build_method(s, target, draft_loader) for s in specs]
enc = Decoder(target)
prompts = load_spec_bench(None, categories=["qa", "summarization", "math", "writing", "extraction"], per_category=3)
best = {}
ids0 = enc.encode(prompts[0].text, chat=True)
for m in methods: m.run(ids0, 16, 0.0, 0)  # warm-up
for k, p in enumerate(prompts):
    ids = enc.encode(p.text, chat=True)
    for rep in range(2):
        for m in methods:
            for pad in ((True, False) if (k + rep) % 2 == 0 else (False, True)):
                FLAG["pad"] = pad
                r = m.run(ids, 64, 0.0, rep)
                key = (m.name, pad, k)
                best[key] = min(best.get(key, (1e9, 0)), (r.seconds, len(r.ids)))
    print(k, p.category, flush=True)
for m in specs:
    for cat in ["all"] + sorted({p.category for p in prompts}):
        ks = [k for k, p in enumerate(prompts) if cat == "all" or p.category == cat]
        tp = sum(best[(m, True, k)][1] for k in ks) / sum(best[(m, True, k)][0] for k in ks)
        tu = sum(best[(m, False, k)][1] for k in ks) / sum(best[(m, False, k)][0] for k in ks)
        print(f"{m:28s} {cat:14s} padded {tp:.1f} tok/s unpadded {tu:.1f} ratio {tp/tu:.3f}")
print(P.gemm_report())
