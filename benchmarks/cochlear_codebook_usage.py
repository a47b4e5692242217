"""Usage of the WavCoch-sized cochlear codebook (speech_codebook) on real speech not used to train it.

Trains (once) and loads the 8192-code LFQ codebook, tokenizes the speech clips of a corpus and prints
codes used, entropy and perplexity per group (the shared clips; the naplib excerpts, ids stim*).

    python benchmarks/cochlear_codebook_usage.py CORPUS_DIR [CACHE_DIR]
"""
import sys
import time
import json
import numpy as np
from workbench.corpus import load_corpus
from workbench.audio import load_audio
from workbench.models.cochlear_lfq import speech_codebook
from probes.tokens.metrics import usage
t0 = time.time()
cb = speech_codebook(cache_dir=sys.argv[2] if len(sys.argv) > 2 else None)
print("codebook loaded", round(time.time()-t0, 1), "s; train codes used", getattr(cb, "train_codes_used_", None), flush=True)
corpus = load_corpus(sys.argv[1])
speech = [c for c in corpus if c.domain == "speech"]
shared = [c for c in speech if not c.id.startswith("stim")]
nap = [c for c in speech if c.id.startswith("stim")]
out = {}
for name, clips in [("shared speech (5 clips)", shared), ("naplib speech (10 x 62 s)", nap)]:
    t = time.time()
    ids = []
    secs = 0
    for c in clips:
        a = load_audio(corpus.audio_path(c), sr=16000)
        secs += len(a) / 16000
        ids.append(cb.encode(a))
        print(c.id, round(time.time() - t, 1), flush=True)
    ids = np.concatenate(ids)
    u = usage(ids).iloc[0].to_dict()
    out[name] = {**u, "seconds": round(secs, 1), "tokenize_s": round(time.time() - t, 1)}
    print(name, out[name], flush=True)
print(json.dumps(out, indent=1))
