"""Differential test and side-by-side timing: rewardkit's `math` verifier vs Math-Verify.

Usage (normally through bench/math_diff.sh, which builds the Rust side and the venv):

    python bench/math_diff.py DATA_DIR RUST_BIN OUT_DIR [--limit-gold N]

Pairs (gold, prediction):
  (a) GSM8K: all 5,276 model solutions of ../shared/data/gsm8k/example_model_solutions.jsonl;
      gold = the number on the last `A: N` line of `ground_truth`; also scored against the labels.
  (b) math-gold: every gold answer of ../shared/data/math-gold/*.jsonl against rewrites that are
      equivalent by construction (\\frac{a}{b} <-> \\dfrac ab <-> a/b <-> decimal, integers with
      separators or `.0`, reordered lists, the answer inside "The final answer is $...$", a
      scaled form 2(G)/2 in two spellings, `2(G)` and `2\\cdot(G)`) and against perturbed
      answers that are wrong by construction (an
      integer plus one, a numerator plus one, an element dropped, `+ 1` appended).
Every pair goes to both verifiers. Each disagreement is listed with both verdicts.

Math-Verify is called the documented way, `verify(parse(gold), parse(pred))`, one pair per call,
timed with perf_counter_ns around parse+parse+verify, single-threaded, on the main thread. The
Rust side times one `verify` call per pair the same way and keeps the fastest of 3 passes
(Math-Verify, at milliseconds per call, gets one pass; noise only ever adds time, so this
favours neither side's median much but removes preemption spikes from the Rust maximum).
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def gsm8k_pairs(path):
    pairs = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            gold = None
            for l in reversed(row["ground_truth"].splitlines()):
                if l.strip().startswith("A:"):
                    gold = l.strip()[2:].strip()
                    break
            for key in KEYS:
                pairs.append({"set": "gsm8k", "gold": gold, "pred": row[key]["solution"],
                              "label": row[key]["is_correct"], "kind": "label"})
    return pairs


def boxed(text):
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    depth, j = 0, i + len("\\boxed")
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1:k]
    return None


def gold_answers(data_dir):
    out = []
    for name in sorted(os.listdir(os.path.join(data_dir, "math-gold"))):
        with open(os.path.join(data_dir, "math-gold", name)) as f:
            for line in f:
                row = json.loads(line)
                if "final_answer" in row:
                    fa = row["final_answer"]
                    gold = fa[0] if isinstance(fa, list) and fa else None
                elif "answer" in row:
                    gold = str(row["answer"])
                else:
                    gold = boxed(row.get("solution", ""))
                if gold:
                    out.append((name.split(".")[0], gold.strip()))
    return out


FRAC = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
INT = re.compile(r"^-?\d+$")


def strip_dollars(g):
    g = g.strip()
    if g.startswith("$") and g.endswith("$") and len(g) > 1:
        g = g.strip("$").strip()
    return g


def terminating(a, b):
    d = b
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


PROSE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")


def is_maths(gold):
    """A gold answer that is one maths expression: no prose words outside LaTeX commands, no
    `$` inside, no infinity (rewrites of prose answers are not equivalent by construction)."""
    g = strip_dollars(gold)
    words = [w for w in PROSE.findall(re.sub(r"\\(text|mathrm|operatorname)\{[^}]*\}", "", g))]
    return "$" not in g and not words and "infty" not in g and len(g) < 200


# Relations and sets: `2 (x \\neq 5) / 2` or `2 \\{x \\mid x > 0\\} / 2` is not an equivalent
# rewrite of anything, so the scaled forms leave them out.
NOT_SCALABLE = ("\\neq", "\\ne ", "\\approx", "\\mid", "\\{", "\\leq", "\\geq", "\\le ",
                "\\ge ", "\\cup", "\\in ", "\\emptyset", "\\lt", "\\gt")


def rewrites(gold):
    """Equivalent forms of `gold` as (form, prediction) pairs; each must be judged equal."""
    g = strip_dollars(gold)
    if not is_maths(gold):
        return []
    out = [("phrase", f"The final answer is ${g}$.")]
    m = FRAC.match(g)
    if m:
        s, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        out.append(("slash", f"{s}{a}/{b}"))
        if a < 10 and b < 10:
            out.append(("dfrac", f"{s}\\dfrac{a}{b}"))
        if b != 0 and terminating(a, b):
            out.append(("decimal", ("-" if s else "") + repr(a / b)))
    elif INT.match(g):
        n = int(g)
        out.append(("point-zero", f"{n}.0"))
        if abs(n) >= 1000:
            out.append(("separators", f"{n:,}"))
    elif "," in g and not any(c in g for c in "()[]{}=\\"):
        parts = [p.strip() for p in g.split(",")]
        out.append(("reordered", ", ".join(reversed(parts))))
    if (not any(c in g for c in ",=<>") and "\\\\" not in g and "\\text" not in g
            and len(g) < 80 and not any(t in g + " " for t in NOT_SCALABLE)):
        # Two spellings of 2·G/2: Math-Verify reads `2(204)` (an integer before a parenthesised
        # number or fraction) as the mixed number 2 + 204, so `scaled` alone measures that
        # parse rule; `scaled-cdot` spells the product out and measures simplification.
        out.append(("scaled", f"\\frac{{2({g})}}{{2}}"))
        out.append(("scaled-cdot", f"\\frac{{2\\cdot({g})}}{{2}}"))
    return out


def perturbations(gold):
    """Wrong answers derived from `gold` (each must be judged not equal)."""
    g = strip_dollars(gold)
    if not is_maths(gold):
        return []
    m = FRAC.match(g)
    if m:
        s, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        return [f"{s}\\frac{{{a + 1}}}{{{b}}}"]
    if INT.match(g):
        return [str(int(g) + 1)]
    if "," in g and not any(c in g for c in "()[]{}=\\"):
        parts = [p.strip() for p in g.split(",")]
        return [", ".join(parts[:-1])] if len(parts) > 1 else []
    if not any(c in g for c in ",=<>") and "\\text" not in g and len(g) < 80:
        return [f"{g} + 1"]
    return []


def run_math_verify(pairs):
    from math_verify import parse, verify

    def wrap(s):
        return s if ("$" in s or "\\boxed" in s or "\\(" in s or "\\[" in s) else f"${s}$"

    times, results = [], []
    parse("$1$"), verify(parse("$1$"), parse("$1$"))  # import-time caches
    for p in pairs:
        start = time.perf_counter_ns()
        try:
            gold = parse(wrap(p["gold"]))
            pred = parse(p["pred"])
            ok = bool(verify(gold, pred))
        except Exception:  # noqa: BLE001 - a crash is a "not equal" for the peer
            ok = False
        times.append(time.perf_counter_ns() - start)
        results.append(ok)
    return results, times


def summary(ns):
    return {"median_us": statistics.median(ns) / 1e3, "mean_us": statistics.fmean(ns) / 1e3,
            "max_us": max(ns) / 1e3}


def main():
    data_dir, rust_bin, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    limit = None
    for a in sys.argv[4:]:
        if a.startswith("--limit-gold="):
            limit = int(a.split("=", 1)[1])
    pairs = gsm8k_pairs(os.path.join(data_dir, "gsm8k", "example_model_solutions.jsonl"))
    golds = gold_answers(data_dir)
    if limit:
        golds = golds[:limit]
    for source, g in golds:
        for form, r in rewrites(g):
            # A model writes maths inside delimiters; Math-Verify reads LaTeX only there.
            r = r if "$" in r else f"${r}$"
            pairs.append({"set": f"rewrite:{source}", "gold": g, "pred": r, "label": True,
                          "kind": "rewrite", "form": form})
        for w in perturbations(g):
            w = w if "$" in w else f"${w}$"
            pairs.append({"set": f"perturbed:{source}", "gold": g, "pred": w, "label": False,
                          "kind": "perturbed", "form": "perturbed"})
    print(f"== {len(pairs)} pairs", file=sys.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for p in pairs:
            f.write(json.dumps({"gold": p["gold"], "pred": p["pred"]}) + "\n")
        pairs_path = f.name
    load = {"rust_start": os.getloadavg()[0]}
    rust = subprocess.run([rust_bin, pairs_path, "3"], check=True, capture_output=True, text=True)
    load["rust_end"] = os.getloadavg()[0]
    rk = [json.loads(l) for l in rust.stdout.splitlines()]
    assert len(rk) == len(pairs)
    print("== Math-Verify", file=sys.stderr)
    load["math_verify_start"] = os.getloadavg()[0]
    mv, mv_ns = run_math_verify(pairs)
    load["math_verify_end"] = os.getloadavg()[0]

    rows = {}
    forms = {}
    disagreements = []
    both_wrong = []
    for p, r, m in zip(pairs, rk, mv):
        if p["kind"] == "rewrite":
            f = forms.setdefault(p["form"], {"pairs": 0, "agree": 0, "rk_right": 0,
                                             "mv_right": 0})
            f["pairs"] += 1
            f["agree"] += r["equal"] == m
            f["rk_right"] += r["equal"]
            f["mv_right"] += m
        s = rows.setdefault(p["set"].split(":")[0], {"pairs": 0, "agree": 0,
                                                     "rk_right": 0, "mv_right": 0})
        s["pairs"] += 1
        s["agree"] += r["equal"] == m
        s["rk_right"] += r["equal"] == p["label"]
        s["mv_right"] += m == p["label"]
        if p["kind"] != "label" and r["equal"] != p["label"] and m != p["label"]:
            both_wrong.append({"set": p["set"], "gold": p["gold"], "pred": p["pred"][-160:],
                               "expected": p["label"], "form": p.get("form", ""),
                               "rewardkit": r["verdict"], "why": r["why"]})
        if r["equal"] != m:
            disagreements.append({"set": p["set"], "gold": p["gold"],
                                  "pred": p["pred"][-160:], "expected": p["label"],
                                  "form": p.get("form", "gsm8k"),
                                  "rewardkit": r["verdict"], "math_verify": m,
                                  "why": r["why"]})
    rk_ns = [r["ns"] for r in rk]
    slowest = sorted(range(len(rk)), key=lambda k: -rk[k]["ns"])[:15]
    slow = [{"gold": pairs[k]["gold"][:80], "pred": pairs[k]["pred"][-80:],
             "us": rk[k]["ns"] / 1e3, "verdict": rk[k]["verdict"]} for k in slowest]
    timing = {"rewardkit": summary(rk_ns), "math_verify": summary(mv_ns)}
    timing["ratio_median"] = timing["math_verify"]["median_us"] / timing["rewardkit"]["median_us"]
    timing["ratio_mean"] = timing["math_verify"]["mean_us"] / timing["rewardkit"]["mean_us"]
    timing["rewardkit_calls_over_1ms"] = sum(1 for n in rk_ns if n > 1_000_000)
    timing["load_average_1min"] = load
    timing["cpus"] = os.cpu_count()
    os.makedirs(out_dir, exist_ok=True)
    result = {"sets": rows, "rewrite_forms": forms, "timing": timing, "slowest_rewardkit": slow,
              "disagreements": disagreements, "both_wrong": both_wrong,
              "git": os.environ.get("BENCH_GIT", "unknown")}
    with open(os.path.join(out_dir, "math_diff.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"sets": rows, "timing": timing,
                      "disagreements": len(disagreements)}, indent=1))


if __name__ == "__main__":
    main()
