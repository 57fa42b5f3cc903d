"""The PyTorch side of bench/model_perf.sh: MiniLM inference sequences/s and full fine-tuning
pairs/s on the same texts, tokenizer, maximum length and batches as the rewardkit side
(crates/rewardkit-model/examples/model_perf.rs). One process is one benchmark round.

Both sides: each text is prompt + response as one sequence, tokenised by the model's own
tokenizer.json with truncation from the left to --max-length tokens and padding to the longest
member of the batch (id 0, attention mask 0); mean pooling over real tokens; a linear head to one
reward. Inference under torch.no_grad() in eval mode; training is steps of BT loss
(-log sigmoid(r_chosen - r_rejected), mean over pairs), gradient clipping to norm 1 and AdamW,
every encoder weight trained, on the pairs of each step in rewardkit's trainer order (SplitMix64
from bench/model_torch_reference.py), the first step untimed (AdamW allocates its state). Tokenisation is inside the timed region on both sides.
"""

import argparse
import json
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import AutoModel

from model_torch_reference import SplitMix64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--seqs", default="8,32,64")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--embed-check", help="rewardkit's pooled vectors of the first texts (JSON)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rows = [json.loads(line) for line in open(args.texts)]
    chosen = [r["chosen"] for r in rows]

    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(args.max_length, direction="left")

    def encode(texts):
        ids = [e.ids for e in tok.encode_batch(texts)]
        n = max(len(i) for i in ids)
        input_ids = torch.tensor([i + [0] * (n - len(i)) for i in ids])
        mask = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids])
        return input_ids, mask

    bert = AutoModel.from_pretrained(args.model)
    head = torch.nn.Linear(bert.config.hidden_size, 1)

    def rewards(texts):
        input_ids, mask = encode(texts)
        h = bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return pooled, head(pooled).squeeze(-1)

    bert.eval()
    with torch.no_grad():
        if args.embed_check:
            theirs = torch.tensor(json.load(open(args.embed_check)))
            ours, _ = rewards(chosen[: theirs.shape[0]])
            diff = (ours - theirs).abs().max().item()
            print(json.dumps({"side": "torch", "mode": "check", "max_abs_diff": diff}))
            if diff > 1e-3:
                print(f"pooled vectors differ by {diff}: not the same computation", file=sys.stderr)
                sys.exit(1)
        for batch, seqs in zip(
            [int(b) for b in args.batches.split(",")], [int(s) for s in args.seqs.split(",")]
        ):
            rewards(chosen[: min(batch, seqs, 2)])[1].tolist()  # small warm-up, untimed
            start, cpu_start = time.perf_counter(), time.process_time()
            for i in range(0, seqs, batch):
                rewards(chosen[i : min(i + batch, seqs)])[1].tolist()
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            print(json.dumps({"side": "torch", "mode": "infer", "batch": batch, "seqs": seqs,
                              "seconds": seconds, "per_sec": seqs / seconds,
                              "per_cpu_sec": seqs / cpu,
                              "threads": torch.get_num_threads()}), flush=True)

    if args.train_steps > 0:
        bert.train()
        # No dropout: rewardkit's encoder has none, and the work should be the same.
        for module in bert.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        params = list(bert.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)
        times, cpu_times = [], []
        b = args.train_batch
        # rewardkit's trainer order for one epoch over the first (steps + 1)·b pairs, seed 42.
        order = list(range((args.train_steps + 1) * b))
        SplitMix64.derived(42, 1000).shuffle(order)
        for step in range(args.train_steps + 1):
            batch = [rows[i] for i in order[step * b : (step + 1) * b]]
            start, cpu_start = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            _, r = rewards([p["chosen"] for p in batch] + [p["rejected"] for p in batch])
            loss = -torch.nn.functional.logsigmoid(r[:b] - r[b:]).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step > 0:  # the first step is a warm-up (AdamW allocates its state)
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
        seconds = sum(times)
        print(json.dumps({"side": "torch", "mode": "train", "batch": b, "steps": args.train_steps,
                          "seconds": seconds, "per_sec": b * args.train_steps / seconds,
                          "per_cpu_sec": b * args.train_steps / sum(cpu_times),
                          "step_seconds": times, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
