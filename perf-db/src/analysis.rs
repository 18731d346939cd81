//! What a statement touches: the tables it reads or writes and the columns it
//! filters, joins, groups and orders by, with the kind of predicate, with
//! table aliases, CTEs, subqueries and views resolved. This is what index
//! advice starts from.
//!
//! Views are expanded from their definitions ([`Views`], read from
//! `pg_views` by [`Views::from_catalog`]): a column of a simple view (one
//! table, no join) is reported on the base table under its base name, so
//! advice for `SELECT * FROM active_users WHERE email = $1` is an index on
//! `users (email)`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, CteAsMaterialized, Expr, FromTable, GroupByExpr, InTarget,
    JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, OrderByExpr, OrderByKind,
    OrderBySort, Query, Select, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, Value,
    visit_relations,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use crate::{Error, Fingerprint, Result, fingerprint};

/// Where in the statement a column is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Clause {
    /// `WHERE` (also of UPDATE and DELETE).
    Where,
    /// A join condition.
    Join,
    /// `GROUP BY`.
    GroupBy,
    /// `ORDER BY`.
    OrderBy,
}

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PredicateKind {
    /// `=`, `IN (...)`, `= ANY(...)`, or equal to another column (a join key).
    Equality,
    /// `<`, `<=`, `>`, `>=`, `BETWEEN`.
    Range,
    /// `LIKE 'abc%'`: a constant prefix a btree can use.
    LikePrefix,
    /// Any other `LIKE`/`ILIKE`.
    Like,
    /// `IS NULL` / `IS NOT NULL`.
    IsNull,
}

/// One use of a column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnUse {
    /// The table the column belongs to, when it can be told (aliases resolved).
    pub table: Option<String>,
    /// Column name.
    pub column: String,
    /// Where it is used.
    pub clause: Clause,
    /// How it is compared (`None` in GROUP BY and ORDER BY).
    pub predicate: Option<PredicateKind>,
}

/// A column, with its table when it can be told.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ColumnRef {
    /// The table (aliases, views and inlined CTEs resolved).
    pub table: Option<String>,
    /// Column name.
    pub column: String,
}

/// One key of an `ORDER BY`, resolved to a column (positions such as
/// `ORDER BY 1` and output aliases included).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderKey {
    /// The column.
    pub column: ColumnRef,
    /// `DESC`.
    pub descending: bool,
    /// Where NULLs sort: PostgreSQL's default is last for `ASC`, first for `DESC`.
    pub nulls_first: bool,
}

/// The analysis of one SQL text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueryAnalysis {
    /// Fingerprint (see [`crate::fingerprint`]).
    pub fingerprint: Fingerprint,
    /// Real tables read or written (CTE names and derived tables excluded).
    pub tables: BTreeSet<String>,
    /// Column uses, without duplicates, in a stable order.
    pub columns: Vec<ColumnUse>,
    /// Columns compared for equality with something that is not another
    /// column of the statement (a constant, a parameter, `IN (...)`, `= ANY`):
    /// the columns an index can look up directly.
    pub bound_columns: Vec<ColumnRef>,
    /// Column-to-column equalities (`a.x = b.y`, in `ON` or `WHERE`): join keys.
    pub join_keys: Vec<(ColumnRef, ColumnRef)>,
    /// Each `ORDER BY` of the statement, its keys in order.
    pub orderings: Vec<Vec<OrderKey>>,
    /// Columns an `UPDATE` assigns (they decide whether an index breaks HOT updates).
    pub updated_columns: Vec<ColumnRef>,
    /// Whether PostgreSQL plans it (queries, `INSERT`, `UPDATE`, `DELETE`):
    /// DDL, utility and transaction statements have no plan an index changes.
    pub planned: bool,
}

impl QueryAnalysis {
    /// The columns of `table` that an index can look up by equality: the
    /// bound columns, and the columns a bound column equals through join keys
    /// (`blogs.id = 1 AND blogs.id = posts.blog_id` binds `posts.blog_id`),
    /// as PostgreSQL's equivalence classes do. Sorted, without duplicates.
    ///
    /// ```
    /// let a = perf_db::analyze("SELECT * FROM blogs JOIN posts ON blogs.id = posts.blog_id WHERE blogs.id = 1")?;
    /// assert_eq!(a.equality_columns("posts"), ["blog_id"]);
    /// assert_eq!(a.equality_columns("blogs"), ["id"]);
    /// # Ok::<(), perf_db::Error>(())
    /// ```
    pub fn equality_columns(&self, table: &str) -> Vec<String> {
        let mut bound: BTreeSet<&ColumnRef> = self.bound_columns.iter().collect();
        // Propagate through join keys until nothing changes (classes are small).
        loop {
            let before = bound.len();
            for (a, b) in &self.join_keys {
                if bound.contains(a) {
                    bound.insert(b);
                }
                if bound.contains(b) {
                    bound.insert(a);
                }
            }
            if bound.len() == before {
                break;
            }
        }
        bound
            .into_iter()
            .filter(|c| c.table.as_deref() == Some(table))
            .map(|c| c.column.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The columns of `table` that it joins on to another table (the inner
    /// side of a nested loop looks them up), sorted, without duplicates.
    pub fn join_columns(&self, table: &str) -> Vec<String> {
        self.join_keys
            .iter()
            .flat_map(|(a, b)| [(a, b), (b, a)])
            .filter(|(mine, other)| {
                mine.table.as_deref() == Some(table) && mine.table != other.table
            })
            .map(|(mine, _)| mine.column.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// Analyzes SQL (PostgreSQL dialect). SQL the parser cannot read is an
/// [`Error::Sql`] with the position, never a panic.
///
/// ```
/// use perf_db::{analyze, Clause, PredicateKind};
/// let a = analyze("SELECT o.total FROM orders o JOIN customers c ON c.id = o.customer_id \
///                  WHERE o.created_at > $1 AND c.email LIKE 'ann%' ORDER BY o.created_at")?;
/// assert!(a.tables.contains("orders") && a.tables.contains("customers"));
/// assert!(a.columns.iter().any(|u| u.table.as_deref() == Some("orders") && u.column == "created_at"
///     && u.clause == Clause::Where && u.predicate == Some(PredicateKind::Range)));
/// assert!(a.columns.iter().any(|u| u.column == "email" && u.predicate == Some(PredicateKind::LikePrefix)));
/// # Ok::<(), perf_db::Error>(())
/// ```
pub fn analyze(sql: &str) -> Result<QueryAnalysis> {
    analyze_with_views(sql, &Views::default())
}

/// View definitions by name (`view` for the `public` schema, and
/// `schema.view`), used by [`analyze_with_views`] to see through views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Views {
    definitions: BTreeMap<String, String>,
}

/// How deep views built on views are followed.
const MAX_VIEW_DEPTH: usize = 8;

impl Views {
    /// No views.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a view: its name and its `SELECT`.
    pub fn insert(&mut self, name: impl Into<String>, definition: impl Into<String>) {
        self.definitions.insert(name.into(), definition.into());
    }

    /// The views of the connected database (system schemas excluded).
    pub async fn from_catalog(client: &tokio_postgres::Client) -> Result<Self> {
        let rows = client
            .query(
                "/* perf-db */ SELECT schemaname::text, viewname::text, definition FROM pg_views
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .await
            .map_err(crate::error::db_error)?;
        let mut views = Self::new();
        for row in rows {
            let (schema, name, definition): (String, String, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            let Some(definition) = definition else {
                continue;
            };
            if schema == "public" {
                views.insert(name.clone(), definition.clone());
            }
            views.insert(format!("{schema}.{name}"), definition);
        }
        Ok(views)
    }

    /// How many names are known.
    pub fn len(&self) -> usize {
        self.definitions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }

    fn query(&self, name: &str) -> Option<Query> {
        let sql = self.definitions.get(name)?;
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        statements.into_iter().find_map(|s| match s {
            Statement::Query(q) => Some(*q),
            _ => None,
        })
    }
}

/// [`analyze`], seeing through the given views: their tables count as the
/// statement's, and columns of simple views land on the base table.
///
/// ```
/// use perf_db::{analyze_with_views, Views};
/// let mut views = Views::new();
/// views.insert("active_users", "SELECT u.id, u.email AS login FROM users u WHERE u.active");
/// let a = analyze_with_views("SELECT * FROM active_users WHERE login = $1", &views)?;
/// assert_eq!(a.tables.iter().collect::<Vec<_>>(), ["users"]);
/// assert!(a.columns.iter().any(|c| c.table.as_deref() == Some("users") && c.column == "email"));
/// # Ok::<(), perf_db::Error>(())
/// ```
pub fn analyze_with_views(sql: &str, views: &Views) -> Result<QueryAnalysis> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(parse_error)?;
    let planned = !statements.is_empty()
        && statements.iter().all(|s| {
            matches!(
                s,
                Statement::Query(_)
                    | Statement::Insert(_)
                    | Statement::Update(_)
                    | Statement::Delete(_)
            )
        });
    let mut walker = Walker::new(views);
    for statement in &statements {
        walker.statement(statement);
    }
    let mut columns: Vec<ColumnUse> = walker
        .columns
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    columns.sort();
    let dedup = |mut v: Vec<ColumnRef>| {
        v.sort();
        v.dedup();
        v
    };
    let mut join_keys = walker.join_keys;
    join_keys.sort();
    join_keys.dedup();
    Ok(QueryAnalysis {
        fingerprint: fingerprint(sql)?,
        tables: walker.tables,
        columns,
        bound_columns: dedup(walker.bound),
        join_keys,
        orderings: walker.orderings,
        updated_columns: dedup(walker.updated),
        planned,
    })
}

fn parse_error(e: ParserError) -> Error {
    let message = e.to_string();
    // sqlparser ends messages with "at Line: L, Column: C".
    let number_after = |key: &str| {
        message
            .split(key)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Error::Sql {
        line: number_after("Line:"),
        column: number_after("Column:"),
        message,
    }
}

/// The real table behind a name in FROM, and for a view the base column of
/// each of its columns (`None`: computed, not a base column; a name not
/// listed is the base column of the same name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    table: String,
    renames: BTreeMap<String, Option<String>>,
}

impl Target {
    fn table(table: String) -> Self {
        Self {
            table,
            renames: BTreeMap::new(),
        }
    }

    fn column(&self, name: &str) -> Option<String> {
        match self.renames.get(name) {
            Some(base) => base.clone(),
            None => Some(name.to_owned()),
        }
    }
}

/// Names visible in one SELECT: alias or table name -> real table (`None`
/// for CTEs and derived tables).
#[derive(Debug, Default, Clone)]
struct Scope {
    names: BTreeMap<String, Option<Target>>,
}

impl Scope {
    /// The only real table in scope, for unqualified columns.
    fn single_table(&self) -> Option<Target> {
        let real: BTreeSet<&Target> = self.names.values().flatten().collect();
        if real.len() == 1 {
            real.into_iter().next().cloned()
        } else {
            None
        }
    }
}

#[derive(Debug)]
struct Walker<'v> {
    views: &'v Views,
    expanding: Vec<String>,
    tables: BTreeSet<String>,
    columns: Vec<ColumnUse>,
    bound: Vec<ColumnRef>,
    join_keys: Vec<(ColumnRef, ColumnRef)>,
    orderings: Vec<Vec<OrderKey>>,
    updated: Vec<ColumnRef>,
    /// CTE names in scope, each with what it stands for when PostgreSQL
    /// inlines it (`None`: materialized, a fence).
    ctes: Vec<BTreeMap<String, Option<Target>>>,
    scopes: Vec<Scope>,
}

fn table_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn column_of(e: &Expr) -> Option<(Option<String>, String)> {
    match e {
        Expr::Identifier(i) => Some((None, i.value.clone())),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let column = parts[parts.len() - 1].value.clone();
            Some((Some(parts[parts.len() - 2].value.clone()), column))
        }
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => column_of(inner),
        _ => None,
    }
}

impl<'v> Walker<'v> {
    fn new(views: &'v Views) -> Self {
        Self {
            views,
            expanding: Vec::new(),
            tables: BTreeSet::new(),
            columns: Vec::new(),
            bound: Vec::new(),
            join_keys: Vec::new(),
            orderings: Vec::new(),
            updated: Vec::new(),
            ctes: Vec::new(),
            scopes: Vec::new(),
        }
    }

    /// What a view's name stands for when its query reads one table without
    /// joins (views on views followed), else `None`.
    fn view_target(&self, q: &Query, depth: usize) -> Option<Target> {
        let SetExpr::Select(s) = &*q.body else {
            return None;
        };
        let [from] = s.from.as_slice() else {
            return None;
        };
        if !from.joins.is_empty() {
            return None;
        }
        let TableFactor::Table { name, .. } = &from.relation else {
            return None;
        };
        let base_name = table_name(name);
        if self.is_cte(&base_name) {
            return self.cte_target(&base_name);
        }
        let base = match self.views.query(&base_name) {
            Some(inner) if depth < MAX_VIEW_DEPTH => self.view_target(&inner, depth + 1)?,
            Some(_) => return None,
            None => Target::table(base_name),
        };
        let mut renames = BTreeMap::new();
        let mut wildcard = false;
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    if let Some((_, c)) = column_of(e) {
                        renames.insert(c.clone(), base.column(&c));
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let base_column = column_of(expr).and_then(|(_, c)| base.column(&c));
                    renames.insert(alias.value.clone(), base_column);
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => wildcard = true,
                // Several aliases for one expression: not a PostgreSQL form.
                SelectItem::ExprWithAliases { .. } => {}
            }
        }
        if wildcard {
            for (k, v) in base.renames {
                renames.entry(k).or_insert(v);
            }
        }
        Some(Target {
            table: base.table,
            renames,
        })
    }

    /// Walks a view's query (its tables and predicates count) and returns
    /// what its name stands for.
    fn expand_view(&mut self, name: &str, q: &Query) -> Option<Target> {
        self.expanding.push(name.to_owned());
        let scopes = std::mem::take(&mut self.scopes);
        self.query(q);
        self.scopes = scopes;
        self.expanding.pop();
        self.view_target(q, 0)
    }

    fn is_cte(&self, name: &str) -> bool {
        self.ctes.iter().any(|set| set.contains_key(name))
    }

    /// What an inlined CTE stands for (`None` for a materialized one).
    fn cte_target(&self, name: &str) -> Option<Target> {
        self.ctes
            .iter()
            .rev()
            .find_map(|set| set.get(name))
            .cloned()
            .flatten()
    }

    fn resolve(&self, qualifier: Option<&str>) -> Option<Target> {
        match qualifier {
            Some(q) => self
                .scopes
                .iter()
                .rev()
                .find_map(|s| s.names.get(q).cloned())
                .flatten(),
            None => self.scopes.last().and_then(Scope::single_table),
        }
    }

    /// The column an expression names, resolved to its real table.
    fn column_ref(&self, e: &Expr) -> Option<ColumnRef> {
        let (qualifier, column) = column_of(e)?;
        let (table, column) = match self.resolve(qualifier.as_deref()) {
            Some(target) => match target.column(&column) {
                Some(base) => (Some(target.table), base),
                None => (None, column),
            },
            None => (None, column),
        };
        Some(ColumnRef { table, column })
    }

    fn record(&mut self, e: &Expr, clause: Clause, predicate: Option<PredicateKind>) {
        if let Some(ColumnRef { table, column }) = self.column_ref(e) {
            self.columns.push(ColumnUse {
                table,
                column,
                clause,
                predicate,
            });
        }
    }

    /// `left = right`: a join key when both are columns, else the column side is bound.
    fn equality(&mut self, left: &Expr, right: &Expr) {
        match (self.column_ref(left), self.column_ref(right)) {
            (Some(a), Some(b)) if a <= b => self.join_keys.push((a, b)),
            (Some(a), Some(b)) => self.join_keys.push((b, a)),
            (Some(c), None) | (None, Some(c)) => self.bound.push(c),
            (None, None) => {}
        }
    }

    fn statement(&mut self, statement: &Statement) {
        match statement {
            Statement::Query(q) => self.query(q),
            Statement::Insert(insert) => {
                if let sqlparser::ast::TableObject::TableName(name) = &insert.table {
                    self.tables.insert(table_name(name));
                }
                if let Some(source) = &insert.source {
                    self.query(source);
                }
            }
            Statement::Update(update) => {
                let mut scope = Scope::default();
                self.add_tables(std::slice::from_ref(&update.table), &mut scope);
                self.scopes.push(scope);
                for assignment in &update.assignments {
                    let names = match &assignment.target {
                        AssignmentTarget::ColumnName(n) => std::slice::from_ref(n),
                        AssignmentTarget::Tuple(list) => list.as_slice(),
                    };
                    for name in names {
                        if let Some(ObjectNamePart::Identifier(last)) = name.0.last() {
                            let column = Expr::Identifier(last.clone());
                            if let Some(c) = self.column_ref(&column) {
                                self.updated.push(c);
                            }
                        }
                    }
                }
                if let Some(selection) = &update.selection {
                    self.predicate(selection, Clause::Where);
                }
                self.scopes.pop();
            }
            Statement::Delete(delete) => {
                let from = match &delete.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                let mut scope = Scope::default();
                self.add_tables(from, &mut scope);
                self.scopes.push(scope);
                if let Some(selection) = &delete.selection {
                    self.predicate(selection, Clause::Where);
                }
                self.scopes.pop();
            }
            Statement::Explain { statement, .. } => self.statement(statement),
            _ => {}
        }
    }

    fn query(&mut self, q: &Query) {
        self.ctes.push(BTreeMap::new());
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = cte.alias.name.value.clone();
                // Walked first: its own predicates count either way.
                self.query(&cte.query);
                // PostgreSQL inlines a CTE that is not recursive, not
                // MATERIALIZED, a plain SELECT, and referenced once (or
                // marked NOT MATERIALIZED); an inlined CTE is seen through
                // like a view, a materialized one is a fence.
                let mut references = 0usize;
                let _ = visit_relations(q, |relation: &ObjectName| {
                    if table_name(relation) == name {
                        references += 1;
                    }
                    ControlFlow::<()>::Continue(())
                });
                let inlined = !with.recursive
                    && matches!(&*cte.query.body, SetExpr::Select(_))
                    && match cte.materialized {
                        Some(CteAsMaterialized::Materialized) => false,
                        Some(CteAsMaterialized::NotMaterialized) => true,
                        None => references <= 1,
                    };
                let target = if inlined {
                    self.view_target(&cte.query, 0)
                } else {
                    None
                };
                if let Some(level) = self.ctes.last_mut() {
                    level.insert(name, target);
                }
            }
        }
        let order_by: Vec<&OrderByExpr> = match q.order_by.as_ref().map(|o| &o.kind) {
            Some(OrderByKind::Expressions(list)) => list.iter().collect(),
            _ => Vec::new(),
        };
        self.set_expr(&q.body, &order_by);
        self.ctes.pop();
    }

    fn set_expr(&mut self, body: &SetExpr, order_by: &[&OrderByExpr]) {
        match body {
            SetExpr::Select(select) => self.select(select, order_by),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, &[]);
                self.set_expr(right, &[]);
            }
            _ => {}
        }
    }

    fn add_tables(&mut self, from: &[TableWithJoins], scope: &mut Scope) {
        let mut joins = Vec::new();
        for t in from {
            self.factor(&t.relation, scope);
            for join in &t.joins {
                self.factor(&join.relation, scope);
                if let Some(JoinConstraint::On(on)) = join_constraint(&join.join_operator) {
                    joins.push(on.clone());
                }
            }
        }
        self.scopes.push(scope.clone());
        for on in &joins {
            self.predicate(on, Clause::Join);
        }
        self.scopes.pop();
    }

    fn factor(&mut self, factor: &TableFactor, scope: &mut Scope) {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let full = table_name(name);
                let view = if self.is_cte(&full)
                    || self.expanding.contains(&full)
                    || self.expanding.len() >= MAX_VIEW_DEPTH
                {
                    None
                } else {
                    self.views.query(&full)
                };
                let real = if self.is_cte(&full) {
                    self.cte_target(&full)
                } else if let Some(q) = view {
                    self.expand_view(&full, &q)
                } else {
                    self.tables.insert(full.clone());
                    Some(Target::table(full.clone()))
                };
                let short = full.rsplit('.').next().unwrap_or(&full).to_owned();
                scope.names.insert(short, real.clone());
                if let Some(a) = alias {
                    scope.names.insert(a.name.value.clone(), real);
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                self.query(subquery);
                if let Some(a) = alias {
                    scope.names.insert(a.name.value.clone(), None);
                }
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                let mut inner = Scope::default();
                self.add_tables(std::slice::from_ref(table_with_joins), &mut inner);
                scope.names.extend(inner.names);
            }
            _ => {}
        }
    }

    fn select(&mut self, select: &Select, order_by: &[&OrderByExpr]) {
        let mut scope = Scope::default();
        self.add_tables(&select.from, &mut scope);
        self.scopes.push(scope);
        if let Some(selection) = &select.selection {
            self.predicate(selection, Clause::Where);
        }
        if let GroupByExpr::Expressions(list, _) = &select.group_by {
            for e in list {
                let e = output_column(e, &select.projection);
                self.record(e, Clause::GroupBy, None);
            }
        }
        let mut keys = Vec::new();
        for o in order_by {
            let e = output_column(&o.expr, &select.projection);
            self.record(e, Clause::OrderBy, None);
            let descending = matches!(o.options.sort, Some(OrderBySort::Desc));
            match self.column_ref(e) {
                Some(column) if !matches!(o.options.sort, Some(OrderBySort::Using(_))) => keys
                    .push(OrderKey {
                        column,
                        descending,
                        nulls_first: o.options.nulls_first.unwrap_or(descending),
                    }),
                // An expression or `USING`: no index column serves the
                // keys from here on.
                _ => break,
            }
        }
        if !keys.is_empty() {
            self.orderings.push(keys);
        }
        self.scopes.pop();
    }

    fn predicate(&mut self, e: &Expr, clause: Clause) {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => {
                self.predicate(left, clause);
                self.predicate(right, clause);
            }
            Expr::BinaryOp { left, op, right } => {
                let kind = match op {
                    BinaryOperator::Eq => Some(PredicateKind::Equality),
                    BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq => Some(PredicateKind::Range),
                    _ => None,
                };
                if let Some(kind) = kind {
                    self.record(left, clause, Some(kind));
                    self.record(right, clause, Some(kind));
                }
                if kind == Some(PredicateKind::Equality) {
                    self.equality(left, right);
                }
                self.subqueries(left);
                self.subqueries(right);
            }
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => {
                self.record(left, clause, Some(PredicateKind::Equality));
                if let Some(c) = self.column_ref(left) {
                    self.bound.push(c);
                }
                self.subqueries(right);
            }
            Expr::Between { expr, .. } => self.record(expr, clause, Some(PredicateKind::Range)),
            Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
                let prefix = matches!(&**pattern, Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(p) if !p.is_empty() && !p.starts_with(['%', '_'])));
                let case_sensitive = matches!(e, Expr::Like { .. });
                let kind = if prefix && case_sensitive {
                    PredicateKind::LikePrefix
                } else {
                    PredicateKind::Like
                };
                self.record(expr, clause, Some(kind));
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                self.record(inner, clause, Some(PredicateKind::IsNull))
            }
            Expr::In {
                expr,
                target,
                negated,
                ..
            } => {
                self.record(expr, clause, Some(PredicateKind::Equality));
                if !negated && let Some(c) = self.column_ref(expr) {
                    self.bound.push(c);
                }
                if let InTarget::Subquery(q) = target {
                    self.query(q);
                }
            }
            Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => {
                self.predicate(inner, clause)
            }
            other => self.subqueries(other),
        }
    }

    /// Subqueries inside an expression (EXISTS, scalar subqueries).
    fn subqueries(&mut self, e: &Expr) {
        match e {
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => self.query(q),
            Expr::Nested(inner) => self.subqueries(inner),
            _ => {}
        }
    }
}

/// What an `ORDER BY` or `GROUP BY` item names: `1` is the first output
/// column, and a bare name that is an output alias is that output's
/// expression (PostgreSQL looks output names up first).
fn output_column<'e>(e: &'e Expr, projection: &'e [SelectItem]) -> &'e Expr {
    match e {
        Expr::Value(v) => {
            if let Value::Number(n, _) = &v.value
                && let Ok(position) = n.to_string().parse::<usize>()
                && let Some(item) = position.checked_sub(1).and_then(|i| projection.get(i))
            {
                return match item {
                    SelectItem::UnnamedExpr(inner)
                    | SelectItem::ExprWithAlias { expr: inner, .. } => inner,
                    _ => e,
                };
            }
            e
        }
        Expr::Identifier(name) => projection
            .iter()
            .find_map(|item| match item {
                SelectItem::ExprWithAlias { expr, alias } if alias.value == name.value => {
                    Some(expr)
                }
                _ => None,
            })
            .unwrap_or(e),
        _ => e,
    }
}

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(sql: &str) -> Vec<(Option<String>, String, Clause, Option<PredicateKind>)> {
        analyze(sql)
            .unwrap()
            .columns
            .into_iter()
            .map(|u| (u.table, u.column, u.clause, u.predicate))
            .collect()
    }

    fn t(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn aliases_joins_and_predicate_kinds() {
        let got = uses(
            "SELECT o.id FROM orders AS o JOIN customers c ON c.id = o.customer_id \
             WHERE o.status = 'paid' AND o.created_at BETWEEN $1 AND $2 AND c.name LIKE '%x' \
             AND o.deleted_at IS NULL AND o.kind IN (1, 2) GROUP BY o.region ORDER BY o.created_at DESC",
        );
        use Clause::*;
        use PredicateKind::*;
        for want in [
            (t("customers"), "id".to_owned(), Join, Some(Equality)),
            (t("orders"), "customer_id".to_owned(), Join, Some(Equality)),
            (t("orders"), "status".to_owned(), Where, Some(Equality)),
            (t("orders"), "created_at".to_owned(), Where, Some(Range)),
            (t("customers"), "name".to_owned(), Where, Some(Like)),
            (t("orders"), "deleted_at".to_owned(), Where, Some(IsNull)),
            (t("orders"), "kind".to_owned(), Where, Some(Equality)),
            (t("orders"), "region".to_owned(), GroupBy, None),
            (t("orders"), "created_at".to_owned(), OrderBy, None),
        ] {
            assert!(got.contains(&want), "{want:?} not in {got:#?}");
        }
    }

    #[test]
    fn ctes_and_subqueries_resolve_to_real_tables() {
        let a = analyze(
            "WITH recent AS (SELECT * FROM events WHERE at > now() - interval '1 day') \
             SELECT * FROM recent r WHERE r.user_id IN (SELECT id FROM users WHERE email LIKE 'a%') \
             AND EXISTS (SELECT 1 FROM bans b WHERE b.user_id = r.user_id)",
        )
        .unwrap();
        assert_eq!(
            a.tables,
            ["bans", "events", "users"].map(String::from).into()
        );
        assert!(a.columns.iter().any(|u| u.table.as_deref() == Some("users")
            && u.column == "email"
            && u.predicate == Some(PredicateKind::LikePrefix)));
        assert!(
            a.columns
                .iter()
                .any(|u| u.table.as_deref() == Some("events")
                    && u.column == "at"
                    && u.predicate == Some(PredicateKind::Range))
        );
        // The CTE is referenced once: PostgreSQL inlines it, so its column
        // lands on its table; MATERIALIZED makes it a fence.
        assert!(
            a.columns
                .iter()
                .any(|u| u.table.as_deref() == Some("events")
                    && u.column == "user_id"
                    && u.clause == Clause::Where)
        );
        let fenced = analyze(
            "WITH recent AS MATERIALIZED (SELECT * FROM events) SELECT * FROM recent WHERE user_id = 1",
        )
        .unwrap();
        assert!(
            fenced
                .columns
                .iter()
                .any(|u| u.table.is_none() && u.column == "user_id" && u.clause == Clause::Where)
        );
        let twice = analyze(
            "WITH recent AS (SELECT * FROM events) SELECT * FROM recent a, recent b WHERE a.user_id = 1",
        )
        .unwrap();
        assert!(
            twice.bound_columns.iter().all(|c| c.table.is_none()),
            "referenced twice: materialized"
        );
        let updated =
            analyze("UPDATE accounts SET balance = 0, (a, b) = (1, 2) WHERE id = $1").unwrap();
        assert_eq!(
            updated
                .updated_columns
                .iter()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "balance"]
        );
    }

    #[test]
    fn views_are_seen_through_to_their_base_tables() {
        let mut views = Views::new();
        views.insert(
            "active_users",
            " SELECT users.id, users.email AS login, lower(users.name) AS lname FROM users WHERE (users.active = true);",
        );
        views.insert("recent_active", "SELECT * FROM active_users WHERE id > 100");
        views.insert("loop_a", "SELECT * FROM loop_b");
        views.insert("loop_b", "SELECT * FROM loop_a");
        views.insert(
            "joined",
            "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id",
        );
        let a = analyze_with_views(
            "SELECT * FROM recent_active r WHERE r.login = $1 AND lname = 'x' ORDER BY id",
            &views,
        )
        .unwrap();
        assert_eq!(a.tables, ["users".to_owned()].into());
        let on_users = |column: &str, clause: Clause| {
            a.columns.iter().any(|u| {
                u.table.as_deref() == Some("users") && u.column == column && u.clause == clause
            })
        };
        // The view's own predicates count, on the base table.
        assert!(on_users("active", Clause::Where), "{:?}", a.columns);
        assert!(on_users("id", Clause::Where), "{:?}", a.columns);
        // The alias maps back to the base column through two views.
        assert!(on_users("email", Clause::Where), "{:?}", a.columns);
        assert!(on_users("id", Clause::OrderBy), "{:?}", a.columns);
        // A computed column has no base column.
        assert!(
            a.columns
                .iter()
                .any(|u| u.table.is_none() && u.column == "lname")
        );
        // Cycles stop; a view with a join lends its tables but no column mapping.
        assert!(analyze_with_views("SELECT * FROM loop_a WHERE x = 1", &views).is_ok());
        let j = analyze_with_views("SELECT * FROM joined WHERE id = 1", &views).unwrap();
        assert_eq!(j.tables, ["orders".to_owned(), "users".to_owned()].into());
        assert!(
            j.columns
                .iter()
                .any(|u| u.clause == Clause::Where && u.table.is_none())
        );
        // Without the views, the view name is just a table.
        let plain = analyze("SELECT * FROM recent_active WHERE login = $1").unwrap();
        assert_eq!(plain.tables, ["recent_active".to_owned()].into());
    }

    #[test]
    fn updates_and_deletes_are_analyzed_and_bad_sql_is_an_error_with_a_position() {
        let a = analyze("UPDATE accounts SET balance = 0 WHERE id = $1").unwrap();
        assert_eq!(a.tables, ["accounts".to_owned()].into());
        assert_eq!(a.columns[0].table.as_deref(), Some("accounts"));
        let a = analyze("DELETE FROM sessions WHERE expires_at < now()").unwrap();
        assert_eq!(a.columns[0].predicate, Some(PredicateKind::Range));
        let err = analyze("SELECT * FROM WHERE").unwrap_err();
        match err {
            Error::Sql { line, column, .. } => assert!(line >= 1 && column >= 1, "{line}:{column}"),
            other => panic!("{other}"),
        }
    }
}
