//! Keyset pagination over a table's `sort_key`-like column.
//!
//! A page is asked for as "after key K" (forward) or "before key K" (backward), in ascending or
//! descending order. The store answers with the rows and whether more exist on either side; the
//! API turns those into opaque tokens.

use sqlx::any::AnyRow;

use crate::{Ctx, Result};

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// Rows strictly after this key, in the requested order.
    pub after: Option<String>,
    /// Rows strictly before this key, in the requested order (a "previous page").
    pub before: Option<String>,
    pub limit: u32,
    pub descending: bool,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Sort key of the first and last item, for building tokens.
    pub first_key: Option<String>,
    pub last_key: Option<String>,
    pub more_after: bool,
    pub more_before: bool,
}

impl<T> Page<T> {
    /// The same page position with other items (decoded rows, say).
    pub fn with_items<U>(self, items: Vec<U>) -> Page<U> {
        Page {
            items,
            first_key: self.first_key,
            last_key: self.last_key,
            more_after: self.more_after,
            more_before: self.more_before,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            first_key: self.first_key,
            last_key: self.last_key,
            more_after: self.more_after,
            more_before: self.more_before,
        }
    }
}

/// A bound value for a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Fetch one page. `select` is `SELECT ... FROM t WHERE <scope>` with placeholders `$1..$n`
/// matching `args`; `key_col` is the unique sort column.
pub(crate) async fn fetch_page(
    pool: &sqlx::AnyPool,
    select: &str,
    args: Vec<Arg>,
    key_col: &str,
    req: &PageRequest,
) -> Result<Page<AnyRow>> {
    let limit = req.limit.max(1) as i64;
    let backward = req.before.is_some();
    // Effective scan direction: descending XOR backward.
    let scan_desc = req.descending != backward;
    let mut args = args;
    let mut sql = select.to_string();
    if let Some(k) = req.before.as_ref().or(req.after.as_ref()) {
        args.push(Arg::Text(k.clone()));
        let op = if scan_desc { "<" } else { ">" };
        sql.push_str(&format!(" AND {key_col} {op} ${}", args.len()));
    }
    let dir = if scan_desc { "DESC" } else { "ASC" };
    args.push(Arg::Int(limit + 1));
    sql.push_str(&format!(" ORDER BY {key_col} {dir} LIMIT ${}", args.len()));
    let mut rows = bind_all(sqlx::query(&sql), &args)
        .fetch_all(pool)
        .await
        .ctx("listing a page")?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if backward {
        rows.reverse();
    }
    let key = |r: &AnyRow| crate::model::text(r, key_col);
    let first_key = rows.first().map(key).transpose()?;
    let last_key = rows.last().map(key).transpose()?;
    let (more_after, more_before) = if backward {
        (true, more)
    } else {
        (more, req.after.is_some())
    };
    Ok(Page {
        items: rows,
        first_key,
        last_key,
        more_after,
        more_before,
    })
}
