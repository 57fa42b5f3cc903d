"""Writes bench/results/math_diff.md from bench/out/math_diff.json: the summary, the timing, and
every disagreement between rewardkit and Math-Verify, each with its examined category.

    python bench/math_diff_table.py [bench/out/math_diff.json] [bench/results/math_diff.md]

Categories are assigned by the rules below, which were written after reading the disagreements;
each category says who is right and why.
"""

import json
import sys

CATEGORIES = [
    ("mv-scaled", "Math-Verify error: the rewrite `\\frac{2(G)}{2}` equals G by construction; "
     "Math-Verify does not simplify it (or does not parse the product) and says not equal."),
    ("mv-phrase", "Math-Verify error: the rewrite is G inside \"The final answer is $G$.\"; "
     "Math-Verify reads another span or fails to parse G in that position."),
    ("mv-form", "Math-Verify error: an equivalent form of G by construction (`a/b`, `\\dfrac ab`, "
     "a decimal, `n.0`, thousands separators, a reordered list) judged not equal."),
    ("rk-tolerance", "Justified by rewardkit's documented tolerance: G is written in scientific "
     "notation or with decimals, so it is treated as a rounded value and `G + 1` is within "
     "rel_tol = 1e-6 of it. Math-Verify rounds to 6 decimal places and says not equal. Set "
     "rel_tol lower for exact-valued scientific answers."),
    ("rk-unit-perturbation", "Harness artifact: the perturbation `+ 1` was appended after a unit "
     "(`81 \\mathrm{km}/\\mathrm{hr} + 1`), which leaves an expression rewardkit reads as the value "
     "with the unit dropped."),
    ("rk-unsupported", "rewardkit gap (to do): floor/ceiling brackets, subscripted symbols "
     "(`P_1`, `C_{1}`), set-builder notation, `\\neq` relations, and binomials or factorials of "
     "symbolic arguments (`\\binom{2n}{n}`, `(d-k)!`: no gamma function) are not read or not "
     "evaluated, so the gold or the rewrite falls back to another reading."),
    ("mv-false-positive", "Math-Verify error: the prediction is wrong by construction (`+ 1` "
     "added after an `\\approx` value, or one element of a list with repeated values dropped: "
     "Math-Verify compares lists as sets, so `-1,-1,1` passes for `-1,-1,1,1`); rewardkit says "
     "not equal (lists compare as multisets)."),
    ("other", "Examined individually: malformed gold answers in the data (`5 4.6`), and the like."),
]


def category(d):
    g, p = d["gold"], d["pred"]
    rk_equal = d["rewardkit"] == "equal"
    if d["expected"] and rk_equal and not d["math_verify"]:
        if "\\frac{2(" in p:
            return "mv-scaled"
        if p.startswith("The final answer is"):
            return "mv-phrase"
        return "mv-form"
    if not d["expected"] and rk_equal:
        if "numerically equal" in d["why"]:
            return "rk-tolerance"
        if "\\mathrm" in g or "\\text" in g:
            return "rk-unit-perturbation"
        return "rk-unsupported"
    if not d["expected"] and not rk_equal and d["math_verify"]:
        return "mv-false-positive"
    if d["expected"] and not rk_equal:
        if any(t in g for t in ("lfloor", "lceil", "_", "\\mid", "\\neq", "\\approx", "binom", "!")):
            return "rk-unsupported"
    return "other"


def cell(s):
    s = s.replace("|", "\\|").replace("\n", " ")
    return s if len(s) <= 90 else s[:87] + "…"


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "bench/out/math_diff.json"
    dst = sys.argv[2] if len(sys.argv) > 2 else "bench/results/math_diff.md"
    d = json.load(open(src))
    t = d["timing"]
    out = ["# rewardkit `math` vs Math-Verify 0.9.0: differential results", "",
           f"Produced by `bash bench/math_diff.sh` then `python bench/math_diff_table.py` "
           f"(commit {d['git']}). Both sides single-threaded on the same pairs.", "",
           "## Agreement", "",
           "| set | pairs | agree | rewardkit right | Math-Verify right |", "|---|---|---|---|---|"]
    for name, s in d["sets"].items():
        out.append(f"| {name} | {s['pairs']} | {s['agree']} ({100 * s['agree'] / s['pairs']:.2f}%) "
                   f"| {s['rk_right']} | {s['mv_right']} |")
    out += ["", "`gsm8k`: right = agrees with the file's `is_correct` label. `rewrite`: equivalent "
            "by construction (right = equal). `perturbed`: wrong by construction (right = not "
            "equal).", "", "## Timing (per call, one core each)", "",
            "| | median µs | mean µs | max µs |", "|---|---|---|---|",
            f"| rewardkit | {t['rewardkit']['median_us']:.2f} | {t['rewardkit']['mean_us']:.2f} | "
            f"{t['rewardkit']['max_us']:.0f} |",
            f"| Math-Verify | {t['math_verify']['median_us']:.0f} | {t['math_verify']['mean_us']:.0f} | "
            f"{t['math_verify']['max_us']:.0f} |", "",
            f"Ratio (Math-Verify / rewardkit): **{t['ratio_median']:.0f}× on the median, "
            f"{t['ratio_mean']:.0f}× on the mean**. rewardkit calls above 1 ms: "
            f"{t['rewardkit_calls_over_1ms']}.", ""]
    if d.get("slowest_rewardkit"):
        out += ["Slowest rewardkit calls:", "", "| µs | gold | prediction | verdict |",
                "|---|---|---|---|"]
        for s in d["slowest_rewardkit"][:10]:
            out.append(f"| {s['us']:.0f} | `{cell(s['gold'])}` | `{cell(s['pred'])}` | {s['verdict']} |")
        out.append("")
    counts = {}
    for x in d["disagreements"]:
        x["category"] = category(x)
        counts[x["category"]] = counts.get(x["category"], 0) + 1
    out += ["## Disagreements by examined category", "", "| category | count | finding |",
            "|---|---|---|"]
    for name, text in CATEGORIES:
        if counts.get(name):
            out.append(f"| {name} | {counts[name]} | {text} |")
    out += ["", "## Every disagreement", "",
            "| # | set | gold | prediction (tail) | expected | rewardkit | Math-Verify | category |",
            "|---|---|---|---|---|---|---|---|"]
    for k, x in enumerate(d["disagreements"], 1):
        out.append(f"| {k} | {x['set']} | `{cell(x['gold'])}` | `{cell(x['pred'])}` | "
                   f"{'equal' if x['expected'] else 'not equal'} | {x['rewardkit']} | "
                   f"{'equal' if x['math_verify'] else 'not equal'} | {x['category']} |")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {dst}: {len(d['disagreements'])} disagreements, {counts}")


if __name__ == "__main__":
    main()
