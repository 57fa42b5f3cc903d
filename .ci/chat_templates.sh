#!/usr/bin/env bash
# Chat templates: rewardkit's Jinja rendering vs `transformers`' apply_chat_template(tokenize=False)
# on seven published-style templates (bench/chat_template_check.py; strings must be identical).
# Needs transformers, tokenizers and jinja2 (no torch): a venv under the target directory, filled
# from PyPI on first use. About a minute on a warm build.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== chat templates vs transformers (.ci/chat_templates.sh)"

TARGET=${CARGO_TARGET_DIR:-target}
VENV=$TARGET/ci-chat-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import transformers, jinja2" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check transformers tokenizers jinja2
fi
cargo build --quiet -p rewardkit-model --example render_chat
TORCH_VENV=$VENV RENDER_CHAT=$TARGET/debug/examples/render_chat "$VENV/bin/python" bench/chat_template_check.py
