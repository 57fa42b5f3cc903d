"""PyTorch reference loop for `rewardkit train` with an encoder backbone (issue 5, "Quality").

It trains the same reward model on the same data with the same recipe as rewardkit-model, so
that the two validation accuracies can be compared (bench/model_quality_minilm.sh):

* Data: TRL preference rows (`prompt` optional, `chosen`, `rejected` as strings) and HH-RLHF
  dialogues, split exactly as rewardkit-model's data.rs does: without a `prompt`, the implicit
  prompt is the longest common prefix of chosen and rejected, cut just after the last
  `\\n\\nAssistant:` in it (else backed up to the last whitespace). `--limit` keeps the first N
  rows, `--val-last` validates on the last N of those (or `--val-data` on another file).
* Tokenisation: the model directory's tokenizer.json through the `tokenizers` library with its
  baked-in padding removed and truncation replaced by `max_length` from the *left* (rewardkit
  keeps the end of prompt + response); text = prompt + response; [CLS]/[SEP] added by the
  tokenizer's post-processor; batches padded to their longest member with an attention mask.
* Model: `transformers.BertModel` (the directory's weights), token-type ids 0, mean pooling over
  non-padding tokens (or [CLS]), then the head: `Linear(width, 1)` or `Linear(width, hidden) →
  GELU (tanh approximation, as candle's `gelu`) → Linear(hidden, 1)`. No dropout on either side
  (rewardkit's encoder has none; the BertModel runs in eval mode, also when fine-tuning).
* Initial head weights and data order: rewardkit's own SplitMix64 reproduced here bit for bit
  (seed stream 2 → Box–Muller normals with std 1/√(3·in) for each Linear weight, row-major
  [out, in], biases 0; epoch e's order = Fisher–Yates with SplitMix64 derived from (seed, 1000+e)),
  so both sides start from the same head and see the same batches in the same order.
* Objective: Bradley–Terry, mean over the batch of −log σ(r_c − r_r).
* Optimizer: `torch.optim.AdamW` (β 0.9/0.999, ε 1e-8), weight decay only on parameters with
  ≥ 2 dimensions (as rewardkit), global-norm clipping (`clip_grad_norm_`), learning rate set each
  step to rewardkit's schedule: linear warm-up over round(warmup_ratio·steps) steps with
  lr·(step+1)/warmup, then linear (or cosine, or constant) decay to 0 at the last step.
* Validation at the end of each epoch; the final weights are those with the lowest validation
  loss (rewardkit restores the same), and both that validation and the last one are reported.
* Frozen encoder (`--train-encoder` absent): every distinct text is encoded once (no grad) and
  the head trains on the cached vectors, as rewardkit does.

Prints one JSON object (history, best, seconds). Needs torch, transformers, tokenizers.
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ASSISTANT = "\n\nAssistant:"


class SplitMix64:
    """rewardkit-model's rng.rs, bit for bit."""

    def __init__(self, seed: int):
        self.state = seed & MASK

    @classmethod
    def derived(cls, seed: int, stream: int) -> "SplitMix64":
        mix = cls(seed ^ ((stream * GOLDEN) & MASK))
        return cls(mix.next_u64())

    def next_u64(self) -> int:
        self.state = (self.state + GOLDEN) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def next_f64(self) -> float:
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def normal(self) -> float:
        u1 = 1.0 - self.next_f64()
        u2 = self.next_f64()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def below(self, n: int) -> int:
        zone = MASK - MASK % n
        while True:
            x = self.next_u64()
            if x < zone:
                return x % n

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def implicit_prompt_len(chosen: str, rejected: str) -> int:
    """data.rs `implicit_prompt_len`, in characters instead of bytes (same cut)."""
    common = 0
    limit = min(len(chosen), len(rejected))
    while common < limit and chosen[common] == rejected[common]:
        common += 1
    prefix = chosen[:common]
    at = prefix.rfind(ASSISTANT)
    if at >= 0:
        return at + len(ASSISTANT)
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i].isspace():
            return i
    return 0


def read_pairs(path: str) -> list:
    opener = gzip.open if path.endswith(".gz") else open
    pairs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
            for name, value in (("chosen", chosen), ("rejected", rejected), ("prompt", prompt)):
                if value is not None and not isinstance(value, str):
                    sys.exit(f"{path}:{line_no}: field '{name}': this reference reads strings only")
            if chosen is None or rejected is None:
                sys.exit(f"{path}:{line_no}: 'chosen' and 'rejected' are required")
            if prompt is None:
                cut = implicit_prompt_len(chosen, rejected)
                prompt, chosen, rejected = chosen[:cut], chosen[cut:], rejected[cut:]
            pairs.append((prompt, chosen, rejected))
    return pairs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face BERT directory (all-MiniLM-L6-v2)")
    p.add_argument("--data", required=True)
    p.add_argument("--val-data")
    p.add_argument("--val-last", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--head", choices=["linear", "mlp"], default="mlp")
    p.add_argument("--head-hidden", type=int, default=64)
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    p.add_argument("--train-encoder", action="store_true")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--schedule", choices=["constant", "linear", "cosine"], default="linear")
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "1")))
    p.add_argument(
        "--features",
        help="frozen encoder: a file for the cached vectors, reused when it holds the same texts, "
        "model, max length and pooling (saves re-encoding across runs that differ in the head only)",
    )
    args = p.parse_args()

    import torch
    import torch.nn.functional as F
    from tokenizers import Tokenizer
    from transformers import BertModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    data = read_pairs(args.data)
    if args.limit is not None:
        data = data[: args.limit]
    if args.val_data:
        train_set, val_set = data, read_pairs(args.val_data)
    elif args.val_last:
        train_set, val_set = data[: len(data) - args.val_last], data[len(data) - args.val_last :]
    else:
        sys.exit("--val-data or --val-last is required")

    tokenizer = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(args.max_length, direction="left")
    encoder = BertModel.from_pretrained(args.model, add_pooling_layer=False)
    encoder.eval()  # no dropout, as rewardkit
    for param in encoder.parameters():
        param.requires_grad_(args.train_encoder)
    width = encoder.config.hidden_size

    # The head, initialised as rewardkit's model.rs does.
    rng = SplitMix64.derived(args.seed, 2)

    def linear(inputs: int, outputs: int) -> torch.nn.Linear:
        std = 1.0 / math.sqrt(3.0 * inputs)
        layer = torch.nn.Linear(inputs, outputs)
        values = [rng.normal() * std for _ in range(inputs * outputs)]
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(values, dtype=torch.float32).reshape(outputs, inputs))
            layer.bias.zero_()
        return layer

    if args.head == "linear":
        head = linear(width, 1)
    else:
        head = torch.nn.Sequential(
            linear(width, args.head_hidden), torch.nn.GELU(approximate="tanh"), linear(args.head_hidden, 1)
        )

    def encode(texts: list) -> torch.Tensor:
        rows = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=True)]
        length = max(1, max(len(r) for r in rows))
        ids = torch.zeros((len(rows), length), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.float32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1.0
        hidden = encoder(
            input_ids=ids, attention_mask=mask.long(), token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state
        if args.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(2)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def texts_of(pairs: list, batch: list) -> list:
        return [pairs[i][0] + pairs[i][1] for i in batch] + [pairs[i][0] + pairs[i][2] for i in batch]

    cache = None
    cache_seconds = 0.0
    if not args.train_encoder:
        # Every distinct text once, longest (in UTF-8 bytes, as rewardkit) first.
        started = time.perf_counter()
        distinct, index = [], {}
        for pairs in (train_set, val_set):
            for prompt, chosen, rejected in pairs:
                for key in ((prompt, chosen), (prompt, rejected)):
                    if key not in index:
                        index[key] = len(distinct)
                        distinct.append(key)
        import hashlib

        key = hashlib.sha256(
            json.dumps([os.path.abspath(args.model), args.max_length, args.pooling, distinct]).encode()
        ).hexdigest()
        saved = torch.load(args.features) if args.features and os.path.exists(args.features) else None
        if saved is not None and saved["key"] == key:
            features = saved["features"]
        else:
            order = sorted(range(len(distinct)), key=lambda i: -len((distinct[i][0] + distinct[i][1]).encode()))
            features = torch.zeros((len(distinct), width))
            chunk = 2 * args.batch_size
            with torch.no_grad():
                for k in range(0, len(order), chunk):
                    batch = order[k : k + chunk]
                    vectors = encode([distinct[i][0] + distinct[i][1] for i in batch])
                    features[torch.tensor(batch)] = vectors
            if args.features:
                torch.save({"key": key, "features": features}, args.features)
        cache = (features, index)
        cache_seconds = time.perf_counter() - started

    def rewards(pairs: list, batch: list) -> torch.Tensor:
        if cache is not None:
            features, index = cache
            rows = [index[(pairs[i][0], pairs[i][1])] for i in batch] + [
                index[(pairs[i][0], pairs[i][2])] for i in batch
            ]
            x = features[torch.tensor(rows)]
        else:
            x = encode(texts_of(pairs, batch))
        return head(x).squeeze(1)

    def evaluate(step: int) -> dict:
        loss, correct, values = 0.0, 0, []
        with torch.no_grad():
            for k in range(0, len(val_set), args.batch_size):
                batch = list(range(k, min(k + args.batch_size, len(val_set))))
                r = rewards(val_set, batch).double()
                rc, rr = r[: len(batch)], r[len(batch) :]
                loss += float(-F.logsigmoid(rc - rr).sum())
                correct += int((rc - rr > 0).sum())
                values.extend(r.tolist())
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return {
            "step": step,
            "loss": loss / len(val_set),
            "accuracy": correct / len(val_set),
            "reward_mean": mean,
            "reward_std": std,
        }

    params = [p for p in head.parameters()]
    if args.train_encoder:
        params = [p for p in encoder.parameters()] + params
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.999),
        eps=1e-8,
    )
    n = len(train_set)
    steps_per_epoch = math.ceil(n / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = math.floor(args.warmup_ratio * total + 0.5)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if args.schedule == "constant":
            return args.lr
        if args.schedule == "linear":
            return args.lr * (1.0 - progress)
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    history, best, best_state = [], None, None
    started = time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        order = list(range(n))
        SplitMix64.derived(args.seed, 1000 + epoch).shuffle(order)
        window = 0.0
        for k in range(0, n, args.batch_size):
            batch = order[k : k + args.batch_size]
            r = rewards(train_set, batch)
            loss = -F.logsigmoid(r[: len(batch)] - r[len(batch) :]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            optimizer.step()
            step += 1
            window += loss.item() * len(batch)
        metrics = evaluate(step)
        metrics["train_loss"] = window / n
        history.append(metrics)
        if best is None or metrics["loss"] < best["loss"]:
            best = metrics
            best_state = [p.detach().clone() for p in params]
        print(
            f"epoch {epoch + 1}: train loss {metrics['train_loss']:.4f}, validation loss "
            f"{metrics['loss']:.4f}, accuracy {100 * metrics['accuracy']:.2f}%",
            file=sys.stderr,
        )
    seconds = time.perf_counter() - started
    with torch.no_grad():
        for p, saved in zip(params, best_state):
            p.copy_(saved)
    print(
        json.dumps(
            {
                "train_examples": n,
                "validation_examples": len(val_set),
                "steps": step,
                "history": history,
                "best": best,
                "train_seconds": seconds,
                "cache_seconds": cache_seconds,
                "cached_texts": len(cache[1]) if cache is not None else 0,
                "examples_per_sec": n * args.epochs / seconds,
                "threads": args.threads,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
