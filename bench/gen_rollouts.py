"""Writes a synthetic but realistic JSONL rollout file for throughput benchmarks.

    python3 bench/gen_rollouts.py TRAIN.jsonl OUT.jsonl [ROWS]

Each row is `{"prompt", "completion", "reference", "group"}`: a GSM8K training question as the
prompt, its worked answer rewritten as a `<think>` block plus a final answer (about 400
characters), the question's number as reference, and a group id shared by the four rollouts of
the same question (GRPO-style). Rows vary, with a fixed seed: the answer is phrased as `#### N`,
`\\boxed{N}`, "The answer is N.", `$N.00` or `A: N`; about a quarter of the answers are wrong,
some carry no final answer, some break the think format, and the lengths spread from ~150 to
~1,500 characters so that the soft overlong penalty sees all three of its regions.
"""

import json
import random
import re
import sys

CALC = re.compile(r"<<[^>]*>>")

FILLER = [
    "Let me re-read the question to be sure I have all the quantities.",
    "I should double-check each step before answering.",
    "That matches the numbers given in the problem.",
    "Now I combine the partial results.",
    "Checking the units: everything is in the same unit, good.",
]


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    train_path, out_path = argv[0], argv[1]
    rows = int(argv[2]) if len(argv) == 3 else 1_000_000
    questions = []
    with open(train_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                body, answer = item["answer"].rsplit("####", 1)
                questions.append((item["question"], CALC.sub("", body).strip(),
                                  answer.strip().replace(",", "")))
    rng = random.Random(20261128)
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with open(out_path, "w", encoding="utf-8", buffering=1 << 20) as out:
        lines = []
        for i in range(rows):
            q = (i // 4) % len(questions)
            question, reasoning, answer = questions[q]
            roll = rng.random()
            if roll < 0.25:
                final = str(int(float(answer)) + rng.randint(1, 9)) if re.fullmatch(
                    r"-?\d+(\.\d+)?", answer) else answer + "1"
            else:
                final = answer
            thinking = reasoning
            # Spread the lengths: short, typical (~400 chars), long.
            extra = rng.choice((0, 1, 1, 2, 3, 8, 16))
            if extra:
                thinking += " " + " ".join(rng.choice(FILLER) for _ in range(extra))
            style = rng.randrange(6)
            if style == 0:
                tail = f"#### {final}"
            elif style == 1:
                tail = f"So the final answer is $\\boxed{{{final}}}$."
            elif style == 2:
                tail = f"The answer is {final}."
            elif style == 3 and re.fullmatch(r"\d+", final):
                tail = f"She ends up with ${final}.00 in total."
            elif style == 4:
                tail = f"A: {final}"
            else:
                tail = "I am not sure how to finish this."
            fmt = rng.random()
            if fmt < 0.9:
                completion = f"<think>\n{thinking}\n</think>\n{tail}"
            elif fmt < 0.95:
                completion = f"<think>\n{thinking}\n{tail}"  # never closed
            else:
                completion = f"{thinking}\n{tail}"  # no think block
            lines.append(dumps({"prompt": question, "completion": completion,
                                "reference": answer, "group": f"q{i // 4}"}))
            if len(lines) == 10_000:
                out.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
