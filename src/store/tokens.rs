//! The `tokens` table: bearer tokens by their SHA-256.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, Tx};

/// A stored bearer token: never the token itself, only its hash.
#[derive(Clone, Debug)]
pub struct TokenRow {
    pub hash: String,
    pub user: String,
    pub role: String,
    pub created_at: String,
    /// When it stops working; never when absent.
    pub expires_at: Option<String>,
    /// When it was last used, to the minute.
    pub last_used_at: Option<String>,
}

const TOKEN_COLUMNS: &str = "hash, user_uri, role, created_at, expires_at, last_used_at";

/// The tokens with `count` hashes (`$1` to `$count`), each with the generation.
fn tokens_by_hash_sql(count: usize) -> String {
    let placeholders: Vec<String> = (1..=count).map(|n| format!("${n}")).collect();
    format!(
        "SELECT {TOKEN_COLUMNS}, (SELECT value FROM generation WHERE id = 1) AS generation \
         FROM tokens WHERE hash IN ({})",
        placeholders.join(", ")
    )
}

/// A row of [`tokens_by_hash_sql`]: the token and the generation read with it.
fn token_and_generation(row: &AnyRow) -> Result<(TokenRow, i64), StoreError> {
    Ok((token_from_row(row)?, row.try_get("generation")?))
}

fn token_from_row(row: &AnyRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        hash: row.try_get("hash")?,
        user: row.try_get("user_uri")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The tokens with these hashes (those that exist), in one read per 500, each with the
    /// generation read in the same statement: a token read at generation G is as it was for
    /// as long as the generation stays G, since every write of a token moves it.
    pub async fn tokens_by_hash(
        &self,
        hashes: &[&str],
    ) -> Result<Vec<(TokenRow, i64)>, StoreError> {
        let mut found = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(500) {
            let sql = tokens_by_hash_sql(chunk.len());
            let mut statement = sqlx::query(&sql);
            for hash in chunk {
                statement = statement.bind(*hash);
            }
            for row in statement.fetch_all(&self.pool).await? {
                found.push(token_and_generation(&row)?);
            }
        }
        Ok(found)
    }

    /// Every token, oldest first.
    pub async fn all_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, hash"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }
}

impl Tx {
    pub async fn insert_token(&mut self, token: &TokenRow) -> Result<(), StoreError> {
        self.changes_access = true;
        sqlx::query(
            "INSERT INTO tokens (hash, user_uri, role, created_at, expires_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.hash)
        .bind(&token.user)
        .bind(&token.role)
        .bind(&token.created_at)
        .bind(&token.expires_at)
        .bind(&token.last_used_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Records the use of the tokens with these hashes at `at`, in one statement for up to
    /// 500 of them. Not a change of access: live streams keep their decisions.
    ///
    /// On PostgreSQL the rows are locked first, in the order of their hashes: nodes writing
    /// uses of the same tokens at once then never wait for each other in a circle (an
    /// `UPDATE` locks rows in whatever order its plan visits them).
    pub async fn touch_tokens(&mut self, hashes: &[String], at: &str) -> Result<(), StoreError> {
        let mut hashes = hashes.to_vec();
        hashes.sort_unstable();
        hashes.dedup();
        for chunk in hashes.chunks(500) {
            let lock = self.backend.lock_clause();
            if !lock.is_empty() {
                let mut sql = String::from("SELECT hash FROM tokens WHERE hash IN ");
                self.backend.push_placeholders(&mut sql, 1, chunk.len());
                sql.push_str(" ORDER BY hash");
                sql.push_str(lock);
                let mut statement = sqlx::query(&sql);
                for hash in chunk {
                    statement = statement.bind(hash);
                }
                statement.fetch_all(&mut *self.inner).await?;
            }
            // The hashes' placeholders come first in the text, as `push_placeholders` needs.
            let mut sql = String::from("WITH used (hash) AS (VALUES ");
            self.backend.push_placeholders(&mut sql, chunk.len(), 1);
            sql.push_str(&format!(
                ") UPDATE tokens SET last_used_at = ${} WHERE hash IN (SELECT hash FROM used)",
                chunk.len() + 1
            ));
            let mut statement = sqlx::query(&sql);
            for hash in chunk {
                statement = statement.bind(hash);
            }
            statement.bind(at).execute(&mut *self.inner).await?;
        }
        Ok(())
    }

    /// [`Store::tokens_by_hash`] inside this transaction (at most 500 hashes).
    pub async fn tokens_by_hash(
        &mut self,
        hashes: &[&str],
    ) -> Result<Vec<(TokenRow, i64)>, StoreError> {
        let sql = tokens_by_hash_sql(hashes.len());
        let mut statement = sqlx::query(&sql);
        for hash in hashes {
            statement = statement.bind(*hash);
        }
        let rows = statement.fetch_all(&mut *self.inner).await?;
        rows.iter().map(token_and_generation).collect()
    }

    /// The tokens whose hash starts with `prefix` (a token's id).
    pub async fn tokens_by_prefix(&mut self, prefix: &str) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE substr(hash, 1, {}) = $1",
            prefix.len()
        ))
        .bind(prefix)
        .fetch_all(&mut *self.inner)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Every stored token, as hashes (for moving a server).
    pub async fn tokens(&mut self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at"
        ))
        .fetch_all(&mut *self.inner)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Deletes a token by its hash; returns whether there was one.
    pub async fn delete_token(&mut self, hash: &str) -> Result<bool, StoreError> {
        self.changes_access = true;
        // The browser sessions signed in with it end with it.
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(&mut *self.inner)
            .await?;
        let result = sqlx::query("DELETE FROM tokens WHERE hash = $1")
            .bind(hash)
            .execute(&mut *self.inner)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
