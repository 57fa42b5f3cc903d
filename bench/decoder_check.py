#!/usr/bin/env python3
"""Cross-check of rewardkit's `decoder` backbone against Hugging Face `transformers`.

For each of Qwen2ForSequenceClassification, Qwen3ForSequenceClassification and
LlamaForSequenceClassification (Llama with Llama 3.1's rotary scaling), this script:

1. trains a small byte-level BPE tokenizer on the texts below and builds a tiny random-weight model
   with `transformers` (every weight re-drawn, norms included, so that no part of the network is
   an identity); one model is saved sharded (`model.safetensors.index.json`);
2. scores the texts in Python, batched with right padding (the attention mask passed) and one by
   one;
3. writes a reward spec whose `model` term points at the saved directory and runs
   `rewardkit score` on the same prompts and completions;
4. prints the largest absolute difference between the two, and fails above 1e-4.

Environment:
  TORCH_VENV  a virtual environment with torch, transformers, tokenizers, safetensors (used as is);
              when unset, one is created under bench/.venv and filled from PyPI.
  REWARDKIT   the rewardkit binary; when unset, `cargo build -p rewardkit-cli` builds it (honours
              CARGO_TARGET_DIR).

Usage: python3 bench/decoder_check.py
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["torch", "transformers", "tokenizers", "safetensors", "numpy"]


def ensure_venv():
    """Re-executes this script inside a Python that has torch and transformers."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        return
    except ImportError:
        pass
    venv = os.environ.get("TORCH_VENV")
    if not venv:
        venv = str(ROOT / "bench" / ".venv")
        python = Path(venv) / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            # The CPU build of torch (the default PyPI wheel carries CUDA libraries).
            subprocess.run(pip + ["--index-url", "https://download.pytorch.org/whl/cpu", "torch"], check=True)
            subprocess.run(pip + [p for p in PACKAGES if p != "torch"], check=True)
    python = Path(venv) / "bin" / "python"
    if Path(sys.executable).resolve() == python.resolve():
        sys.exit(f"{python} lacks torch or transformers")
    os.execv(str(python), [str(python), *sys.argv])


ensure_venv()

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

ROWS = [
    ("How do I fry an onion?", " Slice it thinly and cook it in a little oil until golden."),
    ("How do I fry an onion?", " Why do you even need onions?"),
    ("User: Is the sky blue?\nAssistant:", " Yes, because of Rayleigh scattering of sunlight."),
    ("", "Short."),
    ("Explain photosynthesis in one sentence.",
     " Plants use light, water and carbon dioxide to make sugar and release oxygen, "
     "which is why leaves are green and forests breathe."),
    ("What is 2 + 2?", " 4"),
    ("What is 2 + 2?", " It is 5, obviously. <pad>"),
    ("Write a haiku about rust.", " Red bloom on iron / patient oxygen at work / the bridge remembers"),
]


def build_tokenizer(directory: Path, bos: bool) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([p + c for p, c in ROWS] * 4, trainer)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>")
    fast.padding_side = "right"
    fast.save_pretrained(directory)
    return fast


def build_model(family: str, vocab: int, pad: int):
    common = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-6, num_labels=1, pad_token_id=pad, tie_word_embeddings=False,
    )
    if family == "qwen2":
        config = transformers.Qwen2Config(**common)
        cls = transformers.Qwen2ForSequenceClassification
    elif family == "qwen3":
        config = transformers.Qwen3Config(head_dim=24, **common)
        cls = transformers.Qwen3ForSequenceClassification
    else:
        config = transformers.LlamaConfig(
            rope_parameters={
                "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
            **common,
        )
        cls = transformers.LlamaForSequenceClassification
    torch.manual_seed(1234)
    model = cls(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(1.0 + 0.2 * torch.randn_like(parameter))
            elif "embed" in name:
                parameter.normal_(0.0, 1.0)
            else:
                parameter.normal_(0.0, 0.15)
    return model


def python_scores(model, tokenizer, texts):
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        batched = model(**batch).logits[:, 0].tolist()
        single = [model(**tokenizer([t], return_tensors="pt")).logits[0, 0].item() for t in texts]
    return batched, single


def rewardkit_binary() -> str:
    if os.environ.get("REWARDKIT"):
        return os.environ["REWARDKIT"]
    subprocess.run(["cargo", "build", "--quiet", "-p", "rewardkit-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return str(target / "debug" / "rewardkit")


def rewardkit_scores(binary: str, model_dir: Path, work: Path, batch_size: int):
    spec = work / f"spec-{batch_size}.toml"
    spec.write_text(
        f'[[term]]\nname = "rm"\nkind = "model"\n[term.options]\npath = "{model_dir}"\n'
        f"batch_size = {batch_size}\n"
    )
    rollouts = work / "rollouts.jsonl"
    rollouts.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in ROWS))
    out = work / f"scored-{batch_size}.jsonl"
    subprocess.run(
        [binary, "score", "--spec", str(spec), "--input", str(rollouts), "--output", str(out)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["rm.outcome"] == "scored" for r in rows), rows
    return [r["rm"] for r in rows]


def main():
    binary = rewardkit_binary()
    texts = [p + c for p, c in ROWS]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}; "
          f"{len(texts)} texts, tiny random models (hidden 64, 3 layers, 4 query / 2 key-value heads)")
    print()
    print("| model | weights | python batched vs single | rewardkit (batch 8) vs python | rewardkit (batch 1) vs python |")
    print("|---|---|---|---|---|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for family, bos, shard in [("qwen2", False, False), ("qwen3", False, True), ("llama", True, False)]:
            directory = work / family
            directory.mkdir()
            tokenizer = build_tokenizer(directory, bos)
            model = build_model(family, len(tokenizer), tokenizer.pad_token_id)
            if shard:
                model.save_pretrained(directory, max_shard_size="100KB")
            else:
                model.save_pretrained(directory)
            batched, single = python_scores(model, tokenizer, texts)
            ours8 = rewardkit_scores(binary, directory, work, 8)
            ours1 = rewardkit_scores(binary, directory, work, 1)
            py = max(abs(a - b) for a, b in zip(batched, single))
            d8 = max(abs(a - b) for a, b in zip(ours8, batched))
            d1 = max(abs(a - b) for a, b in zip(ours1, single))
            worst = max(worst, d8, d1)
            files = "sharded" if (directory / "model.safetensors.index.json").exists() else "one file"
            print(f"| {model.__class__.__name__} | {files} | {py:.2e} | {d8:.2e} | {d1:.2e} |")
            spread = max(batched) - min(batched)
            assert spread > 1e-2, f"{family}: scores barely differ ({batched}); the check would be weak"
    print()
    print(f"max |rewardkit - transformers| = {worst:.2e}")
    if worst > 1e-4:
        sys.exit("FAIL: rewardkit and transformers disagree")
    print("ok")


if __name__ == "__main__":
    main()
