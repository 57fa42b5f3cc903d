"""GSM8K chosen/rejected pairs for reward-model quality runs (bench/model_quality.sh).

For every GSM8K test question of ../shared/data/gsm8k/example_model_solutions.jsonl that has
both a correct and an incorrect model solution, one TRL pair: prompt = the question, chosen =
the first correct solution, rejected = the first incorrect one (solution keys in a fixed order).
Questions are split in file order: the first `--train` questions train, the rest validate, so no
question is on both sides. Writes two JSONL files; nothing is copied into the repository.
"""

import argparse
import json

KEYS = ["6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--solutions", required=True)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--out-train", required=True)
    parser.add_argument("--out-val", required=True)
    args = parser.parse_args()
    pairs = []
    with open(args.solutions, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            correct = [row[k]["solution"] for k in KEYS if row[k]["is_correct"]]
            wrong = [row[k]["solution"] for k in KEYS if not row[k]["is_correct"]]
            if correct and wrong:
                pairs.append({"prompt": row["question"], "chosen": correct[0], "rejected": wrong[0]})
    with open(args.out_train, "w", encoding="utf-8") as f:
        for pair in pairs[: args.train]:
            f.write(json.dumps(pair) + "\n")
    with open(args.out_val, "w", encoding="utf-8") as f:
        for pair in pairs[args.train :]:
            f.write(json.dumps(pair) + "\n")
    print(f"{len(pairs)} pairs: {min(args.train, len(pairs))} train, {max(0, len(pairs) - args.train)} validation")


if __name__ == "__main__":
    main()
