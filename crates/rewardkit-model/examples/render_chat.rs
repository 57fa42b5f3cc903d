//! Renders conversations and preference pairs with a chat template, for
//! `bench/chat_template_check.py`, which compares the output with `transformers`.
//!
//! Usage: `render_chat TEMPLATE CONVERSATIONS.jsonl PAIRS.jsonl`
//!
//! * `TEMPLATE`: any `--chat-template` value (`builtin`, `none`, a `.jinja` file, a
//!   `tokenizer_config.json`).
//! * `CONVERSATIONS.jsonl`: rows `{"messages": [...], "tools": [...]?}`; for each, one output line
//!   `{"full": …, "prompt": …}` — all messages without the generation prompt, and all but the last
//!   with it — or `{"error": …}` when the template refuses the conversation.
//! * `PAIRS.jsonl`: TRL preference rows, read as `rewardkit train` reads them; for each, one line
//!   `{"prompt": …, "chosen": …, "rejected": …}` or `{"error": …}`.

use std::io::BufRead as _;

use rewardkit_model::data::{read_pairs_with, PairFields};
use rewardkit_model::{ChatTemplate, ChatTemplateConfig};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [template, conversations, pairs] = args.as_slice() else {
        return Err("usage: render_chat TEMPLATE CONVERSATIONS.jsonl PAIRS.jsonl".into());
    };
    let template = ChatTemplate::new(&ChatTemplateConfig::resolve("TEMPLATE", template, &[])?)?;
    let file = std::fs::File::open(conversations)?;
    for line in std::io::BufReader::new(file).lines() {
        let row: Value = serde_json::from_str(&line?)?;
        let messages = row["messages"]
            .as_array()
            .ok_or("`messages` is not a list")?;
        let tools = row.get("tools");
        let rendered = template.render(messages, false, tools).and_then(|full| {
            let prompt = template.render(&messages[..messages.len() - 1], true, tools)?;
            Ok(json!({"full": full, "prompt": prompt}))
        });
        let out = rendered.unwrap_or_else(|e| json!({"error": e.to_string()}));
        println!("{out}");
    }
    // One row at a time, so that a row the template refuses is reported and the rest still run
    // (`rewardkit train` stops at the first such row).
    let one_row = std::env::temp_dir().join(format!("render_chat-{}.jsonl", std::process::id()));
    let file = std::fs::File::open(pairs)?;
    for line in std::io::BufReader::new(file).lines() {
        std::fs::write(&one_row, line? + "\n")?;
        let out = match read_pairs_with(&one_row, &PairFields::default(), &template) {
            Ok(pairs) => {
                let pair = &pairs[0];
                json!({"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected})
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        println!("{out}");
    }
    std::fs::remove_file(&one_row)?;
    Ok(())
}
