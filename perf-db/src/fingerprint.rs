//! Statement fingerprints: statements that pg_stat_statements (and
//! libpg_query) count as one query get one fingerprint.
//!
//! The statement is parsed (PostgreSQL dialect) and brought to a canonical
//! form before it is hashed: constants and `$n` parameters become one
//! placeholder (casts of them too), `= $1`, `= ANY($1)` and `IN (...)` lists
//! of any length read alike, aliases are dropped and select lists, FROM lists,
//! INSERT column lists and AND/OR operands are put in a fixed order, multi-row
//! VALUES count as one row, names of prepared statements, cursors,
//! savepoints and channels are ignored, and date-like digit runs in table names
//! (partitions such as `t_20210301`) are masked. Comments, whitespace and
//! keyword case never matter. What sqlparser cannot parse is fingerprinted
//! from its tokens with constants masked, so every statement gets one.

use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, InTarget, Insert, ObjectName, ObjectNamePart, Query, Select, SetExpr,
    Statement, TableFactor, Value, ValueWithSpan, visit_expressions_mut, visit_relations_mut,
    visit_statements_mut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Error, Result};

/// A 64-bit statement fingerprint (FNV-1a of the canonical form), stable
/// across processes and builds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = u64))]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fingerprint of one SQL text (several statements fingerprint as a whole).
pub fn fingerprint(sql: &str) -> Result<Fingerprint> {
    normalize(sql).map(|canonical| Fingerprint(fnv1a(&canonical)))
}

/// The canonical form behind [`fingerprint`].
pub fn normalize(sql: &str) -> Result<String> {
    let dialect = PostgreSqlDialect {};
    match Parser::parse_sql(&dialect, sql) {
        Ok(mut statements) => Ok(statements
            .iter_mut()
            .map(canonical_text)
            .collect::<Vec<_>>()
            .join("; ")),
        Err(_) => token_form(sql),
    }
}

fn placeholder() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Placeholder("?".to_owned())))
}

fn is_placeholder(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::Placeholder(ref p) if p == "?"))
}

/// The canonical text of one statement.
fn canonical_text(statement: &mut Statement) -> String {
    match statement {
        // The cursor or channel name does not change the query: the verb is enough.
        Statement::Close { .. }
        | Statement::Fetch { .. }
        | Statement::LISTEN { .. }
        | Statement::UNLISTEN { .. }
        | Statement::NOTIFY { .. } => statement
            .to_string()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => {
            canonicalize(statement);
            statement.to_string()
        }
    }
}

fn canonicalize(statement: &mut Statement) {
    // Names that do not change what runs.
    let _ = visit_statements_mut(statement, |s| {
        match s {
            Statement::Prepare { name, .. } => *name = "?".into(),
            Statement::Execute {
                name: Some(name), ..
            } => *name = ObjectName(vec![ObjectNamePart::Identifier("?".into())]),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    // Constants, parameters and their casts become one placeholder; IN lists collapse.
    let _ = visit_expressions_mut(statement, |e| {
        match e {
            Expr::Value(_) => *e = placeholder(),
            Expr::Cast { expr, .. } if is_placeholder(expr) => *e = placeholder(),
            Expr::Interval(_) => *e = placeholder(),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(statement, |e| {
        match e {
            Expr::In {
                target: InTarget::List(list),
                ..
            } if list.iter().all(is_placeholder) => {
                list.truncate(1);
            }
            // `= $1`, `= ANY($1)` and `IN ($1, ...)` are one query to pg_stat_statements.
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            }
            | Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } if is_placeholder(right) => {
                *e = Expr::In {
                    expr: left.clone(),
                    target: InTarget::List(vec![placeholder()]),
                    negated: false,
                    global: false,
                };
            }
            Expr::BinaryOp {
                op: BinaryOperator::And | BinaryOperator::Or,
                ..
            } => sort_chain(e),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    // Partition-like table names.
    let _ = visit_relations_mut(statement, |name| {
        for part in &mut name.0 {
            if let ObjectNamePart::Identifier(ident) = part {
                ident.value = mask_digit_runs(&ident.value);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    match statement {
        Statement::Query(q) => canonical_query(q),
        Statement::Insert(insert) => canonical_insert(insert),
        Statement::Prepare { statement, .. } | Statement::Explain { statement, .. } => {
            canonicalize(statement)
        }
        Statement::Deallocate { name, .. }
        | Statement::Savepoint { name }
        | Statement::ReleaseSavepoint { name } => {
            name.value = "?".to_owned();
        }
        Statement::Declare { stmts, .. } => {
            for d in stmts {
                d.names = vec!["?".into()];
                if let Some(q) = &mut d.for_query {
                    canonical_query(q);
                }
            }
        }
        _ => {}
    }
}

/// Sorts the operands of a chain of one boolean operator.
fn sort_chain(e: &mut Expr) {
    let Expr::BinaryOp { op, .. } = e else { return };
    let op = op.clone();
    let mut operands = Vec::new();
    collect(e.clone(), &op, &mut operands);
    operands.sort_by_key(ToString::to_string);
    let mut iter = operands.into_iter();
    let Some(first) = iter.next() else { return };
    *e = iter.fold(first, |left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: op.clone(),
        right: Box::new(right),
    });
}

fn collect(e: Expr, op: &BinaryOperator, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp { left, op: o, right } if &o == op => {
            collect(*left, op, out);
            collect(*right, op, out);
        }
        other => out.push(other),
    }
}

fn canonical_query(q: &mut Query) {
    if let Some(with) = &mut q.with {
        for cte in &mut with.cte_tables {
            canonical_query(&mut cte.query);
        }
    }
    canonical_set_expr(&mut q.body);
}

fn canonical_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => canonical_select(select),
        SetExpr::Query(q) => canonical_query(q),
        SetExpr::SetOperation { left, right, .. } => {
            canonical_set_expr(left);
            canonical_set_expr(right);
        }
        SetExpr::Values(values) => values.rows.truncate(1),
        _ => {}
    }
}

fn canonical_select(select: &mut Select) {
    for item in &mut select.projection {
        if let sqlparser::ast::SelectItem::ExprWithAlias { expr, .. } = item {
            *item = sqlparser::ast::SelectItem::UnnamedExpr(expr.clone());
        }
    }
    select.projection.sort_by_key(ToString::to_string);
    for table in &mut select.from {
        if let TableFactor::Table { alias, .. } = &mut table.relation {
            *alias = None;
        }
    }
    select.from.sort_by_key(ToString::to_string);
}

fn canonical_insert(insert: &mut Insert) {
    insert.columns.sort_by_key(ToString::to_string);
    if let Some(source) = &mut insert.source {
        canonical_query(source);
    }
}

/// Masks runs of 4 or more digits (dates, numbered partitions) in a name.
fn mask_digit_runs(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run = String::new();
    for c in name.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if run.len() >= 4 {
            out.push('?');
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// The fallback for statements the parser does not know: tokens, lowercased
/// words, constants masked, comments and whitespace dropped.
fn token_form(sql: &str) -> Result<String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| Error::Sql {
            message: e.message.clone(),
            line: e.location.line,
            column: e.location.column,
        })?;
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Whitespace(_) => {}
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::Placeholder(_)
            | Token::DollarQuotedString(_) => out.push("?".to_owned()),
            Token::Word(w) if w.quote_style.is_none() => out.push(w.value.to_lowercase()),
            other => out.push(other.to_string()),
        }
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_of_four_or_more_are_masked() {
        assert_eq!(mask_digit_runs("t_20210301_x"), "t_?_x");
        assert_eq!(mask_digit_runs("t_1"), "t_1");
        assert_eq!(mask_digit_runs("a123"), "a123");
    }

    #[test]
    fn unreadable_sql_is_an_error_not_a_panic() {
        let err = fingerprint("SELECT 'unterminated").unwrap_err();
        assert!(matches!(err, Error::Sql { .. }), "{err}");
        for garbage in ["", ";;;", "SELEC * FRM", "\u{0}", "((((", "$$"] {
            let _ = fingerprint(garbage);
        }
    }
}
