#!/usr/bin/env python3
"""NumPy reference for rewardkit-shape, compared with the Rust results on random cases.

Every transform, combination and advantage estimator of `crates/rewardkit-shape` is written here
again, independently, from its formula (the papers and peers named in the Rust docs). Where the
Rust code relies on an algorithm for accuracy (stable centring of offset rewards), the reference
does not copy the algorithm: it computes the centred values exactly with `fractions.Fraction`
and rounds once, so it is the *truth* the Rust code is held to, not a twin of it.

Cases are random (fixed seed, or `--seed`), and include NaN, ±inf, offsets of 1e9 and 1e15,
groups of size 1 and 2, zero-variance groups and all-masked groups. Each case goes to the Rust
driver (`crates/rewardkit-shape/examples/shape_cases.rs`) as one JSON line with floats as IEEE bit
patterns; the results come back the same way.

Agreement: NaN exactly where the reference has NaN, equal infinities, and otherwise
`|rust - ref| <= 1e-12 * max(|ref|, scale)`, where `scale` is the magnitude of the outputs the
element is computed together with: the largest |output| of its group for group-centred
estimators and normalisations (an advantage of 1e-17 next to advantages of 1 is rounding noise of
the centring, not a relative quantity), the sum of the absolute values of the summands for sums,
and 0 (pure element-wise relative error) for element-wise transforms.

Usage: shape_reference.py --driver PATH_TO_shape_cases [--cases N] [--seed S]
"""

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from fractions import Fraction

import numpy as np

TOLERANCE = 1e-12
NAN = float("nan")
INF = float("inf")


# ---------------------------------------------------------------- encoding

def bits(values):
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


def unbits(values):
    return np.asarray(values, dtype=np.uint64).view(np.float64)


def fbits(x):
    return int(np.float64(x).view(np.uint64))


# ---------------------------------------------------------------- exact statistics

def exact_stats(x):
    """Exact mean and centred values (rounded once each) and the exact sum of squares."""
    fr = [Fraction(float(v)) for v in x]
    n = len(fr)
    mean = sum(fr) / n
    centred = np.array([float(f - mean) for f in fr])
    m2 = sum((f - mean) ** 2 for f in fr)
    return centred, m2, n


def std_of(m2, n, kind):
    div = n if kind == "population" else n - 1
    if div <= 0:
        return None
    return math.sqrt(float(m2 / div))


def pools(n, sizes):
    if sizes is None:
        return [np.arange(n)]
    out, start = [], 0
    for s in sizes:
        if s > 0:
            out.append(np.arange(start, start + s))
        start += s
    return out


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_sigmoid(x):
    return -np.logaddexp(0.0, -np.asarray(x, dtype=np.float64))


# ---------------------------------------------------------------- advantages

def ref_advantages(c):
    r = unbits(c["rewards"])
    n = len(r)
    finite = np.isfinite(r)
    est, filt = c["estimator"], c.get("filter", False)
    out = np.full(n, NAN)
    scale = np.zeros(n)
    summary = Counter(samples=n, masked=int((~finite).sum()))
    fates = []
    if c.get("ids") is not None:
        ids = np.array(c["ids"])
        groups = [np.flatnonzero(ids == g) for g in np.unique(ids)]
    else:
        groups = pools(n, c["sizes"])
    summary["groups"] = len(groups)
    for g in groups:
        idx = g[finite[g]]
        k = len(idx)
        if k == 0:
            fate = "empty"
            summary["empty_groups"] += 1
        elif k == 1:
            fate = "singleton"
            summary["singleton_groups"] += 1
        elif np.all(r[idx] == r[idx[0]]):
            fate = "zero"
            summary["zero_variance_groups"] += 1
            if filt:
                summary["filtered"] += k
        else:
            fate = "signal"
        fates.append((idx, fate))
    kept = lambda fate: not (filt and fate == "zero")

    if est in ("grpo", "dr_grpo", "rloo"):
        eps = float(unbits([c["epsilon"]])[0]) if est == "grpo" else 0.0
        scope = c.get("scale", "none") if est == "grpo" else "none"
        batch_std = None
        if scope == "batch" and finite.any():
            _, m2, nb = exact_stats(r[finite])
            batch_std = std_of(m2, nb, c["std"])
        for idx, fate in fates:
            if not kept(fate) or len(idx) == 0:
                continue
            if fate != "signal":
                out[idx] = 0.0
                continue
            k = len(idx)
            if est == "rloo":
                # The definition itself, exactly: R_i - (1/(K-1)) sum_{j != i} R_j.
                fr = [Fraction(float(v)) for v in r[idx]]
                total = sum(fr)
                out[idx] = [float(f - (total - f) / (k - 1)) for f in fr]
            else:
                centred, m2, _ = exact_stats(r[idx])
                if est == "dr_grpo" or scope == "none":
                    out[idx] = centred
                else:
                    s = std_of(m2, k, c["std"]) if scope == "group" else batch_std
                    d = s + eps
                    out[idx] = centred / d if d > 0 else 0.0
            scale[idx] = np.max(np.abs(out[idx]))
    else:  # reinforce_pp, reinforce_pp_baseline
        baseline = est == "reinforce_pp_baseline"
        eps = float(unbits([c["epsilon"]])[0])
        scores = np.full(n, NAN)
        for idx, fate in fates:
            if not kept(fate) or len(idx) == 0:
                continue
            if not baseline:
                scores[idx] = r[idx]
            elif fate == "singleton":
                out[idx] = 0.0
            else:
                scores[idx], _, _ = exact_stats(r[idx])
        use = np.isfinite(scores)
        if use.any():
            vals = scores[use]
            if np.all(vals == vals[0]):
                out[use] = 0.0
            else:
                centred, m2, nb = exact_stats(vals)
                s = std_of(m2, nb, c["std"])
                out[use] = centred / (s + eps) if s is not None and s + eps > 0 else 0.0
            scale[use] = np.max(np.abs(out[use]))
    return {"values": (out, scale), "summary": dict(summary)}


# ---------------------------------------------------------------- per-step

def ref_gae(c):
    r, v = unbits(c["rewards"]), unbits(c["values"])
    boot = None if c.get("bootstrap") is None else unbits(c["bootstrap"])
    gamma, lam = unbits([c["gamma"], c["lambda"]])
    adv, ret = np.full(len(r), NAN), np.full(len(r), NAN)
    scale = np.zeros(len(r))
    masked, start = 0, 0
    for e, length in enumerate(c["lengths"]):
        sl = slice(start, start + length)
        start += length
        last = 0.0 if boot is None else boot[e]
        if not (np.isfinite(r[sl]).all() and np.isfinite(v[sl]).all() and np.isfinite(last)):
            masked += 1
            continue
        nxt = np.append(v[sl][1:], last)
        delta = r[sl] + gamma * nxt - v[sl]
        # Closed form A_t = sum_k (gamma lambda)^k delta_{t+k}, as a triangular matrix product.
        t = np.arange(length)
        power = t[None, :] - t[:, None]
        weights = np.where(power >= 0, (gamma * lam) ** np.maximum(power, 0), 0.0)
        adv[sl] = weights @ delta
        ret[sl] = adv[sl] + v[sl]
        scale[sl] = np.abs(weights) @ np.abs(delta) + np.abs(v[sl])
    return {"advantages": (adv, scale), "returns": (ret, scale), "masked_episodes": masked}


def ref_potential_shaping(c):
    r, phi = unbits(c["rewards"]), unbits(c["potentials"])
    gamma = unbits([c["gamma"]])[0]
    out, start = np.empty(len(r)), 0
    scale = np.empty(len(r))
    for length in c["lengths"]:
        sl = slice(start, start + length)
        start += length
        nxt = np.append(phi[sl][1:], 0.0)
        with np.errstate(invalid="ignore"):
            out[sl] = r[sl] + gamma * nxt - phi[sl]
        scale[sl] = np.abs(r[sl]) + np.abs(gamma * nxt) + np.abs(phi[sl])
    return {"values": (out, scale)}


def ref_dense_turn(c):
    """Dense turn rewards (methods.md 16): increments of the env score, divided by the number of
    positive increments on a win or by max_total on a loss; sparse: the outcome on the last turn."""
    s = unbits(c["scores"])
    max_total = unbits([c["max_total"]])[0]
    out, scale, start = [], [], 0
    for length, won in zip(c["lengths"], c["won"]):
        turns = s[start:start + length]
        start += length
        if not np.isfinite(turns).all():
            out.extend([NAN] * length)
            scale.extend([0.0] * length)
            continue
        if c.get("sparse"):
            out.extend([0.0] * max(length - 1, 0) + ([1.0 if won else 0.0] if length else []))
            scale.extend([0.0] * length)
            continue
        prev = np.concatenate([[0.0], turns[:-1]])
        inc = turns - prev
        div = max(int((inc > 0).sum()), 1) if won else max_total
        out.extend(inc / div)
        # An increment of two large scores is exact to an ulp of the scores, not of itself.
        scale.extend((np.abs(turns) + np.abs(prev)) / div)
    return {"values": (np.array(out), np.array(scale))}


def ref_mixed_grained(c):
    seq, items = unbits(c["sequence"]), unbits(c["items"])
    ws, wi = unbits([c["w_seq"], c["w_item"]])
    out, scale, start, empty = [], [], 0, 0
    for total, length in zip(seq, c["lengths"]):
        row = items[start:start + length]
        start += length
        if length == 0:
            empty += 1
        for j, r in enumerate(row):
            if not (np.isfinite(r) and np.isfinite(total)):
                out.append(NAN)
                scale.append(0.0)
            elif j + 1 == length:
                out.append(wi * r + ws * total)
                scale.append(abs(wi * r) + abs(ws * total))
            else:
                out.append(wi * r)
                scale.append(0.0)
    return {"values": (np.array(out), np.array(scale)), "empty": empty}


def ref_count_decay(c):
    """ONI: r / N^beta with N the key's count including the whole current batch."""
    beta = unbits([c["beta"]])[0]
    counts = Counter()
    out = []
    for batch, keys in zip(c["batches"], c["keys"]):
        b = unbits(batch)
        counts.update(k for k in keys if k is not None)
        for x, k in zip(b, keys):
            n = counts[k] if k is not None else 0
            out.append(x / float(n) ** beta if np.isfinite(x) and n > 0 else NAN)
    return {"values": (np.array(out), np.zeros(len(out)))}


# ---------------------------------------------------------------- transforms

def normalize_pools(x, sizes, kind, eps):
    out, scale = np.full(len(x), NAN), np.zeros(len(x))
    for g in pools(len(x), sizes):
        idx = g[np.isfinite(x[g])]
        if len(idx) == 0:
            continue
        if len(idx) < 2 or np.all(x[idx] == x[idx[0]]):
            out[idx] = 0.0
            continue
        centred, m2, k = exact_stats(x[idx])
        d = std_of(m2, k, kind) + eps
        out[idx] = centred / d if d > 0 else 0.0
        scale[idx] = np.max(np.abs(out[idx]))
    return out, scale


def ref_normalize(c):
    x = unbits(c["values"])
    return {"values": normalize_pools(x, c.get("sizes"), c["std"], unbits([c["epsilon"]])[0])}


def ref_running(c):
    op = c["op"]
    history = np.array([])
    outs, scales = [], []
    for batch in c["batches"]:
        b = unbits(batch)
        history = np.concatenate([history, b[np.isfinite(b)]])
        out = np.full(len(b), NAN)
        fin = np.isfinite(b)
        scale = np.zeros(len(b))
        if op == "min_max_running":
            lo, hi = history.min(initial=INF), history.max(initial=-INF)
            out[fin] = (b[fin] - lo) / (hi - lo) if len(history) and hi > lo else 0.0
            scale[fin] = 1.0
        else:
            if len(history):
                mean = float(sum(Fraction(float(v)) for v in history) / len(history))
                _, m2, k = exact_stats(history)
                s = std_of(m2, k, c["std"])
            else:
                mean, s = None, None
            # The running mean is Welford's (rewardkit-core): good to a few ulps of |mean|.
            scale[:] = abs(mean) + (s or 0.0) if mean is not None else 0.0
            if op == "normalize_running":
                eps = unbits([c["epsilon"]])[0]
                if s is not None and s > 0:
                    out[fin] = (b[fin] - mean) / (s + eps)
                    scale[:] = scale / (s + eps)
                else:
                    out[fin] = 0.0
            else:  # clip_running
                out[fin] = np.clip(b[fin], mean - s, mean + s) if s is not None else b[fin]
        outs.append(out)
        scales.append(scale)
    return {"values": (np.concatenate(outs), np.concatenate(scales))}


def ref_elementwise(c):
    op = c["op"]
    if op == "dynamic_beta":
        m = unbits(c["margins"])
        beta, w, k = unbits([c["beta"], c["w"], c["k"]])
        with np.errstate(invalid="ignore", over="ignore"):
            out = np.where(np.isfinite(m), np.maximum(beta * (1 + w * (1 - np.exp(-k * m))), 1e-3), NAN)
        # 1 - e^{-k m} loses relative precision for tiny k m; scale by beta * (1 + |w|).
        return {"values": (out, np.full(len(out), abs(beta) * (1 + abs(w))))}
    if op == "self_aligned_reward":
        out, scale = [], []
        for a, g in zip(c["answer"], c["answer_given_query"]):
            a, g = unbits(a), unbits(g)
            if len(a) == 0 or len(g) == 0 or not (np.isfinite(a).all() and np.isfinite(g).all()):
                out.append(NAN)
                scale.append(0.0)
                continue
            ma, mq = math.fsum(a) / len(a), math.fsum(g) / len(g)
            # (ppl(a) - ppl(a|q)) / ppl(a) = 1 - exp(ma - mq); the means carry ~1 ulp of their
            # magnitude, which bounds the accuracy of any evaluation: scale accordingly.
            with np.errstate(over="ignore"):
                value = -math.expm1(ma - mq) if ma - mq < 700 else -INF
            out.append(min(max(value, -1.0), 1.0))
            scale.append((abs(ma) + abs(mq)) * (1.0 + abs(out[-1])))
        return {"values": (np.array(out), np.array(scale))}
    if op == "count_decayed":
        e, i = unbits(c["r_ext"]), unbits(c["r_int"])
        n = np.array(c["counts"], dtype=np.float64)
        ae, ai, beta = unbits([c["alpha_ext"], c["alpha_int"], c["beta"]])
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(np.isfinite(e) & np.isfinite(i) & (n > 0), ae * e + ai * i / n ** beta, NAN)
        return {"values": (out, np.abs(ae * e) + np.abs(ai * i / np.maximum(n, 1) ** beta))}
    if op == "clip":
        x = unbits(c["values"])
        lo, hi = unbits([c["low"], c["high"]])
        out = np.where(np.isfinite(x), np.clip(x, lo, hi), NAN)
    elif op == "ceiling":
        x = unbits(c["values"])
        out = np.where(np.isfinite(x), np.minimum(x, unbits([c["ceiling"]])[0]), NAN)
    elif op == "min_max":
        x = unbits(c["values"])
        out = np.full(len(x), NAN)
        for g in pools(len(x), c.get("sizes")):
            idx = g[np.isfinite(x[g])]
            if len(idx):
                lo, hi = x[idx].min(), x[idx].max()
                out[idx] = (x[idx] - lo) / (hi - lo) if hi > lo else 0.0
    elif op == "par":
        r = unbits(c["rewards"])
        refs = unbits(c["references"]).reshape(len(r), c["m"])
        k = unbits([c["k"]])[0]
        out = np.full(len(r), NAN)
        for i in range(len(r)):
            good = refs[i][np.isfinite(refs[i])]
            if np.isfinite(r[i]) and len(good):
                out[i] = np.mean(sigmoid(k * (r[i] - good)))
    elif op == "log_sigmoid_centred":
        r, ref = unbits(c["rewards"]), unbits(c["references"])
        ok = np.isfinite(r) & np.isfinite(ref)
        with np.errstate(invalid="ignore"):
            out = np.where(ok, log_sigmoid(r - ref), NAN)
    elif op == "reference_quantile":
        x = unbits(c["values"])
        x = x[np.isfinite(x)]
        q = unbits([c["q"]])[0]
        if c.get("method") == "normal":
            # PAR: norm.ppf(q, mean, std) with the population std (stdlib's AS241 for the ppf).
            if len(x) == 0:
                out = np.array([NAN])
            else:
                _, m2, k = exact_stats(x)
                mean = float(sum(Fraction(float(v)) for v in x) / k)
                std = std_of(m2, k, "population")
                out = np.array([statistics.NormalDist(mean, std).inv_cdf(q) if std > 0 else mean])
        else:
            out = np.array([np.quantile(x, q) if len(x) else NAN])
    else:
        raise ValueError(op)
    return {"values": (out, np.zeros(len(out)))}


# ---------------------------------------------------------------- combinations

def ref_combination(c):
    op = c["op"]
    terms = np.array([unbits(t) for t in c["terms"]])
    ok = np.isfinite(terms).all(axis=0)
    n = terms.shape[1]
    scale = np.zeros(n)
    if op in ("weighted_sum", "sum_then_normalize", "normalize_then_sum"):
        w = unbits(c["weights"])
        pool_scales = None
        if op == "normalize_then_sum":
            normed, pool_scales = [], []
            for t in terms:
                v, sc = normalize_pools(t, c.get("sizes"), c["std"], unbits([c["epsilon"]])[0])
                normed.append(v)
                pool_scales.append(sc)
            terms = np.array(normed)
            ok = np.isfinite(terms).all(axis=0)
        products = w[:, None] * np.where(np.isfinite(terms), terms, 0.0)
        out = np.where(ok, products.sum(axis=0), NAN)
        scale = np.abs(products).sum(axis=0)
        if pool_scales is not None:
            # A normalised value is accurate relative to its pool's largest value, not itself.
            scale = (np.abs(w)[:, None] * np.array(pool_scales)).sum(axis=0)
        if op == "sum_then_normalize":
            out, scale = normalize_pools(out, c.get("sizes"), c["std"], unbits([c["epsilon"]])[0])
    elif op == "conjunction":
        refs = np.array([unbits(t) for t in c["references"]])
        ok = ok & np.isfinite(refs).all(axis=0)
        with np.errstate(invalid="ignore"):
            parts = log_sigmoid(np.where(ok, terms - refs, 0.0))
        out = np.where(ok, parts.sum(axis=0), NAN)
        scale = np.abs(parts).sum(axis=0)
    elif op == "minimum":
        out = np.where(ok, np.min(np.where(ok, terms, 0.0), axis=0), NAN)
    elif op == "product":
        out = np.where(ok, np.prod(np.where(ok, terms, 0.0), axis=0), NAN)
    else:
        raise ValueError(op)
    return {"values": (out, scale)}


def ref_gate(c):
    g, v = unbits(c["gate"]), unbits(c["value"])
    t, other = unbits([c["threshold"], c["otherwise"]])
    out = np.where(~np.isfinite(g), NAN, np.where(g >= t, np.where(np.isfinite(v), v, NAN), other))
    return {"values": (out, np.zeros(len(out)))}


def ref_hybrid(c):
    rule, model = unbits(c["rule"]), unbits(c["model"])
    w_rule, w_model = unbits([c["w_rule"], c["w_model"]])
    scored = np.array(c["scored"], dtype=bool)
    chosen = np.where(scored, rule, model)
    out = np.where(np.isfinite(chosen), np.where(scored, w_rule, w_model) * chosen, NAN)
    return {"values": (out, np.zeros(len(out)))}


def ref_lexicographic(c):
    rows = np.array([unbits(r) for r in c["rows"]])
    higher = np.array(c["higher_is_better"])
    if "sigma_mult" in c:
        sm = unbits([c["sigma_mult"]])[0]
        margins = []
        for k in range(rows.shape[1]):
            col = rows[:, k][np.isfinite(rows[:, k])]
            margins.append(0.0 if k == 0 else sm * (np.std(col) if len(col) else 0.0))
        margins = np.array(margins)
    else:
        margins = unbits(c["margins"])
    sign = np.where(higher, 1.0, -1.0)
    labels = []
    for i, j in c["pairs"]:
        a, b = rows[i], rows[j]
        label = 0
        if np.isfinite(a).all() and np.isfinite(b).all():
            for k in range(len(margins)):
                za, zb = sign[k] * a[k], sign[k] * b[k]
                if za > zb + margins[k]:
                    label = 1
                    break
                if zb > za + margins[k]:
                    label = -1
                    break
        labels.append(label)
    return {"labels": labels, "margins": (margins, np.zeros(len(margins)))}


def ref_oprl(c):
    """OPRL: GRPO of the outcome within the group + alpha * steps normalised over the group's
    pooled steps, both from exact statistics."""
    outcomes, steps = unbits(c["outcomes"]), unbits(c["steps"])
    alpha, eps = unbits([c["alpha"], c["epsilon"]])
    kind, lengths = c["std"], c["lengths"]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int) if lengths else []
    out = np.full(len(steps), NAN)
    scale = np.zeros(len(steps))
    for idx in pools(len(outcomes), c["sizes"]):
        fin = [i for i in idx if np.isfinite(outcomes[i])]
        episode = {}
        if len(fin) >= 2:
            centred, m2, nb = exact_stats(outcomes[fin])
            sd = std_of(m2, nb, kind)
            for i, cv in zip(fin, centred):
                episode[i] = 0.0 if m2 == 0 or sd is None or sd + eps == 0 else cv / (sd + eps)
        elif fin:
            episode[fin[0]] = 0.0
        pool = [t for i in idx for t in range(starts[i], starts[i] + lengths[i]) if np.isfinite(steps[t])]
        step_adv = {}
        if len(pool) >= 2:
            centred, m2, nb = exact_stats(steps[pool])
            sd = std_of(m2, nb, kind)
            for t, cv in zip(pool, centred):
                step_adv[t] = 0.0 if m2 == 0 or sd is None or sd + eps == 0 else cv / (sd + eps)
        else:
            step_adv = {t: 0.0 for t in pool}
        group_steps = []
        for i in idx:
            for t in range(starts[i], starts[i] + lengths[i]):
                if i in episode and t in step_adv:
                    out[t] = episode[i] + alpha * step_adv[t]
                    group_steps.append(t)
        if group_steps:
            # Each part is exact to an ulp of its own size, so the scale is the parts' magnitude.
            parts = max(abs(v) for v in episode.values()) + abs(alpha) * max(
                [abs(step_adv[t]) for t in group_steps] + [0.0])
            scale[group_steps] = parts
    return {"advantages": (out, scale)}


def ref_lexicographic_scores(c):
    """Net win rate within each group under the lexicographic comparator (a Borda count)."""
    factors = np.array([unbits(f) for f in c["factors"]])  # levels x samples
    sign = np.where(np.array(c["higher_is_better"]), 1.0, -1.0)
    margins = unbits(c["margins"])
    scores, start = [], 0
    out = np.full(factors.shape[1], NAN)
    for size in c["sizes"]:
        members = [s for s in range(start, start + size) if np.isfinite(factors[:, s]).all()]
        for i in members:
            net = 0
            for j in members:
                if j == i:
                    continue
                for k in range(len(margins)):
                    za, zb = sign[k] * factors[k, i], sign[k] * factors[k, j]
                    if za > zb + margins[k]:
                        net += 1
                        break
                    if zb > za + margins[k]:
                        net -= 1
                        break
            out[i] = net / (len(members) - 1) if len(members) > 1 else 0.0
        start += size
    return {"scores": (out, np.ones(len(out)))}


def ref_lagrange(c):
    theta = unbits(c["thresholds"])
    lr, momentum, mu0 = unbits([c["learning_rate"], c["momentum"], c["initial_mu"]])
    squash = c["squash"]
    lam = (lambda m: sigmoid(m)) if squash == "sigmoid" else np.tanh
    dlam = (lambda m: sigmoid(m) * (1 - sigmoid(m))) if squash == "sigmoid" else (lambda m: 1 - np.tanh(m) ** 2)
    mu = np.full(len(theta), mu0)
    buf = None
    trace = []
    for means in c["updates"]:
        grad = (unbits(means) - theta) * dlam(mu)
        buf = grad if buf is None else momentum * buf + grad  # torch.optim.SGD, dampening 0
        mu = mu - lr * buf
        trace.extend(lam(mu))
    lams = lam(mu)
    base = unbits(c["base"])
    terms = np.array([unbits(t) for t in c["terms"]])
    # N - sum(lambda) as sum(1 - lambda_i): 1 - sigmoid(mu) = sigmoid(-mu); 1 - tanh(mu) = 1 + tanh(-mu),
    # evaluated as exp-based 2/(1 + e^{2 mu}) (np.exp overflow to inf gives 0, the right limit).
    with np.errstate(over="ignore"):
        complement = sigmoid(-mu) if squash == "sigmoid" else 2.0 / (1.0 + np.exp(2.0 * mu))
    parts = np.vstack([complement.sum() * base, lams[:, None] * terms])
    ok = np.isfinite(parts).all(axis=0)
    combined = np.where(ok, parts.sum(axis=0), NAN)
    return {
        "multipliers": (np.array(trace), np.ones(len(trace))),
        "combined": (combined, np.abs(np.where(np.isfinite(parts), parts, 0)).sum(axis=0)),
    }


REFERENCE = {
    "advantages": ref_advantages,
    "gae": ref_gae,
    "potential_shaping": ref_potential_shaping,
    "dense_turn": ref_dense_turn,
    "mixed_grained": ref_mixed_grained,
    "count_decay_batches": ref_count_decay,
    "normalize": ref_normalize,
    "normalize_running": ref_running,
    "clip_running": ref_running,
    "min_max_running": ref_running,
    "clip": ref_elementwise,
    "ceiling": ref_elementwise,
    "min_max": ref_elementwise,
    "par": ref_elementwise,
    "log_sigmoid_centred": ref_elementwise,
    "reference_quantile": ref_elementwise,
    "dynamic_beta": ref_elementwise,
    "self_aligned_reward": ref_elementwise,
    "count_decayed": ref_elementwise,
    "weighted_sum": ref_combination,
    "sum_then_normalize": ref_combination,
    "normalize_then_sum": ref_combination,
    "conjunction": ref_combination,
    "minimum": ref_combination,
    "product": ref_combination,
    "gate": ref_gate,
    "hybrid": ref_hybrid,
    "lexicographic": ref_lexicographic,
    "lexicographic_scores": ref_lexicographic_scores,
    "oprl": ref_oprl,
    "lagrange": ref_lagrange,
}


# ---------------------------------------------------------------- random cases

class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)

    def value(self, offset=0.0, spread=None, special=0.08):
        rng = self.rng
        u = rng.random()
        if u < special:
            return rng.choice([NAN, INF, -INF])
        spread = spread if spread is not None else rng.choice([1e-3, 1.0, 1.0, 100.0])
        if u < special + 0.15:  # a discrete reward (0/1 correctness), ties are common
            return offset + rng.choice([0.0, 1.0])
        return offset + rng.uniform(-spread, spread)

    def sizes(self):
        rng = self.rng
        return [rng.choice([1, 1, 2, 2, 3, 4, 5, 8, 16]) for _ in range(rng.randint(1, 8))]

    def offset(self):
        return self.rng.choice([0.0, 0.0, 1e9, 1e15, -1e9, 1e6])

    def values(self, n, offset=0.0, special=0.08):
        spread = self.rng.choice([1e-3, 1.0, 100.0])
        out = []
        mode = self.rng.random()
        for _ in range(n):
            out.append(self.value(offset, spread, special))
        if mode < 0.1:  # constant
            out = [offset + 0.5] * n
        return out

    def case(self, op):
        rng = self.rng
        c = {"op": op}
        if op == "advantages":
            sizes = self.sizes()
            n = sum(sizes)
            offset = self.offset()
            rewards = []
            for s in sizes:
                group = self.values(s, offset)
                if rng.random() < 0.1:
                    group = [offset + 1.0] * s  # zero variance
                if rng.random() < 0.05:
                    group = [NAN] * s  # all masked
                rewards.extend(group)
            c.update(rewards=bits(rewards), sizes=sizes,
                     estimator=rng.choice(["grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline"]),
                     scale=rng.choice(["group", "batch", "none"]), std=rng.choice(["population", "sample"]),
                     epsilon=fbits(rng.choice([0.0, 1e-6, 1e-4, 1e-8])), filter=rng.random() < 0.3)
            if rng.random() < 0.3:  # interleave the groups: same rewards per group, shuffled rows
                ids = [g for g, s in enumerate(sizes) for _ in range(s)]
                order = list(range(n))
                rng.shuffle(order)
                c["rewards"] = [c["rewards"][i] for i in order]
                c["ids"] = [ids[i] for i in order]
        elif op == "gae":
            lengths = [rng.randint(0, 12) for _ in range(rng.randint(1, 5))]
            n = sum(lengths)
            c.update(rewards=bits(self.values(n, 0.0, 0.02)), values=bits(self.values(n, 0.0, 0.02)),
                     lengths=lengths, gamma=fbits(rng.choice([1.0, 0.99, rng.random()])),
                     bootstrap=bits(self.values(len(lengths), 0.0, 0.02)) if rng.random() < 0.5 else None)
            c["lambda"] = fbits(rng.choice([1.0, 0.95, 0.0, rng.random()]))
        elif op == "potential_shaping":
            lengths = [rng.randint(0, 8) for _ in range(rng.randint(1, 4))]
            n = sum(lengths)
            c.update(rewards=bits(self.values(n)), potentials=bits(self.values(n, 0.0, 0.02)),
                     lengths=lengths, gamma=fbits(rng.choice([1.0, 0.9, rng.random()])))
        elif op == "dense_turn":
            lengths = [rng.randint(0, 8) for _ in range(rng.randint(1, 4))]
            offset = rng.choice([0.0, 0.0, 1e6, 1e9])
            scores = []
            for length in lengths:
                level = offset
                for _ in range(length):
                    level += rng.choice([0.0, 1.0, 1.0, -1.0, rng.uniform(-2, 3)])
                    scores.append(level if rng.random() > 0.03 else rng.choice([NAN, INF]))
            c.update(scores=bits(scores), lengths=lengths, won=[rng.random() < 0.5 for _ in lengths],
                     max_total=fbits(rng.choice([1.0, 4.0, 10.0, rng.uniform(0.5, 20)])),
                     sparse=rng.random() < 0.2)
        elif op == "mixed_grained":
            lengths = [rng.randint(0, 6) for _ in range(rng.randint(1, 6))]
            c.update(sequence=bits(self.values(len(lengths), 0.0, 0.05)),
                     items=bits(self.values(sum(lengths), 0.0, 0.05)), lengths=lengths,
                     w_seq=fbits(rng.choice([1.0, 0.5, rng.uniform(-2, 2)])),
                     w_item=fbits(rng.choice([1.0, 0.1, rng.uniform(-2, 2)])))
        elif op == "count_decay_batches":
            batches, keys = [], []
            for _ in range(rng.randint(1, 5)):
                n = rng.randint(0, 6)
                batches.append(bits(self.values(n, 0.0, 0.05)))
                keys.append([rng.choice(["a", "b", "c", "d", None]) for _ in range(n)])
            c.update(batches=batches, keys=keys, beta=fbits(rng.choice([3.0, 1.0, 0.5, 0.0])))
        elif op in ("normalize", "min_max"):
            sizes = self.sizes() if rng.random() < 0.5 else None
            n = sum(sizes) if sizes else rng.randint(0, 20)
            c.update(values=bits(self.values(n, self.offset())), sizes=sizes,
                     std=rng.choice(["population", "sample"]), epsilon=fbits(rng.choice([0.0, 1e-6])))
        elif op in ("normalize_running", "clip_running", "min_max_running"):
            c.update(batches=[bits(self.values(rng.randint(0, 6))) for _ in range(rng.randint(1, 5))],
                     std=rng.choice(["population", "sample"]), epsilon=fbits(rng.choice([0.0, 1e-6])))
        elif op in ("clip", "ceiling"):
            lo = rng.uniform(-2, 1)
            c.update(values=bits(self.values(rng.randint(0, 10))), low=fbits(lo), high=fbits(lo + rng.uniform(0, 2)),
                     ceiling=fbits(rng.uniform(-1, 1)))
        elif op == "par":
            n, m = rng.randint(0, 8), rng.choice([1, 3, 5, 10])
            offset = rng.choice([0.0, 1e6])
            c.update(rewards=bits(self.values(n, offset)), references=bits(self.values(n * m, offset)),
                     m=m, k=fbits(rng.choice([1.0, 2.0, 3.0, rng.uniform(0.01, 5)])))
        elif op == "log_sigmoid_centred":
            n = rng.randint(0, 10)
            c.update(rewards=bits([self.value(0.0, rng.choice([1.0, 50.0, 1000.0])) for _ in range(n)]),
                     references=bits([self.value(0.0, 10.0) for _ in range(n)]))
        elif op == "dynamic_beta":
            c.update(margins=bits(self.values(rng.randint(0, 10), 0.0, 0.05)),
                     beta=fbits(rng.choice([0.1, 0.5, 0.0])), w=fbits(rng.choice([0.1, 1.0, -0.5])),
                     k=fbits(rng.choice([1.0, 0.1, 5.0])))
        elif op == "self_aligned_reward":
            n = rng.randint(0, 6)
            lists = lambda: [bits([-rng.expovariate(1.0) for _ in range(rng.randint(0, 8))]) for _ in range(n)]
            c.update(answer=lists(), answer_given_query=lists())
            if n and rng.random() < 0.2:
                c["answer"][0] = bits([NAN, -1.0])
        elif op == "count_decayed":
            n = rng.randint(0, 10)
            c.update(r_ext=bits(self.values(n, 0.0, 0.05)), r_int=bits(self.values(n, 0.0, 0.05)),
                     counts=[rng.choice([0, 1, 2, 3, 10, 1000]) for _ in range(n)],
                     alpha_ext=fbits(rng.choice([0.1, 10.0])), alpha_int=fbits(0.4),
                     beta=fbits(rng.choice([3.0, 0.5, 1.0])))
        elif op == "reference_quantile":
            c.update(values=bits(self.values(rng.randint(0, 12), self.offset())),
                     q=fbits(rng.choice([0.0, 0.5, 0.85, 1.0, rng.random()])))
            if rng.random() < 0.5:
                c.update(method="normal", q=fbits(rng.choice([0.5, 0.85, 0.99, 1e-6, rng.uniform(0.01, 0.99)])))
        elif op in ("weighted_sum", "sum_then_normalize", "normalize_then_sum", "minimum", "product", "conjunction"):
            t = rng.randint(1, 4)
            sizes = self.sizes() if rng.random() < 0.5 else None
            n = sum(sizes) if sizes else rng.randint(0, 12)
            c.update(terms=[bits(self.values(n, 0.0, 0.03)) for _ in range(t)], sizes=sizes,
                     weights=bits([rng.uniform(-2, 2) for _ in range(t)]),
                     std=rng.choice(["population", "sample"]), epsilon=fbits(rng.choice([0.0, 1e-6])))
            if op == "conjunction":
                c["references"] = [bits(self.values(n, 0.0, 0.03)) for _ in range(t)]
        elif op == "gate":
            n = rng.randint(0, 10)
            c.update(gate=bits(self.values(n)), value=bits(self.values(n)),
                     threshold=fbits(rng.choice([0.0, 0.5, 1.0])), otherwise=fbits(rng.choice([0.0, -1.0])))
        elif op == "hybrid":
            n = rng.randint(0, 10)
            c.update(rule=bits(self.values(n)), model=bits(self.values(n)),
                     scored=[rng.random() < 0.6 for _ in range(n)],
                     w_rule=fbits(rng.uniform(-2, 2)), w_model=fbits(rng.choice([1.0, 0.5, rng.uniform(-2, 2)])))
        elif op == "lexicographic":
            levels, n = rng.randint(1, 4), rng.randint(1, 10)
            if rng.random() < 0.5:
                rows = [[rng.choice([0.0, 0.25, 0.5, 1.0, 2.0]) for _ in range(levels)] for _ in range(n)]
                c["margins"] = bits([rng.choice([0.0, 0.25, 0.5]) for _ in range(levels)])
            else:
                rows = [[self.value(0.0, 1.0, 0.03) for _ in range(levels)] for _ in range(n)]
                c["sigma_mult"] = fbits(rng.choice([0.0, 0.5, 1.0]))
            c.update(rows=[bits(r) for r in rows], higher_is_better=[rng.random() < 0.7 for _ in range(levels)],
                     pairs=[[rng.randrange(n), rng.randrange(n)] for _ in range(rng.randint(1, 12))])
        elif op == "oprl":
            sizes = self.sizes()
            n = sum(sizes)
            lengths = [rng.randint(0, 6) for _ in range(n)]
            offset = self.offset()
            c.update(sizes=sizes, lengths=lengths, outcomes=bits(self.values(n, offset)),
                     steps=bits(self.values(sum(lengths), 0.0, 0.05)),
                     alpha=fbits(rng.choice([1.0, 0.0, 0.5, rng.uniform(-2, 2)])),
                     std=rng.choice(["population", "sample"]),
                     epsilon=fbits(rng.choice([0.0, 1e-6, 1e-4])))
        elif op == "lexicographic_scores":
            levels, sizes = rng.randint(1, 3), self.sizes()
            n = sum(sizes)
            c.update(sizes=sizes, higher_is_better=[rng.random() < 0.7 for _ in range(levels)],
                     margins=bits([0.0] + [rng.choice([0.0, 0.25, 0.5]) for _ in range(levels - 1)]),
                     factors=[bits([rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, NAN]) if rng.random() < 0.5
                                    else self.value(0.0, 1.0, 0.03) for _ in range(n)])
                              for _ in range(levels)])
        elif op == "lagrange":
            k, n = rng.randint(1, 3), rng.randint(0, 6)
            theta = [rng.uniform(-1, 1) for _ in range(k)]
            c.update(thresholds=bits(theta), squash=rng.choice(["sigmoid", "tanh"]),
                     learning_rate=fbits(rng.choice([0.1, 0.5, 1.0])), momentum=fbits(rng.choice([0.0, 0.1, 0.9])),
                     initial_mu=fbits(rng.uniform(-2, 2)),
                     updates=[bits([rng.uniform(-2, 2) for _ in range(k)]) for _ in range(rng.randint(1, 10))],
                     base=bits(self.values(n, 0.0, 0.03)), terms=[bits(self.values(n, 0.0, 0.03)) for _ in range(k)])
        return c


# ---------------------------------------------------------------- comparison

def compare(expected, got, where):
    """Returns a list of problems; `expected` is (values, scale)."""
    values, scale = expected
    got = unbits(got)
    if len(got) != len(values):
        return [f"{where}: length {len(got)} != {len(values)}"], 0.0
    problems, worst = [], 0.0
    for i, (e, g, s) in enumerate(zip(values, got, scale)):
        if math.isnan(e) or math.isnan(g):
            if not (math.isnan(e) and math.isnan(g)):
                problems.append(f"{where}[{i}]: rust {g!r}, reference {e!r}")
            continue
        if math.isinf(e) or math.isinf(g):
            if e != g:
                problems.append(f"{where}[{i}]: rust {g!r}, reference {e!r}")
            continue
        bound = max(abs(e), s, 1e-300)
        err = abs(g - e) / bound
        worst = max(worst, err)
        if err > TOLERANCE:
            problems.append(f"{where}[{i}]: rust {g!r}, reference {e!r} (error {err:.2e} of scale)")
    return problems, worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--driver", required=True, help="path to the shape_cases example binary")
    parser.add_argument("--cases", type=int, default=300, help="cases per operation")
    parser.add_argument("--seed", type=int, default=20261128)
    args = parser.parse_args()

    gen = Gen(args.seed)
    cases = [gen.case(op) for op in REFERENCE for _ in range(args.cases)]
    payload = "".join(json.dumps(c) + "\n" for c in cases)
    run = subprocess.run([args.driver], input=payload, capture_output=True, text=True, check=True)
    results = [json.loads(line) for line in run.stdout.splitlines()]
    if len(results) != len(cases):
        sys.exit(f"the driver answered {len(results)} of {len(cases)} cases")

    failures = []
    worst = defaultdict(float)
    counts = Counter()
    specials = Counter()
    for number, (case, result) in enumerate(zip(cases, results)):
        op = case["op"]
        counts[op] += 1
        where = f"case {number} ({op})"
        if "error" in result:
            failures.append(f"{where}: the driver refused it: {result['error']}")
            continue
        expected = REFERENCE[op](case)
        for key, value in expected.items():
            if isinstance(value, tuple):
                problems, err = compare(value, result[key], f"{where}.{key}")
                worst[op] = max(worst[op], err)
                failures.extend(problems)
                specials["nan outputs"] += int(np.isnan(value[0]).sum())
            elif key == "summary":
                got = {k: v for k, v in result[key].items() if v}
                want = {k: v for k, v in value.items() if v}
                if got != want:
                    failures.append(f"{where}.summary: rust {got}, reference {want}")
                for k in ("singleton_groups", "zero_variance_groups", "masked", "empty_groups", "filtered"):
                    specials[k] += value.get(k, 0)
            elif result[key] != value:
                failures.append(f"{where}.{key}: rust {result[key]}, reference {value}")

    print(f"{len(cases)} cases, {len(REFERENCE)} operations, tolerance {TOLERANCE:g} (relative, see the docstring)")
    for op in REFERENCE:
        print(f"  {op:<22} {counts[op]:>5} cases   worst error {worst[op]:.2e}")
    print("  edge cases covered: " + ", ".join(f"{k} {v}" for k, v in sorted(specials.items())))
    if failures:
        print(f"{len(failures)} disagreements; the first 20:")
        for line in failures[:20]:
            print("  " + line)
        sys.exit(1)
    print("ok: rewardkit-shape agrees with the NumPy reference")


if __name__ == "__main__":
    main()
