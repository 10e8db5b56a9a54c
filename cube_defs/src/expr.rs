//! The expression language of derived measures: `+ - * /`, parentheses, unary minus, numbers
//! and measure names (`txn_amount / txn_count`, `(a - b) / b * 100`). Parsed here into names
//! with their byte offsets; [`crate::validate`] resolves the names into [`crate::model::Expr`].

use crate::limits::{MAX_EXPR_DEPTH, MAX_EXPR_TOKENS};
use crate::model::BinOp;

/// An expression whose measure names are not resolved yet.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedExpr {
    /// A measure name and its byte offset in the expression text.
    Name(String, usize),
    Number(f64),
    Neg(Box<ParsedExpr>),
    Binary(BinOp, Box<ParsedExpr>, Box<ParsedExpr>),
}

/// A parse error at a byte offset of the expression text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Num(f64),
    Op(char),
    LParen,
    RParen,
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Name(text[start..i].to_string()), start));
        } else if c.is_ascii_digit() || c == '.' {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let n = text[start..i].parse::<f64>().map_err(|_| ExprError {
                offset: start,
                message: format!("'{}' is not a number", &text[start..i]),
            })?;
            out.push((Tok::Num(n), start));
        } else if "+-*/".contains(c) {
            out.push((Tok::Op(c), start));
            i += 1;
        } else if c == '(' {
            out.push((Tok::LParen, start));
            i += 1;
        } else if c == ')' {
            out.push((Tok::RParen, start));
            i += 1;
        } else {
            let ch = text[start..].chars().next().unwrap_or(c);
            return Err(ExprError {
                offset: start,
                message: format!(
                    "unexpected character '{ch}' (expressions use measure names, numbers, + - * / and parentheses)"
                ),
            });
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
    /// Parentheses and unary minus open around the current token (the parser recurses on
    /// each, so the depth is bounded by [`MAX_EXPR_DEPTH`]).
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(_, o)| *o)
    }
    fn error<T>(&self, message: impl Into<String>) -> Result<T, ExprError> {
        Err(ExprError {
            offset: self.offset(),
            message: message.into(),
        })
    }

    // sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<ParsedExpr, ExprError> {
        let mut left = self.product()?;
        while let Some(Tok::Op(c @ ('+' | '-'))) = self.peek() {
            let op = if *c == '+' { BinOp::Add } else { BinOp::Sub };
            self.at += 1;
            let right = self.product()?;
            left = ParsedExpr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    // product := unary (('*' | '/') unary)*
    fn product(&mut self) -> Result<ParsedExpr, ExprError> {
        let mut left = self.unary()?;
        while let Some(Tok::Op(c @ ('*' | '/'))) = self.peek() {
            let op = if *c == '*' { BinOp::Mul } else { BinOp::Div };
            self.at += 1;
            let right = self.unary()?;
            left = ParsedExpr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_EXPR_DEPTH`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ExprError>,
    ) -> Result<T, ExprError> {
        if self.depth >= MAX_EXPR_DEPTH {
            return self.error(format!(
                "the expression nests parentheses and minus signs more than {MAX_EXPR_DEPTH} deep"
            ));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    // unary := '-' unary | atom
    fn unary(&mut self) -> Result<ParsedExpr, ExprError> {
        if let Some(Tok::Op('-')) = self.peek() {
            return self.nested(|p| {
                p.at += 1;
                Ok(ParsedExpr::Neg(Box::new(p.unary()?)))
            });
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<ParsedExpr, ExprError> {
        let offset = self.offset();
        match self.toks.get(self.at).map(|(t, _)| t.clone()) {
            Some(Tok::Name(n)) => {
                self.at += 1;
                Ok(ParsedExpr::Name(n, offset))
            }
            Some(Tok::Num(n)) => {
                self.at += 1;
                Ok(ParsedExpr::Number(n))
            }
            Some(Tok::LParen) => self.nested(|p| {
                p.at += 1;
                let inner = p.sum()?;
                if p.peek() != Some(&Tok::RParen) {
                    return p.error("expected ')'");
                }
                p.at += 1;
                Ok(inner)
            }),
            Some(Tok::RParen) => self.error("unexpected ')'"),
            Some(Tok::Op(c)) => self.error(format!("unexpected '{c}'")),
            None => self.error("expression ends too early"),
        }
    }
}

/// Parses a derived measure's expression.
pub fn parse(text: &str) -> Result<ParsedExpr, ExprError> {
    let toks = tokenize(text)?;
    if toks.len() > MAX_EXPR_TOKENS {
        return Err(ExprError {
            offset: toks[MAX_EXPR_TOKENS].1,
            message: format!(
                "the expression has {} names, numbers and operators, more than the limit of {MAX_EXPR_TOKENS}",
                toks.len()
            ),
        });
    }
    let mut p = Parser {
        toks,
        at: 0,
        end: text.len(),
        depth: 0,
    };
    let e = p.sum()?;
    if p.at < p.toks.len() {
        return p.error("unexpected text after the expression");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, o: usize) -> Box<ParsedExpr> {
        Box::new(ParsedExpr::Name(n.into(), o))
    }

    #[test]
    fn precedence_and_offsets() {
        let e = parse("a + b * 2").unwrap();
        assert_eq!(
            e,
            ParsedExpr::Binary(
                BinOp::Add,
                name("a", 0),
                Box::new(ParsedExpr::Binary(
                    BinOp::Mul,
                    name("b", 4),
                    Box::new(ParsedExpr::Number(2.0))
                ))
            )
        );
        let e = parse("(a - b) / -b").unwrap();
        assert_eq!(
            e,
            ParsedExpr::Binary(
                BinOp::Div,
                Box::new(ParsedExpr::Binary(BinOp::Sub, name("a", 1), name("b", 5))),
                Box::new(ParsedExpr::Neg(name("b", 11)))
            )
        );
    }

    #[test]
    fn errors_point_at_the_offset() {
        assert_eq!(parse("a +").unwrap_err().offset, 3);
        assert_eq!(parse("a $ b").unwrap_err().offset, 2);
        assert_eq!(parse("(a + b").unwrap_err().message, "expected ')'");
        assert_eq!(parse("a b").unwrap_err().offset, 2);
    }

    #[test]
    fn deep_or_long_expressions_are_refused_without_overflowing_the_stack() {
        let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("more than 64 deep"), "{}", e.message);
        assert_eq!(e.offset, 64);
        let minus = format!("{}a", "-".repeat(1000));
        assert!(parse(&minus).unwrap_err().message.contains("deep"));
        let long = vec!["a"; 100_000].join(" + ");
        let e = parse(&long).unwrap_err();
        assert!(
            e.message.contains("more than the limit of 1024"),
            "{}",
            e.message
        );
        // At the limits, it parses.
        let ok = format!("{}a{}", "(".repeat(63), ")".repeat(63));
        assert!(parse(&ok).is_ok());
    }
}
