//! Property tests: on any input, verification returns (never panics) within its step budget, is
//! deterministic, and a maths answer is equal to itself.

use proptest::prelude::*;
use rewardkit_core::Budget;
use rewardkit_math::{parse_answer, verify, Judgement, Limits, MathOptions};

/// Strings made of maths tokens, so the parser gets deep rather than failing at the first byte.
fn mathy() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "1",
        "2",
        "0",
        "10",
        "3.5",
        "1,000",
        "x",
        "y",
        "e",
        "i",
        "\\pi",
        "\\infty",
        "+",
        "-",
        "*",
        "/",
        "^",
        "!",
        "%",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "\\{",
        "\\}",
        ",",
        "=",
        "<",
        "\\le",
        "\\pm",
        "\\frac",
        "\\dfrac12",
        "\\sqrt",
        "\\sqrt[3]",
        "\\cdot",
        "\\times",
        "\\cup",
        "\\left(",
        "\\right)",
        "^\\circ",
        "\\text{cm}",
        "\\boxed{",
        "$",
        "\\begin{pmatrix}",
        "\\end{pmatrix}",
        "&",
        "\\\\",
        "\\sin",
        "\\log_2",
        "\\binom",
        "|",
        " ",
        "1e5",
        "9999",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

/// Well-formed expressions, to check properties of answers that do parse.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(vec!["1", "2", "7", "x", "y", "\\pi", "3.5", "e", "i", "0"])
        .prop_map(str::to_owned);
    leaf.prop_recursive(5, 40, 2, |inner| {
        (inner.clone(), inner, 0..7u8).prop_map(|(a, b, op)| match op {
            0 => format!("{a}+{b}"),
            1 => format!("{a}-({b})"),
            2 => format!("({a})\\cdot({b})"),
            3 => format!("\\frac{{{a}}}{{{b}}}"),
            4 => format!("({a})^{{2}}"),
            5 => format!("\\sqrt{{{a}}}"),
            _ => format!("-({a})"),
        })
    })
}

fn budget() -> Budget {
    Budget {
        max_input_bytes: 1 << 20,
        max_steps: 200_000,
        timeout: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_and_stays_in_budget(gold in mathy(), pred in mathy()) {
        let options = MathOptions::default();
        let mut meter = budget().meter();
        let verdict = verify(&gold, &pred, &options, &mut meter);
        // Work is bounded by the step budget (a meter never counts far past its limit).
        prop_assert!(meter.steps() <= 300_000, "{} steps", meter.steps());
        let again = verify(&gold, &pred, &options, &mut budget().meter());
        prop_assert_eq!(verdict, again, "not deterministic");
    }

    #[test]
    fn arbitrary_bytes_never_panic(gold in ".{0,80}", pred in ".{0,200}") {
        let _ = verify(&gold, &pred, &MathOptions::default(), &mut budget().meter());
    }

    #[test]
    fn a_maths_answer_equals_itself(gold in expression()) {
        prop_assert!(parse_answer(&gold, &Limits::default(), &mut budget().meter()).is_ok(), "{gold:?}");
        let pred = format!("\\boxed{{{gold}}}");
        let verdict = verify(&gold, &pred, &MathOptions::default(), &mut budget().meter());
        let maths = verdict.gold.as_deref().is_some_and(|g| !g.starts_with("text "));
        if maths && verdict.judgement == Judgement::NotEqual {
            // Only values undefined or unbounded where evaluated may fail to equal themselves.
            prop_assert!(
                verdict.reason.contains("cannot evaluate") || verdict.reason.contains("one side"),
                "{gold:?}: {}", verdict.reason
            );
        }
    }
}
