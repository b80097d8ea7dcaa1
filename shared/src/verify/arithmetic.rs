//! Arithmetic consistency of math answers.
//!
//! Three checks, each with reason `arithmetic_mismatch`:
//! 1. every `<<expr=value>>` annotation evaluates to its value;
//! 2. every computation stated in prose (`16 - 3 = 13`, `8 x $5 x 60% = $24`)
//!    evaluates to what it claims;
//! 3. when a `#### answer` is given, it equals the last computation's result.
//!
//! A stated value may be rounded to its own precision (`10/3 = 3.33` holds);
//! prose also gets 1% relative slack for loose rounding in running text.

use super::Finding;
use super::answer::{MARKED, NUM, parse_num};
use crate::reasons::ReasonCode;
use regex::Regex;
use std::sync::LazyLock;

static ANNOTATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<<([^=<>]+)=([^<>]+)>>").unwrap());
static PROSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"((?:{NUM}\s*[-+*/x×÷]\s*)+{NUM})\s*=\s*({NUM})")).unwrap());

/// Evaluates `+ - * / x × ÷ ( )` over numbers as written (`$5`, `1,000`,
/// `60%` = 0.6). `None` for anything else or a division by zero.
pub fn eval_expr(expr: &str) -> Option<f64> {
    // Model output is untrusted: bound the work and the recursion depth.
    if expr.len() > MAX_EXPR_BYTES {
        return None;
    }
    let tokens = tokenize(expr)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        depth: 0,
    };
    let v = p.sum()?;
    (p.pos == tokens.len() && v.is_finite()).then_some(v)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(f64),
    Op(char),
    Open,
    Close,
}

fn tokenize(expr: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == '$' {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == ',') {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != ',').collect();
            let mut v: f64 = text.parse().ok()?;
            if i < chars.len() && chars[i] == '%' {
                v /= 100.0;
                i += 1;
            }
            out.push(Tok::Num(v));
        } else {
            out.push(match c {
                '+' | '-' | '*' | '/' => Tok::Op(c),
                'x' | 'X' | '×' => Tok::Op('*'),
                '÷' => Tok::Op('/'),
                '(' => Tok::Open,
                ')' => Tok::Close,
                _ => return None,
            });
            i += 1;
        }
    }
    Some(out)
}

/// Longest expression evaluated; longer ones are not checked.
const MAX_EXPR_BYTES: usize = 512;
/// Deepest nesting of parentheses and unary minus evaluated.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    tokens: &'a [Tok],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<Tok> {
        self.tokens.get(self.pos).copied()
    }
    fn sum(&mut self) -> Option<f64> {
        let mut v = self.product()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek() {
            self.pos += 1;
            let r = self.product()?;
            v = if op == '+' { v + r } else { v - r };
        }
        Some(v)
    }
    fn product(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek() {
            self.pos += 1;
            let r = self.unary()?;
            if op == '/' && r == 0.0 {
                return None;
            }
            v = if op == '*' { v * r } else { v / r };
        }
        Some(v)
    }
    fn unary(&mut self) -> Option<f64> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = self.atom();
        self.depth -= 1;
        v
    }
    fn atom(&mut self) -> Option<f64> {
        match self.peek()? {
            Tok::Op('-') => {
                self.pos += 1;
                Some(-self.unary()?)
            }
            Tok::Num(n) => {
                self.pos += 1;
                Some(n)
            }
            Tok::Open => {
                self.pos += 1;
                let v = self.sum()?;
                (self.peek()? == Tok::Close).then(|| self.pos += 1)?;
                Some(v)
            }
            _ => None,
        }
    }
}

/// Whether `computed` equals `stated` up to the precision `stated` is written in.
fn holds(computed: f64, stated_text: &str, relative_slack: f64) -> bool {
    let Some(stated) = parse_num(stated_text) else {
        return true;
    };
    let stated = if stated_text.trim_end().ends_with('%') {
        stated / 100.0
    } else {
        stated
    };
    let decimals = stated_text
        .split_once('.')
        .map_or(0, |(_, d)| d.chars().filter(char::is_ascii_digit).count());
    let rounding = 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9;
    let diff = (computed - stated).abs();
    diff <= rounding || diff <= relative_slack * stated.abs()
}

/// Number of computations stated in `output` (annotations and prose).
pub fn count_computations(output: &str) -> usize {
    output
        .lines()
        .map(|l| ANNOTATION.captures_iter(l).count() + PROSE.captures_iter(&ANNOTATION.replace_all(l, "")).count())
        .sum()
}

pub(super) fn check(output: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut last_result: Option<f64> = None;
    for line in output.lines() {
        for c in ANNOTATION.captures_iter(line) {
            let Some(v) = eval_expr(&c[1]) else { continue };
            if !holds(v, &c[2], 0.0) {
                out.push(Finding::new(
                    ReasonCode::ArithmeticMismatch,
                    format!("<<{}={}>> evaluates to {v}", &c[1], &c[2]),
                ));
            }
            last_result = parse_num(&c[2]).or(last_result);
        }
        let prose = ANNOTATION.replace_all(line, "");
        for c in PROSE.captures_iter(&prose) {
            let Some(v) = eval_expr(&c[1]) else { continue };
            if !holds(v, &c[2], 0.01) {
                out.push(Finding::new(
                    ReasonCode::ArithmeticMismatch,
                    format!("`{} = {}` evaluates to {v}", c[1].trim(), &c[2]),
                ));
            }
            last_result = parse_num(&c[2]).or(last_result);
        }
    }
    if let (Some(m), Some(last)) = (MARKED.captures_iter(output).last(), last_result)
        && let Some(fin) = parse_num(&m[1])
        && (fin - last).abs() > 1e-6 * fin.abs().max(1.0)
    {
        out.push(Finding::new(
            ReasonCode::ArithmeticMismatch,
            format!("final answer {fin} differs from the last computation's result {last}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_written_expressions() {
        assert_eq!(eval_expr("16 - 3"), Some(13.0));
        assert_eq!(eval_expr("8 x $5 x 60%"), Some(24.0));
        assert_eq!(eval_expr("(1,000 + 2) / 2"), Some(501.0));
        assert_eq!(eval_expr("-2 * -3"), Some(6.0));
        assert_eq!(eval_expr("1 / 0"), None);
        assert_eq!(eval_expr("2 + apples"), None);
        // Hostile input neither overflows the stack nor runs long.
        assert_eq!(
            eval_expr(&format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000))),
            None
        );
        assert_eq!(eval_expr(&"-".repeat(400)), None);
        assert_eq!(eval_expr(&format!("{}1{}", "(".repeat(20), ")".repeat(20))), Some(1.0));
    }

    #[test]
    fn consistent_work_passes() {
        let ok = "She has 16 - 3 = 13 eggs.\nShe sells 9 for 9 * $2 = $<<9*2=18>>18.\n#### 18";
        assert!(check(ok).is_empty(), "{:?}", check(ok));
        assert!(check("So 10 / 3 = 3.33 each.").is_empty());
    }

    #[test]
    fn mismatches_are_found() {
        let f = check("He pays 3 * 4 = <<3*4=14>>14 dollars.\n#### 14");
        assert!(f.iter().any(|f| f.detail.contains("<<3*4=14>>")), "{f:?}");
        let f = check("Then 7 + 5 = 13.");
        assert_eq!(f.len(), 1);
        let f = check("So 2 + 2 = 4.\n#### 5");
        assert!(f[0].detail.contains("final answer 5"), "{f:?}");
    }
}
