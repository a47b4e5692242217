"""Benchmark: ``neuro.trf.fit_trf`` on one naplib-sized layer set with its circular-shift null, under
cProfile. Prints CPU/wall seconds and the top functions.

10 trials x 62 s at 100 Hz; a smooth 384-d "layer" reduced per fold by PCA-16; lags -100..500 ms
(976 columns); 10 channels; 5 folds x 7 alphas; ``DRAWS`` null draws (default 1000). Run with BLAS on
one thread, as ``neuro.sets.fit_sets`` does:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/neuro_one_set.py [DRAWS] [CHANNELS]
"""
import cProfile
import pstats
import sys
import time

import numpy as np
from scipy.ndimage import gaussian_filter1d

from neuro.trf import Block, fit_trf

draws = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
chans = int(sys.argv[2]) if len(sys.argv) > 2 else 10
rng = np.random.default_rng(0)
xs = [gaussian_filter1d(rng.normal(size=(6200, 384)), 3, axis=0) for _ in range(10)]
ys = [rng.normal(size=(6200, chans)) + 0.3 * np.roll(x[:, :chans], 10, axis=0) for x in xs]
pr = cProfile.Profile()
t, w = time.process_time(), time.time()
pr.enable()
res = fit_trf(xs, ys, 100, blocks=[Block(384, "pca", 16)], folds=5, n_draws=draws)
pr.disable()
print(f"cpu {time.process_time() - t:.2f} s wall {time.time() - w:.2f} s; unique alphas per fold",
      [len(np.unique(a)) for a in res.alpha_index], "p[:3]", res.p[:3])
pstats.Stats(pr).sort_stats("tottime").print_stats(14)
