//! The parser: tokens to a generic syntax tree of commands and tests,
//! before any command is known (RFC 5228 section 8.2).
//!
//! ```text
//! commands    = *command
//! command     = identifier arguments (";" / block)
//! block       = "{" commands "}"
//! arguments   = *argument [ test / test-list ]
//! argument    = string-list / number / tag
//! string-list = "[" string *("," string) "]" / string
//! test        = identifier arguments
//! test-list   = "(" test *("," test) ")"
//! ```
//!
//! Nesting (blocks inside blocks, tests inside tests) is bounded by
//! `Settings::max_nesting`, so a hostile script cannot exhaust the stack
//! here or in the compiler and interpreter, which recurse the same way.

use crate::error::{printable, CompileError};
use crate::lexer::{Pos, Token};

/// One argument as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `:name`, lowercased.
    Tag(String, Pos),
    /// A number.
    Number(u64, Pos),
    /// A single string (`list` false) or a bracketed list.
    Strings {
        /// The strings.
        values: Vec<String>,
        /// Whether it was written as `[...]`.
        list: bool,
        /// Where it starts.
        pos: Pos,
    },
}

impl Arg {
    /// Where the argument starts.
    pub fn pos(&self) -> Pos {
        match self {
            Arg::Tag(_, p) | Arg::Number(_, p) => *p,
            Arg::Strings { pos, .. } => *pos,
        }
    }
}

/// A command or a test: its name (lowercased), arguments, tests and, for
/// commands, its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The name, lowercased.
    pub name: String,
    /// Where the name starts.
    pub pos: Pos,
    /// The arguments before the tests.
    pub args: Vec<Arg>,
    /// The test or test list.
    pub tests: Vec<Node>,
    /// Whether the tests were written as a parenthesised list.
    pub test_list: bool,
    /// The block, for commands that have one.
    pub block: Option<Vec<Node>>,
}

/// Parses a token stream into commands.
/// `end` is where the script ends (for "found the end of the script").
pub fn parse(
    tokens: Vec<(Token, Pos)>,
    end: Pos,
    max_nesting: usize,
) -> Result<Vec<Node>, CompileError> {
    let mut p = Parser {
        tokens,
        i: 0,
        end,
        max_nesting,
    };
    let cmds = p.commands(0)?;
    if let Some((t, pos)) = p.tokens.get(p.i) {
        return Err(CompileError::new(
            *pos,
            format!("unexpected {}", t.describe()),
        ));
    }
    Ok(cmds)
}

struct Parser {
    tokens: Vec<(Token, Pos)>,
    i: usize,
    end: Pos,
    max_nesting: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.i).map(|(t, _)| t)
    }

    fn pos(&self) -> Pos {
        self.tokens.get(self.i).map(|(_, p)| *p).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<(Token, Pos)> {
        let t = self.tokens.get(self.i).cloned();
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    fn unexpected(&self, wanted: &str) -> CompileError {
        match self.tokens.get(self.i) {
            Some((t, pos)) => {
                CompileError::new(*pos, format!("expected {wanted}, found {}", t.describe()))
            }
            None => CompileError::new(
                self.end,
                format!("expected {wanted}, found the end of the script"),
            ),
        }
    }

    fn nest(&self, depth: usize) -> Result<(), CompileError> {
        if depth > self.max_nesting {
            Err(CompileError::new(
                self.pos(),
                format!("nested deeper than {} levels", self.max_nesting),
            ))
        } else {
            Ok(())
        }
    }

    fn commands(&mut self, depth: usize) -> Result<Vec<Node>, CompileError> {
        let mut out = Vec::new();
        while let Some(Token::Identifier(_)) = self.peek() {
            out.push(self.command(depth)?);
        }
        Ok(out)
    }

    fn command(&mut self, depth: usize) -> Result<Node, CompileError> {
        let mut node = self.node(depth, "a command")?;
        node.block = match self.peek() {
            Some(Token::Semicolon) => {
                self.next();
                None
            }
            Some(Token::LBrace) => {
                self.nest(depth + 1)?;
                self.next();
                let body = self.commands(depth + 1)?;
                if self.peek() != Some(&Token::RBrace) {
                    return Err(self.unexpected("a command or '}'"));
                }
                self.next();
                Some(body)
            }
            _ => {
                return Err(
                    self.unexpected(&format!("';' or '{{' after '{}'", printable(&node.name)))
                )
            }
        };
        Ok(node)
    }

    #[allow(clippy::type_complexity)]
    fn arguments(&mut self, depth: usize) -> Result<(Vec<Arg>, Vec<Node>, bool), CompileError> {
        let mut args = Vec::new();
        loop {
            let pos = self.pos();
            match self.peek() {
                Some(Token::Tag(_)) => {
                    if let Some((Token::Tag(t), p)) = self.next() {
                        args.push(Arg::Tag(t, p));
                    }
                }
                Some(Token::Number(_)) => {
                    if let Some((Token::Number(n), p)) = self.next() {
                        args.push(Arg::Number(n, p));
                    }
                }
                Some(Token::String(_)) => {
                    if let Some((Token::String(s), p)) = self.next() {
                        args.push(Arg::Strings {
                            values: vec![s],
                            list: false,
                            pos: p,
                        });
                    }
                }
                Some(Token::LBracket) => {
                    self.next();
                    let values = self.list(Token::RBracket, "',' or ']'", |p| match p.peek() {
                        Some(Token::String(s)) => {
                            let s = s.clone();
                            p.next();
                            Ok(s)
                        }
                        _ => Err(p.unexpected("a string in the list")),
                    })?;
                    args.push(Arg::Strings {
                        values,
                        list: true,
                        pos,
                    });
                }
                _ => break,
            }
        }
        match self.peek() {
            Some(Token::Identifier(_)) => {
                self.nest(depth + 1)?;
                let t = self.test(depth + 1)?;
                Ok((args, vec![t], false))
            }
            Some(Token::LParen) => {
                self.nest(depth + 1)?;
                self.next();
                let tests = self.list(Token::RParen, "',' or ')'", |p| p.test(depth + 1))?;
                Ok((args, tests, true))
            }
            _ => Ok((args, Vec::new(), false)),
        }
    }

    /// The items of a list whose opening token was just read: one or more,
    /// each read by `item`, separated by commas, up to and including
    /// `close`; `wanted` is what may follow an item.
    fn list<T>(
        &mut self,
        close: Token,
        wanted: &str,
        mut item: impl FnMut(&mut Self) -> Result<T, CompileError>,
    ) -> Result<Vec<T>, CompileError> {
        let mut items = Vec::new();
        loop {
            items.push(item(self)?);
            match self.peek() {
                Some(Token::Comma) => {}
                Some(t) if *t == close => {
                    self.next();
                    return Ok(items);
                }
                _ => return Err(self.unexpected(wanted)),
            }
            self.next();
        }
    }

    fn test(&mut self, depth: usize) -> Result<Node, CompileError> {
        self.node(depth, "a test")
    }

    /// A command's or a test's name (an identifier, lowercased) and its
    /// arguments, without a block; `wanted` names what is expected when
    /// there is no identifier.
    fn node(&mut self, depth: usize, wanted: &str) -> Result<Node, CompileError> {
        let (name, pos) = match self.peek() {
            Some(Token::Identifier(n)) => (n.to_ascii_lowercase(), self.pos()),
            _ => return Err(self.unexpected(wanted)),
        };
        self.next();
        let (args, tests, test_list) = self.arguments(depth)?;
        Ok(Node {
            name,
            pos,
            args,
            tests,
            test_list,
            block: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::tokenize;

    fn p(s: &str) -> Result<Vec<Node>, CompileError> {
        parse(tokenize(s)?, crate::lexer::end_pos(s), 32)
    }

    #[test]
    fn shape() {
        let cmds =
            p("if anyof (true, header :is \"a\" [\"b\", \"c\"]) { keep; } else { discard; }")
                .unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].name, "if");
        assert!(!cmds[0].test_list);
        assert!(cmds[0].tests[0].test_list);
        assert_eq!(cmds[0].tests[0].name, "anyof");
        assert_eq!(cmds[0].tests[0].tests.len(), 2);
        assert_eq!(cmds[1].name, "else");
    }

    #[test]
    fn errors() {
        let e = p("keep").unwrap_err();
        assert!(e.message.contains("';'"), "{e}");
        let e = p("if header [\"a\" \"b\"] {}").unwrap_err();
        assert!(e.message.contains("','"), "{e}");
        assert!(p("}").is_err());
        assert!(p("if () {}").is_err());
        // At the end of the script the error points there, not back.
        let e = p("if true {\n keep;\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1), "{e}");
        let e = p("if header [\"a\",").unwrap_err();
        assert!(e.message.contains("found the end"), "{e}");
        let e = p("if anyof(true,").unwrap_err();
        assert!(e.message.contains("found the end"), "{e}");
    }

    #[test]
    fn nesting_bound() {
        let deep = format!("{}{}", "if true {".repeat(40), "}".repeat(40));
        assert!(p(&deep).unwrap_err().message.contains("nested deeper"));
        let deep = format!("if {} true {{}}", "not ".repeat(100_000));
        assert!(p(&deep).unwrap_err().message.contains("nested deeper"));
    }
}
