//! Parsers for the small languages inside table cells and list items: field
//! types, field rules, permission action lists and conditions.

use crate::diagnostic::{did_you_mean, Code, Diagnostic};
use crate::lex::{tokenize, Tok, Token};
use crate::span::{Span, Spanned};
use crate::syntax::*;

/// Words that start a rule, for "did you mean" on unknown rules.
pub const RULE_WORDS: &[&str] = &["required", "unique", "read only", "default", "min", "max", "pattern", "on delete", "renamed from"];

pub fn parse_type(text: &str, base: usize, cell: Span) -> Result<TypeSyntax, Diagnostic> {
    let toks = tokenize(text, base, Code::BadType)?;
    match toks.as_slice() {
        [] => Err(Diagnostic::new(Code::BadType, cell, "missing type")
            .label("this field has no type")
            .help("write a type such as `text`, `int`, `bool`, `date` or an entity name")),
        [Token { tok: Tok::Word(w), span }] => Ok(TypeSyntax::Named(Spanned::new(w.clone(), *span))),
        [Token { tok: Tok::Word(w), span: first }, Token { tok: Tok::LParen, .. }, rest @ ..] if w == "enum" => {
            let not_closed = |whole: Span| {
                Diagnostic::new(Code::BadType, whole, "`enum(` is not closed")
                    .label("expected `)` at the end")
                    .help("write the members as `enum(low, normal, high)`")
            };
            // `enum(` alone ends right after the parenthesis.
            let Some((last, inner)) = rest.split_last() else { return Err(not_closed(first.to(toks[1].span))) };
            let whole = first.to(last.span);
            if last.tok != Tok::RParen {
                return Err(not_closed(whole));
            }
            let mut members = Vec::new();
            for group in split_commas(inner) {
                match group {
                    [Token { tok: Tok::Word(m), span }] => members.push(Spanned::new(m.clone(), *span)),
                    [] => {
                        return Err(Diagnostic::new(Code::BadEnum, whole, "an enum member is missing between commas")
                            .label("empty member")
                            .help("write the members as `enum(low, normal, high)`"))
                    }
                    other => {
                        let span = other[0].span.to(other[other.len() - 1].span);
                        return Err(Diagnostic::new(Code::BadEnum, span, "an enum member must be one snake_case word")
                            .label("not a member name")
                            .help("members are written bare, without quotes: `enum(low, normal, high)`"));
                    }
                }
            }
            Ok(TypeSyntax::Enum { members, span: whole })
        }
        toks => {
            let span = toks[0].span.to(toks[toks.len() - 1].span);
            let help = match &toks[0].tok {
                Tok::Word(w) if w == "enum" => "write the members as `enum(low, normal, high)`",
                _ => "a type is one word (`text`, `int`, an entity name) or `enum(a, b, c)`",
            };
            Err(Diagnostic::new(Code::BadType, span, format!("`{}` is not a type", text.trim())).label("not a type").help(help))
        }
    }
}

fn split_commas(toks: &[Token]) -> Vec<&[Token]> {
    if toks.is_empty() {
        return Vec::new();
    }
    toks.split(|t| t.tok == Tok::Comma).collect()
}

fn literal(tok: &Token) -> Option<Literal> {
    let kind = match &tok.tok {
        Tok::Number(n) => LiteralKind::Number(n.clone()),
        Tok::Str(s) => LiteralKind::String(s.clone()),
        Tok::Date(d) => LiteralKind::Date(d.clone()),
        Tok::Word(w) => LiteralKind::Word(w.clone()),
        _ => return None,
    };
    Some(Literal { kind, span: tok.span })
}

fn word(tok: &Token) -> Option<&str> {
    match &tok.tok {
        Tok::Word(w) => Some(w.as_str()),
        _ => None,
    }
}

/// Parses the rules cell. Every rule that cannot be read is reported; the
/// rest are returned.
pub fn parse_rules(text: &str, base: usize, cell: Span) -> (Vec<RuleSyntax>, Vec<Diagnostic>) {
    let toks = match tokenize(text, base, Code::UnknownRule) {
        Ok(t) => t,
        Err(d) => return (Vec::new(), vec![d]),
    };
    let mut rules = Vec::new();
    let mut diags = Vec::new();
    if toks.is_empty() {
        return (rules, diags);
    }
    let groups = split_commas(&toks);
    let last_index = groups.len() - 1;
    for (gi, group) in groups.into_iter().enumerate() {
        if group.is_empty() {
            if gi == last_index && gi > 0 {
                continue; // a trailing comma is harmless
            }
            diags.push(
                Diagnostic::new(Code::UnknownRule, cell, "an empty rule between commas")
                    .label("two commas with nothing between")
                    .help("remove the extra comma"),
            );
            continue;
        }
        match parse_rule(group) {
            Ok(kind) => {
                let span = group[0].span.to(group[group.len() - 1].span);
                rules.push(RuleSyntax { kind, span });
            }
            Err(d) => diags.push(d),
        }
    }
    (rules, diags)
}

fn parse_rule(g: &[Token]) -> Result<RuleKind, Diagnostic> {
    let span = g[0].span.to(g[g.len() - 1].span);
    let words: Vec<Option<&str>> = g.iter().map(word).collect();
    let lit_err = |what: &str, tok: Option<&Token>| {
        let at = tok.map_or(span, |t| t.span);
        Diagnostic::new(Code::UnknownRule, at, format!("`{what}` needs a value")).label("expected a value here")
    };
    match words.as_slice() {
        [Some("required")] => Ok(RuleKind::Required),
        [Some("unique")] => Ok(RuleKind::Unique),
        [Some("read"), Some("only")] => Ok(RuleKind::ReadOnly),
        [Some("default"), ..] => match g {
            [_, v] => literal(v).map(RuleKind::Default).ok_or_else(|| lit_err("default", Some(v))),
            [_] => Err(lit_err("default", None).help("for example `default 0`, `default \"text\"`, `default now`")),
            [_, value, extra @ ..] => {
                // Two words are most likely unquoted text; anything else (`1.`) a
                // malformed value.
                let help = if matches!(value.tok, Tok::Word(_)) {
                    "quote a text default with spaces: `default \"two words\"`"
                } else {
                    "a default is a single value, like `default 0`, `default 1.5` or `default \"text\"`"
                };
                Err(Diagnostic::new(Code::UnknownRule, extra[0].span.to(extra[extra.len() - 1].span), "a default is one value")
                    .label("unexpected after the default value")
                    .help(help))
            }
            [] => unreachable!("rule groups are never empty"),
        },
        [Some("min"), ..] | [Some("max"), ..] => {
            let name = words[0].unwrap_or_default();
            match g {
                [_, v] => {
                    let lit = literal(v).ok_or_else(|| lit_err(name, Some(v)))?;
                    Ok(if name == "min" { RuleKind::Min(lit) } else { RuleKind::Max(lit) })
                }
                _ => Err(lit_err(name, g.get(1)).help(format!("for example `{name} 10`"))),
            }
        }
        [Some("pattern"), ..] => match g {
            [_, Token { tok: Tok::Str(s), span }] => Ok(RuleKind::Pattern(Spanned::new(s.clone(), *span))),
            _ => Err(Diagnostic::new(Code::UnknownRule, span, "`pattern` needs a regular expression in double quotes")
                .label("expected `pattern \"regex\"`")
                .help("for example `pattern \"[A-Z]{3}-[0-9]+\"`")),
        },
        [Some("on"), Some("delete"), rest @ ..] => {
            let action = match rest {
                [Some("cascade")] => Some(OnDeleteSyntax::Cascade),
                [Some("restrict")] => Some(OnDeleteSyntax::Restrict),
                [Some("set"), Some("null")] => Some(OnDeleteSyntax::SetNull),
                _ => None,
            };
            match action {
                Some(a) => Ok(RuleKind::OnDelete(Spanned::new(a, g[2].span.to(g[g.len() - 1].span)))),
                None => {
                    let at = if g.len() > 2 { g[2].span.to(g[g.len() - 1].span) } else { span };
                    let written: Vec<&str> = rest.iter().map(|w| w.unwrap_or("?")).collect();
                    let help = did_you_mean(&written.join(" "), ["cascade", "restrict", "set null"])
                        .unwrap_or_else(|| "write `on delete cascade`, `on delete restrict` or `on delete set null`".to_string());
                    Err(Diagnostic::new(Code::UnknownRule, at, "`on delete` takes `cascade`, `restrict` or `set null`")
                        .label("not an on-delete action")
                        .help(help))
                }
            }
        }
        [Some("renamed"), Some("from"), Some(old)] => Ok(RuleKind::RenamedFrom(Spanned::new(old.to_string(), g[2].span))),
        [Some("renamed"), ..] => {
            Err(Diagnostic::new(Code::BadRename, span, "`renamed from` needs the old field name").label("expected `renamed from old_name`"))
        }
        _ => {
            if let [a, Some(Tok::DotDot), b] = g.iter().map(|t| Some(&t.tok)).collect::<Vec<_>>().as_slice() {
                let _ = (a, b);
                let lo = literal(&g[0]).ok_or_else(|| bound_err(&g[0]))?;
                let hi = literal(&g[2]).ok_or_else(|| bound_err(&g[2]))?;
                return Ok(RuleKind::Range(Some(lo), Some(hi)));
            }
            match g {
                [lo, Token { tok: Tok::DotDot, .. }] => return Ok(RuleKind::Range(Some(literal(lo).ok_or_else(|| bound_err(lo))?), None)),
                [Token { tok: Tok::DotDot, .. }, hi] => return Ok(RuleKind::Range(None, Some(literal(hi).ok_or_else(|| bound_err(hi))?))),
                _ => {}
            }
            let written = g.iter().take(2).filter_map(word).collect::<Vec<_>>().join(" ");
            let first = words[0].unwrap_or_default();
            let help = did_you_mean(&written, RULE_WORDS.iter().copied())
                .or_else(|| did_you_mean(first, RULE_WORDS.iter().copied()))
                .or_else(|| {
                    if written == "not null" || matches!(first, "mandatory" | "notnull" | "nonnull") {
                        Some("did you mean `required`?".to_string())
                    } else if matches!(first, "optional" | "nullable") {
                        Some("fields are optional unless marked `required`; remove this rule".to_string())
                    } else if first == "references" || first == "ref" {
                        Some("a reference is written as the entity name in the type column".to_string())
                    } else {
                        Some(format!("rules are: {}", RULE_WORDS.join(", ") + ", N..M"))
                    }
                });
            Err(Diagnostic::new(Code::UnknownRule, span, format!("unknown rule `{}`", spanned_text(g)))
                .label("not a rule")
                .maybe_help(help))
        }
    }
}

fn bound_err(tok: &Token) -> Diagnostic {
    Diagnostic::new(Code::BadBounds, tok.span, format!("{} is not a bound", tok.tok.describe()))
        .label("expected a number or a date")
        .help("write bounds as `1..80`, `min 0` or `max 100`")
}

fn spanned_text(g: &[Token]) -> String {
    g.iter()
        .map(|t| match &t.tok {
            Tok::Word(w) | Tok::Number(w) | Tok::Date(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            other => other.describe().trim_matches('`').to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the part of a permission line before the colon: `read, update`,
/// `update role`.
pub fn parse_targets(text: &str, base: usize, span: Span) -> Result<Vec<ActionTarget>, Diagnostic> {
    let toks = tokenize(text, base, Code::MalformedPermission)?;
    let mut out = Vec::new();
    if toks.is_empty() {
        return Err(Diagnostic::new(Code::MalformedPermission, span, "a permission line needs actions before the colon")
            .label("no action")
            .help("write `- read: condition`, `- update, delete: condition`"));
    }
    for group in split_commas(&toks) {
        match group {
            [Token { tok: Tok::Word(a), span }] => out.push(ActionTarget { action: Spanned::new(a.clone(), *span), field: None }),
            [Token { tok: Tok::Word(a), span: s1 }, Token { tok: Tok::Word(f), span: s2 }] => {
                out.push(ActionTarget { action: Spanned::new(a.clone(), *s1), field: Some(Spanned::new(f.clone(), *s2)) })
            }
            [] => {
                return Err(Diagnostic::new(Code::MalformedPermission, span, "an action is missing between commas")
                    .label("empty action")
                    .help("write `- update, delete: condition`"))
            }
            other => {
                let s = other[0].span.to(other[other.len() - 1].span);
                return Err(Diagnostic::new(Code::MalformedPermission, s, "expected an action (`read`, `create`, `update`, `delete`)")
                    .label("not an action")
                    .help("separate actions with commas: `- update, delete: condition`"));
            }
        }
    }
    Ok(out)
}

/// Parses a permission condition.
pub fn parse_condition(text: &str, base: usize, span: Span) -> Result<Condition, Diagnostic> {
    let toks = tokenize(text, base, Code::ConditionSyntax)?;
    if toks.is_empty() {
        return Err(Diagnostic::new(Code::ConditionSyntax, span, "a permission line needs a condition after the colon")
            .label("no condition")
            .help("for example `signed in`, `owner = me`, `admin`, or `anyone`"));
    }
    let mut p = CondParser { toks: &toks, pos: 0, end: Span::new(span.end, span.end) };
    let cond = p.or_expr()?;
    if let Some(t) = p.peek() {
        let help = match &t.tok {
            Tok::Word(w) if w == "in" => "`in` goes with `signed in`",
            Tok::Word(_) | Tok::Str(_) | Tok::Number(_) => "combine conditions with `and` or `or`",
            Tok::RParen => "this `)` has no matching `(`",
            _ => "a condition is terms joined by `and` / `or`",
        };
        return Err(Diagnostic::new(Code::ConditionSyntax, t.span, format!("unexpected {} in condition", t.tok.describe()))
            .label("expected `and`, `or` or the end of the line")
            .help(help));
    }
    Ok(cond)
}

struct CondParser<'t> {
    toks: &'t [Token],
    pos: usize,
    /// An empty span at the end of the condition, for "ends early" errors.
    end: Span,
}

impl<'t> CondParser<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.toks.get(self.pos)
    }

    fn peek_word(&self) -> Option<&'t str> {
        self.peek().and_then(word)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    fn or_expr(&mut self) -> Result<Condition, Diagnostic> {
        let mut items = vec![self.and_expr()?];
        while self.peek_word() == Some("or") {
            self.pos += 1;
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 { items.pop().expect("one item") } else { Condition::Or(items) })
    }

    fn and_expr(&mut self) -> Result<Condition, Diagnostic> {
        let mut items = vec![self.term()?];
        while self.peek_word() == Some("and") {
            self.pos += 1;
            items.push(self.term()?);
        }
        Ok(if items.len() == 1 { items.pop().expect("one item") } else { Condition::And(items) })
    }

    fn expected_term(&self, after: Option<&Token>) -> Diagnostic {
        match self.peek() {
            Some(t) => Diagnostic::new(Code::ConditionSyntax, t.span, format!("expected a condition, found {}", t.tok.describe()))
                .label("expected a role, `anyone`, `signed in`, a comparison or `(`"),
            None => {
                let at = after.map_or(self.end, |t| t.span);
                let what = after.map_or("the colon".to_string(), |t| t.tok.describe());
                Diagnostic::new(Code::ConditionSyntax, at, format!("the condition ends after {what}"))
                    .label("expected a condition after this")
                    .help("for example `owner = me`, `admin`, `signed in`")
            }
        }
    }

    fn term(&mut self) -> Result<Condition, Diagnostic> {
        let prev = self.pos.checked_sub(1).and_then(|i| self.toks.get(i));
        let Some(tok) = self.peek() else { return Err(self.expected_term(prev)) };
        match &tok.tok {
            Tok::LParen => {
                self.pos += 1;
                let inner = self.or_expr()?;
                match self.next() {
                    Some(Token { tok: Tok::RParen, .. }) => Ok(inner),
                    Some(t) => Err(Diagnostic::new(Code::ConditionSyntax, t.span, format!("expected `)`, found {}", t.tok.describe()))
                        .label("expected `)`")),
                    None => Err(Diagnostic::new(Code::ConditionSyntax, tok.span, "this `(` is not closed")
                        .label("unclosed parenthesis")
                        .help("add `)` after the grouped condition")),
                }
            }
            // Like `anyone` and `signed`, `not`, `and` and `or` are also
            // field names when a path continues after them (`not = true`).
            Tok::Word(w) => match w.as_str() {
                "not" if !self.next_is_path_continuation() => {
                    self.pos += 1;
                    let inner = self.term()?;
                    Ok(Condition::Not(Box::new(inner), tok.span))
                }
                "and" | "or" if !self.next_is_path_continuation() => Err(self.expected_term(prev)),
                "anyone" if !self.next_is_path_continuation() => {
                    self.pos += 1;
                    Ok(Condition::Anyone(tok.span))
                }
                "signed" if !self.next_is_path_continuation() => {
                    self.pos += 1;
                    match self.next() {
                        Some(Token { tok: Tok::Word(i), span }) if i == "in" => Ok(Condition::SignedIn(tok.span.to(*span))),
                        _ => Err(Diagnostic::new(Code::ConditionSyntax, tok.span, "`signed` must be followed by `in`")
                            .label("incomplete")
                            .help("write `signed in`")),
                    }
                }
                _ => {
                    if self.next_is_path_continuation() {
                        self.comparison()
                    } else {
                        self.pos += 1;
                        Ok(Condition::Role(Spanned::new(w.clone(), tok.span)))
                    }
                }
            },
            _ => Err(self.expected_term(prev)),
        }
    }

    fn next_is_path_continuation(&self) -> bool {
        matches!(self.toks.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Dot | Tok::Eq | Tok::Ne))
    }

    fn comparison(&mut self) -> Result<Condition, Diagnostic> {
        let mut path = Vec::new();
        loop {
            match self.next() {
                Some(Token { tok: Tok::Word(w), span }) => path.push(Spanned::new(w.clone(), *span)),
                other => {
                    let at = other.map_or(self.end, |t| t.span);
                    return Err(
                        Diagnostic::new(Code::ConditionSyntax, at, "expected a field name after `.`").label("expected a field name")
                    );
                }
            }
            if self.peek().map(|t| &t.tok) == Some(&Tok::Dot) {
                self.pos += 1;
            } else {
                break;
            }
        }
        let op = match self.next() {
            Some(Token { tok: Tok::Eq, span }) => Spanned::new(CompareOp::Eq, *span),
            Some(Token { tok: Tok::Ne, span }) => Spanned::new(CompareOp::Ne, *span),
            other => {
                let at = other.map_or(self.end, |t| t.span);
                return Err(
                    Diagnostic::new(Code::ConditionSyntax, at, "expected `=` or `!=` after the path").label("expected a comparison")
                );
            }
        };
        match self.next() {
            Some(t) => match literal(t) {
                Some(value) => Ok(Condition::Compare { path, op, value }),
                None => Err(Diagnostic::new(Code::ConditionSyntax, t.span, format!("expected a value, found {}", t.tok.describe()))
                    .label("expected `me`, `true`, `false`, a number, a \"string\" or an enum member")),
            },
            None => Err(Diagnostic::new(Code::ConditionSyntax, op.span, "the comparison has no value")
                .label("expected a value after this")
                .help("for example `owner = me`, `done = false`, `status = open`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(s: &str) -> Condition {
        parse_condition(s, 0, Span::new(0, s.len())).unwrap()
    }

    #[test]
    fn and_binds_tighter_than_or() {
        match cond("a or b and c") {
            Condition::Or(items) => {
                assert!(matches!(items[0], Condition::Role(_)));
                assert!(matches!(items[1], Condition::And(_)));
            }
            other => panic!("{other:?}"),
        }
        match cond("(a or b) and not signed in") {
            Condition::And(items) => {
                assert!(matches!(items[0], Condition::Or(_)));
                assert!(matches!(&items[1], Condition::Not(inner, _) if matches!(**inner, Condition::SignedIn(_))));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_and_values() {
        match cond("project.owner = me") {
            Condition::Compare { path, op, value } => {
                assert_eq!(path.iter().map(|p| p.value.as_str()).collect::<Vec<_>>(), ["project", "owner"]);
                assert_eq!(op.value, CompareOp::Eq);
                assert_eq!(value.kind, LiteralKind::Word("me".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keywords_followed_by_an_operator_are_field_names() {
        match cond("not = true and and.x != 1 or not or = me") {
            Condition::Or(items) => {
                assert!(matches!(&items[0], Condition::And(a) if a.iter().all(|c| matches!(c, Condition::Compare { .. }))));
                assert!(matches!(&items[1], Condition::Not(inner, _) if matches!(**inner, Condition::Compare { .. })));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_condition("owner = me or", 0, Span::new(0, 13)).unwrap_err();
        assert_eq!(e.span, Span::new(11, 13));
        let e = parse_condition("(admin or member", 0, Span::new(0, 16)).unwrap_err();
        assert_eq!(e.span, Span::new(0, 1));
    }

    #[test]
    fn rules_parse_with_commas_inside_strings() {
        let text = r#"required, pattern "a,b", default "x, y", 1..80, on delete set null, renamed from old"#;
        let (rules, diags) = parse_rules(text, 0, Span::new(0, text.len()));
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(rules.len(), 6);
        assert!(matches!(&rules[1].kind, RuleKind::Pattern(p) if p.value == "a,b"));
        assert!(matches!(&rules[4].kind, RuleKind::OnDelete(a) if a.value == OnDeleteSyntax::SetNull));
    }

    #[test]
    fn unclosed_enum_is_an_error() {
        for text in ["enum(", "enum(a", "enum(a,"] {
            let e = parse_type(text, 0, Span::new(0, text.len())).unwrap_err();
            assert_eq!((e.message.as_str(), e.span), ("`enum(` is not closed", Span::new(0, text.len())), "{text}");
        }
    }

    #[test]
    fn unknown_rules_suggest() {
        let text = "requird, uniq";
        let (_, diags) = parse_rules(text, 0, Span::new(0, text.len()));
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `required`?"));
        assert_eq!(diags[1].help.as_deref(), Some("did you mean `unique`?"));
    }
}
