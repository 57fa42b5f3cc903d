use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs besides the pipeline, validated by the caller (the CLI) before
/// the server starts. [`ServerConfig::default`] is what `rewardkit serve` uses without flags.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The spec file `POST /admin/reload` and SIGHUP re-read; `None` disables reloading.
    pub spec_path: Option<PathBuf>,
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Requests with more samples than this are refused with 422.
    pub max_samples_per_request: usize,
    /// Completions longer than this (in bytes) are refused with 422, naming the sample.
    pub max_completion_bytes: usize,
    /// `POST /v1/advantages` requests with more rows than this are refused with 422 (the body
    /// size limit bounds their step lists).
    pub max_advantage_rows: usize,
    /// For a constrained combination: save the carried multipliers to the spec's `state_file`
    /// every this many updates (0: only before a reload and at shutdown); `None`: never.
    pub save_multipliers_every: Option<u64>,
    /// A batch is closed once it holds this many samples …
    pub max_batch_samples: usize,
    /// … or once its first request has waited this long for company.
    pub max_batch_wait: Duration,
    /// Samples allowed to wait in the queue; beyond it requests get 429.
    pub max_queue_samples: usize,
    /// Samples scored between two deadline checks; a request past its deadline stops here.
    pub chunk_samples: usize,
    /// Threads of the scoring pool (0: one per CPU).
    pub workers: usize,
    /// The deadline of a request that does not send `x-deadline-ms`.
    pub default_deadline: Duration,
    /// The longest deadline a client may ask for.
    pub max_deadline: Duration,
    /// The whole body must arrive within this time (against slow-body clients), else 408.
    pub body_timeout: Duration,
    /// The request line and headers must arrive within this time, else the connection is closed
    /// (against slow-header clients); a keep-alive connection idle this long is closed too.
    pub header_timeout: Duration,
    /// If set, every endpoint but `/health` and `/ready` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// How `/get_reward` splits OpenRLHF's `query` into prompt and completion.
    pub split: QuerySplit,
    /// The number `/get_reward` sends for a sample whose reward is not a score (OpenRLHF needs a
    /// float for every sample). The kind of every such sample is reported in `extra_logs`.
    pub non_score_reward: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            spec_path: None,
            max_body_bytes: 64 << 20,
            max_samples_per_request: 4096,
            max_completion_bytes: 1 << 20,
            max_advantage_rows: 1 << 20,
            save_multipliers_every: None,
            max_batch_samples: 256,
            max_batch_wait: Duration::from_millis(2),
            max_queue_samples: 65_536,
            chunk_samples: 256,
            workers: 0,
            default_deadline: Duration::from_secs(60),
            max_deadline: Duration::from_secs(600),
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            api_key: None,
            split: QuerySplit::default(),
            non_score_reward: 0.0,
        }
    }
}

/// How OpenRLHF's `query` (the decoded prompt and response, special tokens included) becomes a
/// prompt and a completion:
///
/// 1. if the request has `prompts[i]` and the query contains it, the completion is what follows
///    its first occurrence (a BOS token or padding before it is tolerated);
/// 2. otherwise, the completion is what follows the **last** occurrence of any assistant marker
///    (the chat template's "assistant turn starts here" text);
/// 3. otherwise the sample is not split: its reward is unscorable (`query not split`), never a
///    guess.
///
/// Then end-of-turn tokens in [`QuerySplit::strip_suffixes`] and whitespace are stripped from the
/// end of the completion, repeatedly, so that `…#### 18<|im_end|>\n<|endoftext|>` ends in `18`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySplit {
    /// Assistant markers, tried after the prompt prefix.
    pub assistant_markers: Vec<String>,
    /// End-of-turn tokens stripped from the end of the completion.
    pub strip_suffixes: Vec<String>,
}

impl Default for QuerySplit {
    fn default() -> Self {
        QuerySplit {
            assistant_markers: [
                "<|im_start|>assistant\n",                           // ChatML (Qwen, …)
                "<|start_header_id|>assistant<|end_header_id|>\n\n", // Llama 3
                "<｜Assistant｜>",                                   // DeepSeek
            ]
            .map(String::from)
            .to_vec(),
            strip_suffixes: [
                "<|im_end|>",
                "<|endoftext|>",
                "<|eot_id|>",
                "<|end_of_text|>",
                "<｜end▁of▁sentence｜>",
                "</s>",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl QuerySplit {
    /// Splits `query` into `(prompt, completion)`, or says why it cannot.
    pub fn split<'q>(&self, query: &'q str, prompt: Option<&str>) -> Option<(&'q str, &'q str)> {
        let at = prompt
            .filter(|p| !p.is_empty())
            .and_then(|p| query.find(p).map(|start| start + p.len()))
            .or_else(|| {
                self.assistant_markers
                    .iter()
                    .filter(|m| !m.is_empty())
                    .filter_map(|m| query.rfind(m.as_str()).map(|start| start + m.len()))
                    .max()
            })?;
        Some((&query[..at], self.strip_end(&query[at..])))
    }

    fn strip_end<'q>(&self, mut text: &'q str) -> &'q str {
        loop {
            let before = text.len();
            text = text.trim_end();
            for suffix in self.strip_suffixes.iter().filter(|s| !s.is_empty()) {
                if let Some(rest) = text.strip_suffix(suffix.as_str()) {
                    text = rest;
                }
            }
            if text.len() == before {
                return text;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &str, prompt: Option<&str>, expected: Option<(&str, &str)>) {
        assert_eq!(
            QuerySplit::default().split(query, prompt),
            expected,
            "query {query:?}"
        );
    }

    #[test]
    fn splits_queries() {
        check("Q? A #### 4", Some("Q?"), Some(("Q?", " A #### 4")));
        check("<s>Q? A", Some("Q?"), Some(("<s>Q?", " A")));
        check("Q? A</s>", Some("Q?"), Some(("Q?", " A")));
        check(
            "Q? A<|im_end|>\n<|endoftext|>",
            Some("Q?"),
            Some(("Q?", " A")),
        );
        check(
            "Q? A<|im_end|><|endoftext|>  ",
            Some("Q?"),
            Some(("Q?", " A")),
        );
        check(
            "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\nA #### 4<|im_end|>",
            None,
            Some((
                "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n",
                "A #### 4",
            )),
        );
        // A prompt that is not in the query falls back to the marker.
        check(
            "<|im_start|>assistant\nA",
            Some("absent"),
            Some(("<|im_start|>assistant\n", "A")),
        );
        // The last assistant turn wins.
        check(
            "<|im_start|>assistant\nx<|im_start|>assistant\ny",
            None,
            Some(("<|im_start|>assistant\nx<|im_start|>assistant\n", "y")),
        );
        check(
            "<|start_header_id|>assistant<|end_header_id|>\n\n18<|eot_id|>",
            None,
            Some(("<|start_header_id|>assistant<|end_header_id|>\n\n", "18")),
        );
        check("no marker here", None, None);
        check("no marker here", Some(""), None);
        check("", None, None);
    }
}
