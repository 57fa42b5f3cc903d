#!/usr/bin/env python3
"""Cross-check of rewardkit's chat-template rendering against Hugging Face `transformers`.

For each template below (written out as Hugging Face publishes them: Qwen2-Instruct's ChatML,
Meta-Llama-3-Instruct's, a Qwen2.5-style template with tools, Zephyr's, Mistral-Instruct v0.1's,
and two exercising `strftime_now`, `namespace`, loop filters and Python string methods), this
script:

1. writes a `tokenizer_config.json` holding the template and its special tokens;
2. renders a set of conversations with `tokenizer.apply_chat_template(messages, tokenize=False)`
   — once whole (`add_generation_prompt=False`), once without the last message
   (`add_generation_prompt=True`) — and a set of chat-list preference pairs the way TRL splits
   them (prompt = prompt messages with the generation prompt; response = what the full
   conversation adds after it);
3. runs `crates/rewardkit-model/examples/render_chat.rs` on the same files (the pairs through the
   reader `rewardkit train` uses);
4. compares every string exactly (a conversation a template refuses with `raise_exception` must be
   refused on both sides) and fails on any difference.

Environment:
  TORCH_VENV   a virtual environment with transformers (and jinja2) used as is; when unset, one is
               created under bench/.venv and filled from PyPI.
  RENDER_CHAT  the render_chat binary; when unset, `cargo build -p rewardkit-model --example
               render_chat` builds it (honours CARGO_TARGET_DIR).

Usage: python3 bench/chat_template_check.py
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["transformers", "tokenizers", "jinja2"]


def ensure_venv():
    """Re-executes this script inside a Python that has transformers."""
    try:
        import transformers  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.environ.get("TORCH_VENV")
    if venv:
        python = Path(venv) / "bin" / "python"
    else:
        venv = ROOT / "bench" / ".venv"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    if Path(sys.executable).resolve() == python.resolve():
        sys.exit(f"{python} lacks transformers")
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

QWEN25_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Zephyr's template: block tags on their own lines, so trim_blocks/lstrip_blocks decide the output.
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}"
)

# Llama 3.1's date header (strftime_now) and a few Jinja/Python features HF templates use.
DATED = """{{- bos_token }}
{%- if strftime_now is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- else %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{{- "Today Date: " + date_string + "\\n" }}
{%- for m in messages %}
    {{- m.role + ": " + m.content | trim + "\\n" }}
{%- endfor %}
{%- if add_generation_prompt %}assistant:{% endif %}"""

MISC = """{%- set ns = namespace(system='') -%}
{%- for m in messages -%}
  {%- if m.role == 'system' -%}{%- set ns.system = m.content.strip() -%}{%- endif -%}
{%- endfor -%}
{%- if ns.system %}<<SYS>>{{ ns.system }}<</SYS>>
{% endif %}
{%- for m in messages if m.role != 'system' %}
  [{{ loop.index }}/{{ loop.length }}] {{ m.role.upper() }}: {{ m.content.strip() }}
  {%- if m.content.startswith('Why') %} (question){% endif %}
  {%- if loop.last %}{% break %}{% endif %}

{% endfor %}
{%- if add_generation_prompt %}
ASSISTANT:{% endif %}"""

TEMPLATES = {
    "qwen2-chatml": (QWEN2, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    "llama3": (LLAMA3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "qwen2.5-tools": (QWEN25_TOOLS, {"eos_token": "<|im_end|>"}),
    "zephyr": (ZEPHYR, {"eos_token": "</s>"}),
    "mistral-v0.1": (MISTRAL, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "strftime": (DATED, {"bos_token": "<s>"}),
    "namespace-loops-methods": (MISC, {}),
}

# Keys in the order tool schemas are usually written (OpenAI's and Hugging Face's examples), not
# sorted: rewardkit hands templates JSON objects with the file's key order, as Python does, so
# `tojson` prints them the same way.
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"},
                           "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}]

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"}]},
    {"messages": [{"role": "system", "content": "  Be brief.  "},
                  {"role": "user", "content": "Why is the sky blue?"},
                  {"role": "assistant", "content": " Rayleigh scattering. "}]},
    {"messages": [{"role": "user", "content": "Translate: ça va ? 你好 😀"},
                  {"role": "assistant", "content": "How are you? Hello"},
                  {"role": "user", "content": "Thanks\nand\tbye"},
                  {"role": "assistant", "content": "Bye!\n"}]},
    {"messages": [{"role": "assistant", "content": "I speak first"}, {"role": "user", "content": "odd"}]},
    {"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"type": "function", "function": {"name": "get_weather", "arguments": {"unit": "c", "city": "Paris"}}}]},
                  {"role": "tool", "content": "{\"temp\": 21}", "name": "get_weather"},
                  {"role": "assistant", "content": "It is 21 °C in Paris."}],
     "tools": TOOLS},
]

PAIRS = [
    {"prompt": [{"role": "user", "content": "How do I boil an egg?"}],
     "chosen": [{"role": "assistant", "content": "Simmer it for 9 minutes, then cool it in cold water."}],
     "rejected": [{"role": "assistant", "content": "Figure it out."}]},
    {"chosen": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Why is my code slow?"},
                {"role": "assistant", "content": " Profile it first. "}],
     "rejected": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Why is my code slow?"},
                  {"role": "assistant", "content": "No idea."}]},
    {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c?"}, {"role": "assistant", "content": "yes"}],
     "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                  {"role": "user", "content": "c?"}, {"role": "assistant", "content": "no"}]},
]


def tokenizer_for(template, special):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    vocab = {"[UNK]": 0, **{t: i + 1 for i, t in enumerate(sorted(set(special.values())))}}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")), **special)
    tok.chat_template = template
    return tok


def python_side(tok):
    rendered = []
    for row in CONVERSATIONS:
        tools = row.get("tools")
        try:
            full = tok.apply_chat_template(row["messages"], tools=tools, tokenize=False,
                                           add_generation_prompt=False)
            prompt = tok.apply_chat_template(row["messages"][:-1], tools=tools, tokenize=False,
                                             add_generation_prompt=True)
            rendered.append({"full": full, "prompt": prompt})
        except Exception as e:  # a template's raise_exception
            rendered.append({"error": str(e)})
    for pair in PAIRS:
        if "prompt" in pair:
            prompt_msgs, chosen, rejected = pair["prompt"], pair["chosen"], pair["rejected"]
        else:  # implicit prompt: the shared messages (TRL's extract_prompt)
            shared = 0
            while pair["chosen"][shared] == pair["rejected"][shared]:
                shared += 1
            prompt_msgs = pair["chosen"][:shared]
            chosen, rejected = pair["chosen"][shared:], pair["rejected"][shared:]
        try:
            prompt = tok.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
            sides = []
            for side in (chosen, rejected):
                full = tok.apply_chat_template(prompt_msgs + side, tokenize=False)
                sides.append(full[len(prompt):] if full.startswith(prompt) else None)
            if None in sides:
                rendered.append({"skip": "prompt is not a prefix"})
            else:
                rendered.append({"prompt": prompt, "chosen": sides[0], "rejected": sides[1]})
        except Exception as e:
            rendered.append({"error": str(e)})
    return rendered


def main():
    ensure_venv()
    import transformers
    binary = os.environ.get("RENDER_CHAT")
    if not binary:
        subprocess.run(["cargo", "build", "-q", "-p", "rewardkit-model", "--example", "render_chat"],
                       cwd=ROOT, check=True)
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        binary = str(target / "debug" / "examples" / "render_chat")
    failures = 0
    compared = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "conversations.jsonl").write_text(
            "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CONVERSATIONS))
        (tmp / "pairs.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PAIRS))
        for name, (template, special) in TEMPLATES.items():
            config = tmp / f"{name}.json"
            config.write_text(json.dumps({"chat_template": template, **special}))
            expected = python_side(tokenizer_for(template, special))
            run = subprocess.run([binary, str(config), str(tmp / "conversations.jsonl"), str(tmp / "pairs.jsonl")],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{name}: render_chat failed: {run.stderr}")
                failures += 1
                continue
            got = [json.loads(line) for line in run.stdout.splitlines()]
            if len(got) != len(expected):
                print(f"{name}: render_chat gave {len(got)} results for {len(expected)} cases")
                failures += 1
            ok = 0
            for i, (want, have) in enumerate(zip(expected, got)):
                if "skip" in want:
                    continue
                compared += 1
                if "error" in want or "error" in have:
                    same = "error" in want and "error" in have
                else:
                    same = want == have
                if same:
                    ok += 1
                else:
                    failures += 1
                    print(f"{name} case {i}: DIFFERENT\n  transformers: {want!r}\n  rewardkit:    {have!r}")
            print(f"{name}: {ok}/{len([e for e in expected if 'skip' not in e])} identical")
    print(f"transformers {transformers.__version__}: {compared} renderings compared, {failures} differ")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
