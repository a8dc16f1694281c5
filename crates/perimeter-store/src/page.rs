//! Keyset pagination over a table's `sort_key`-like column, and the tokens that carry a
//! position in a list from one request to the next.
//!
//! A page is asked for as "after key K" (forward) or "before key K" (backward), in ascending or
//! descending order. The store answers with the rows and whether more exist on either side; the
//! API turns those into tokens with [`PageTokens`].
//!
//! A token is `base64url(version, direction, sort key, HMAC-SHA256 tag)`. The tag is keyed with
//! a random key kept in the store's `settings` table (so every replica sharing the database
//! accepts the tokens of the others) and covers, besides the position, a [`PageBinding`]: the
//! list, the caller and the query the token was issued for. A token presented with any other
//! binding, or altered in any byte, does not open. The binding itself is not in the token.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use sqlx::any::AnyRow;

use crate::{Ctx, Result, Store, StoreError};

/// The setting holding the page-token key, as 64 hex digits.
const KEY_SETTING: &str = "page_token_key";
/// First byte of every token: the layout and binding encoding it was made with.
const TOKEN_VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Longest token accepted, in characters: far above any issued one (sort keys are short), so
/// that a forged one is refused before it is decoded.
pub const MAX_PAGE_TOKEN_CHARS: usize = 1024;

/// Signs and checks page tokens with the store's key. Cheap to clone.
#[derive(Clone)]
pub struct PageTokens {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens { key: <hidden> }")
    }
}

/// What a page token is bound to: the list (`resource`, with the ids of its path), the caller,
/// and each part of the query that shapes the list (filters, page size, order). Every field is
/// length-prefixed, so two different bindings never encode alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBinding(Vec<u8>);

impl PageBinding {
    pub fn new(resource: &str, caller: &str) -> Self {
        let mut b = PageBinding(Vec::with_capacity(128));
        b.push(resource);
        b.push(caller);
        b
    }

    /// The binding with one more query parameter, by name.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.push(name);
        self.push(value);
        self
    }

    fn push(&mut self, s: &str) {
        self.0.extend_from_slice(&(s.len() as u64).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
}

/// Where a token continues its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// The page after this sort key (a `next_page`).
    After(String),
    /// The page before this sort key (a `previous_page`).
    Before(String),
}

/// A token that was not issued by this store for this binding, or was altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a page token issued for this list, caller and query")]
pub struct InvalidPageToken;

impl PageTokens {
    /// Tokens under `key` (the store's key comes from [`Store::page_tokens`]).
    pub fn from_key(key: [u8; 32]) -> Self {
        PageTokens { key: Arc::new(key) }
    }

    /// The token for `cursor` in the list, caller and query of `binding`.
    pub fn seal(&self, binding: &PageBinding, cursor: &Cursor) -> String {
        let (direction, key) = match cursor {
            Cursor::After(k) => (b'a', k),
            Cursor::Before(k) => (b'b', k),
        };
        let mut body = Vec::with_capacity(2 + key.len() + TAG_LEN);
        body.push(TOKEN_VERSION);
        body.push(direction);
        body.extend_from_slice(key.as_bytes());
        let tag = self.mac(binding, &body).finalize().into_bytes();
        body.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The cursor of a token sealed for exactly `binding` by a store with this key.
    pub fn open(&self, binding: &PageBinding, token: &str) -> Result<Cursor, InvalidPageToken> {
        if token.len() > MAX_PAGE_TOKEN_CHARS {
            return Err(InvalidPageToken);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidPageToken)?;
        if raw.len() < 2 + TAG_LEN {
            return Err(InvalidPageToken);
        }
        let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
        // Constant-time comparison; nothing of the body is looked at before it passes.
        self.mac(binding, body)
            .verify_slice(tag)
            .map_err(|_| InvalidPageToken)?;
        if body[0] != TOKEN_VERSION {
            return Err(InvalidPageToken);
        }
        let key = std::str::from_utf8(&body[2..]).map_err(|_| InvalidPageToken)?;
        match body[1] {
            b'a' => Ok(Cursor::After(key.to_string())),
            b'b' => Ok(Cursor::Before(key.to_string())),
            _ => Err(InvalidPageToken),
        }
    }

    fn mac(&self, binding: &PageBinding, body: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
            .expect("HMAC takes keys of any length");
        m.update(&(binding.0.len() as u64).to_be_bytes());
        m.update(&binding.0);
        m.update(body);
        m
    }
}

impl Store {
    /// The page-token signer of this store's database. Its key is made once, by whichever
    /// replica asks first, and kept in `settings`; this process reads it once.
    pub async fn page_tokens(&self) -> Result<PageTokens> {
        self.page_tokens
            .get_or_try_init(|| load_or_create_key(&self.write))
            .await
            .cloned()
    }
}

async fn load_or_create_key(pool: &sqlx::AnyPool) -> Result<PageTokens> {
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    // The first writer wins; every replica then reads the same key.
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(KEY_SETTING)
        .bind(&hex)
        .execute(pool)
        .await
        .ctx("storing the page-token key")?;
    let (stored,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
        .bind(KEY_SETTING)
        .fetch_one(pool)
        .await
        .ctx("reading the page-token key")?;
    let corrupt = || StoreError::Corrupt {
        table: "settings",
        detail: format!("{KEY_SETTING} is not 64 hex digits"),
    };
    if stored.len() != 64 || !stored.is_ascii() {
        return Err(corrupt());
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&stored[2 * i..2 * i + 2], 16).map_err(|_| corrupt())?;
    }
    Ok(PageTokens::from_key(key))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(resource: &str, caller: &str, query: &[(String, String)]) -> PageBinding {
        query
            .iter()
            .fold(PageBinding::new(resource, caller), |b, (n, v)| b.with(n, v))
    }

    fn tokens() -> PageTokens {
        PageTokens::from_key([7; 32])
    }

    #[test]
    fn a_token_opens_for_its_binding_only() {
        let t = tokens();
        let b = PageBinding::new("clusters", "sa-1").with("pagination.limit", "1");
        let cursor = Cursor::After("2026-01-01T00:00:00.000000Z|c1".into());
        let tok = t.seal(&b, &cursor);
        assert_eq!(t.open(&b, &tok), Ok(cursor.clone()));
        // The caller, the list, the query and the key each matter.
        let others = [
            PageBinding::new("clusters", "sa-2").with("pagination.limit", "1"),
            PageBinding::new("service-accounts", "sa-1").with("pagination.limit", "1"),
            PageBinding::new("clusters", "sa-1").with("pagination.limit", "2"),
            PageBinding::new("clusters", "sa-1"),
        ];
        for o in &others {
            assert_eq!(t.open(o, &tok), Err(InvalidPageToken), "{o:?}");
        }
        assert_eq!(
            PageTokens::from_key([8; 32]).open(&b, &tok),
            Err(InvalidPageToken)
        );
        // Length prefixes: moving a boundary between fields is another binding.
        assert_ne!(
            PageBinding::new("ab", "c"),
            PageBinding::new("a", "bc"),
            "fields are length-prefixed"
        );
        assert_eq!(t.open(&b, ""), Err(InvalidPageToken));
        assert_eq!(
            t.open(&b, &"A".repeat(MAX_PAGE_TOKEN_CHARS + 1)),
            Err(InvalidPageToken)
        );
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9|/-]{1,12}",
            any::<String>().prop_map(|s| s.chars().take(16).collect()),
        ]
    }

    fn query() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((field(), field()), 0..3)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// A token sealed for one list, caller and query opens for exactly that one.
        #[test]
        fn tokens_do_not_cross_bindings(
            (r1, c1, q1) in (field(), field(), query()),
            (r2, c2, q2) in (field(), field(), query()),
            key in field(),
            after in any::<bool>(),
        ) {
            let t = tokens();
            let cursor = if after { Cursor::After(key) } else { Cursor::Before(key) };
            let b1 = binding(&r1, &c1, &q1);
            let b2 = binding(&r2, &c2, &q2);
            let tok = t.seal(&b1, &cursor);
            prop_assert_eq!(t.open(&b1, &tok), Ok(cursor));
            if (r1, c1, q1) != (r2, c2, q2) {
                prop_assert_eq!(t.open(&b2, &tok), Err(InvalidPageToken));
            }
        }

        /// Any change of a token's bytes, or of its text, and any cut makes it not open.
        #[test]
        fn tampered_tokens_do_not_open(
            key in field(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            ch in any::<char>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let t = tokens();
            let b = PageBinding::new("clusters", "sa");
            let tok = t.seal(&b, &Cursor::After(key));
            let mut raw = URL_SAFE_NO_PAD.decode(&tok).unwrap();
            let i = at.index(raw.len());
            raw[i] ^= flip;
            prop_assert_eq!(t.open(&b, &URL_SAFE_NO_PAD.encode(&raw)), Err(InvalidPageToken));
            let mut chars: Vec<char> = tok.chars().collect();
            let j = at.index(chars.len());
            if chars[j] != ch {
                chars[j] = ch;
                let changed: String = chars.into_iter().collect();
                prop_assert_eq!(t.open(&b, &changed), Err(InvalidPageToken));
            }
            let n = cut.index(tok.len());
            prop_assert_eq!(t.open(&b, &tok[..n]), Err(InvalidPageToken));
        }
    }

    /// Replicas sharing a database share the key; another database has its own.
    #[tokio::test]
    async fn the_key_is_kept_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open_sqlite(dir.path(), crate::Durability::Normal)
            .await
            .unwrap();
        let b = Store::open_sqlite(dir.path(), crate::Durability::Normal)
            .await
            .unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = Store::open_sqlite(other_dir.path(), crate::Durability::Normal)
            .await
            .unwrap();
        let binding = PageBinding::new("clusters", "sa");
        let cursor = Cursor::Before("k".into());
        let tok = a.page_tokens().await.unwrap().seal(&binding, &cursor);
        assert_eq!(
            b.page_tokens().await.unwrap().open(&binding, &tok),
            Ok(cursor)
        );
        assert_eq!(
            other.page_tokens().await.unwrap().open(&binding, &tok),
            Err(InvalidPageToken)
        );
        let stored = a.setting(KEY_SETTING).await.unwrap().unwrap();
        assert_eq!(stored.len(), 64);
        assert!(!tok.contains(&stored));
    }
}
