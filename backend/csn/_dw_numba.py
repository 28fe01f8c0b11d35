"""Numba CPU kernel for the weight gradient of a depthwise 3x3x3 convolution.

PyTorch's CPU depthwise-3D weight gradient runs at a few GFLOP/s; this kernel reads the
input and the output gradient once each, in channels-last order (C innermost, vectorised),
accumulating the 27 per-channel dot products in registers/L1. Imported lazily; when numba
is missing the caller falls back to ``torch.ops.aten.convolution_backward``.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def dw_weight_grad(x: np.ndarray, g: np.ndarray, st: int, sh: int, sw: int,
                   pt: int, ph: int, pw: int, nchunks: int) -> np.ndarray:  # pragma: no cover
    """x (N, T, H, W, C), g (N, To, Ho, Wo, C) (float32 or float64) -> (27, C) float64 gradient."""
    n_, t_, h_, w_, c_ = x.shape
    to_, ho_, wo_ = g.shape[1], g.shape[2], g.shape[3]
    rows = n_ * to_ * ho_
    part = np.zeros((nchunks, 27, c_), dtype=np.float64)
    for ch in prange(nchunks):
        r0 = rows * ch // nchunks
        r1 = rows * (ch + 1) // nchunks
        acc = np.zeros((27, c_), dtype=x.dtype)
        for r in range(r0, r1):
            n = r // (to_ * ho_)
            to = (r // ho_) % to_
            ho = r % ho_
            for kt in range(3):
                ti = to * st + kt - pt
                if ti < 0 or ti >= t_:
                    continue
                for kh in range(3):
                    hi = ho * sh + kh - ph
                    if hi < 0 or hi >= h_:
                        continue
                    for kw in range(3):
                        k = kt * 9 + kh * 3 + kw
                        # wo range with 0 <= wo*sw + kw - pw < w_
                        lo = 0
                        while lo * sw + kw - pw < 0:
                            lo += 1
                        hi_w = wo_
                        while hi_w > lo and (hi_w - 1) * sw + kw - pw >= w_:
                            hi_w -= 1
                        for wo in range(lo, hi_w):
                            wi = wo * sw + kw - pw
                            for c in range(c_):
                                acc[k, c] += x[n, ti, hi, wi, c] * g[n, to, ho, wo, c]
            # flush the row's partial sums into float64 (accuracy over long sums)
            for k in range(27):
                for c in range(c_):
                    part[ch, k, c] += acc[k, c]
                    acc[k, c] = 0.0
    return part.sum(axis=0)


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def dw_input_grad(g: np.ndarray, w: np.ndarray, t_: int, h_: int, w_: int, st: int, sh: int, sw: int,
                  pt: int, ph: int, pw: int) -> np.ndarray:  # pragma: no cover
    """g (N, To, Ho, Wo, C), w (27, C) -> input gradient (N, T, H, W, C), any stride.

    Each input voxel gathers only the taps whose output position exists (a stride-2 layer
    does 1/8 of the work of convolving a zero-dilated gradient)."""
    n_, to_, ho_, wo_, c_ = g.shape
    gx = np.empty((n_, t_, h_, w_, c_), dtype=g.dtype)
    for r in prange(n_ * t_ * h_):
        n = r // (t_ * h_)
        t = (r // h_) % t_
        h = r % h_
        row = gx[n, t, h]
        row[:] = 0.0
        for kt in range(3):
            tn = t + pt - kt
            if tn < 0 or tn % st != 0 or tn // st >= to_:
                continue
            to = tn // st
            for kh in range(3):
                hn = h + ph - kh
                if hn < 0 or hn % sh != 0 or hn // sh >= ho_:
                    continue
                ho = hn // sh
                for kw in range(3):
                    k = kt * 9 + kh * 3 + kw
                    wi0 = kw - pw
                    while wi0 < 0:
                        wi0 += sw
                    for wi in range(wi0, w_, sw):
                        wo = (wi + pw - kw) // sw
                        if wo >= wo_:
                            break
                        for c in range(c_):
                            row[wi, c] += w[k, c] * g[n, to, ho, wo, c]
    return gx
