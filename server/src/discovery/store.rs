//! Durable discovery state: every token and the etcd index, in a redb database
//! (`<state_dir>/discovery.redb`).
//!
//! Each change is one write transaction that replaces (or removes) one token's record and
//! stores the new index; redb makes the commit durable (fsync) before it returns, and the
//! caller answers the request only after that. So a member that was told "created" is in
//! the store, and an index that a client saw is never handed out again after a restart:
//! `X-Etcd-Index` only grows, and a client that waits with a `waitIndex` from before the
//! restart is answered from the registrations kept here.
//!
//! Limitations: every operation is synchronous (call it off the async runtime); the whole
//! state is loaded at start, which the token and member limits keep small.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};

use super::protocol::{Registry, Token};

/// Token name -> the token as JSON (`protocol::Token`).
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens_v1");
/// `index` -> the etcd index of the latest change.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
const INDEX_KEY: &str = "index";

/// The database file inside the state directory.
pub const FILE_NAME: &str = "discovery.redb";

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the discovery state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("discovery state {path}: {source} (is another musterd using it?)")]
    Open {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("discovery state {path}: {source}")]
    Io {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("discovery state {path}: the record of token {token} is unreadable: {message} (move the file away to start with no tokens)")]
    Record {
        path: PathBuf,
        token: String,
        message: String,
    },
}

/// redb's errors are large; boxed, they keep every `Result` here small.
type DbResult<T> = Result<T, Box<redb::Error>>;

fn boxed(e: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(e.into())
}

/// A token name and its JSON record, as read from the table.
type Row = (String, Vec<u8>);

/// The open database.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the state in `dir` and loads every token.
    pub fn open(dir: &Path) -> Result<(Store, Registry), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.into(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            source: boxed(e),
        })?;
        let store = Store { db, path };
        // Both tables exist from the first start on, so reads never meet a missing table.
        store
            .write(|txn| {
                txn.open_table(TOKENS).map_err(boxed)?;
                txn.open_table(META).map_err(boxed)?;
                Ok(())
            })
            .map_err(|source| store.io(source))?;
        let registry = store.load()?;
        Ok((store, registry))
    }

    fn io(&self, source: Box<redb::Error>) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> DbResult<()>) -> DbResult<()> {
        let txn = self.db.begin_write().map_err(boxed)?;
        f(&txn)?;
        txn.commit().map_err(boxed)?;
        Ok(())
    }

    /// The stored index and every (token name, record) row.
    fn read_all(&self) -> DbResult<(u64, Vec<Row>)> {
        let txn = self.db.begin_read().map_err(boxed)?;
        let index = txn
            .open_table(META)
            .map_err(boxed)?
            .get(INDEX_KEY)
            .map_err(boxed)?
            .map_or(0, |v| v.value());
        let mut rows = Vec::new();
        for row in txn
            .open_table(TOKENS)
            .map_err(boxed)?
            .iter()
            .map_err(boxed)?
        {
            let (k, v) = row.map_err(boxed)?;
            rows.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok((index, rows))
    }

    fn load(&self) -> Result<Registry, StoreError> {
        let (mut index, rows) = self.read_all().map_err(|e| self.io(e))?;
        let mut registry = Registry::default();
        for (name, bytes) in rows {
            let token: Token = serde_json::from_slice(&bytes).map_err(|e| StoreError::Record {
                path: self.path.clone(),
                token: name.clone(),
                message: e.to_string(),
            })?;
            // The index is written with every record; taking the largest seen as well
            // keeps it monotonic even if a record were somehow newer than the counter.
            index = token
                .members
                .iter()
                .map(|m| m.index)
                .chain([token.created_index, index])
                .max()
                .unwrap_or(index);
            registry.tokens.insert(name, token);
        }
        registry.index = index;
        Ok(registry)
    }

    /// Makes one change durable: the token's record as it is after the change (`None`
    /// removes it) and the index the change took.
    pub fn commit(&self, name: &str, record: Option<&Token>, index: u64) -> Result<(), StoreError> {
        // Serializing a struct of strings and integers cannot fail.
        let bytes = record.map(|t| serde_json::to_vec(t).unwrap_or_default());
        self.write(|txn| {
            let mut tokens = txn.open_table(TOKENS).map_err(boxed)?;
            match &bytes {
                Some(b) => {
                    tokens.insert(name, b.as_slice()).map_err(boxed)?;
                }
                None => {
                    tokens.remove(name).map_err(boxed)?;
                }
            }
            txn.open_table(META)
                .map_err(boxed)?
                .insert(INDEX_KEY, index)
                .map_err(boxed)?;
            Ok(())
        })
        .map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{Limits, Registry};
    use super::*;

    const LIMITS: Limits = Limits {
        max_tokens: 10,
        max_members: 5,
    };

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "muster-discovery-store-{tag}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            Scratch(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn persist(store: &Store, reg: &mut Registry, change: super::super::protocol::Change) {
        let record = reg.record_after(&change);
        store
            .commit(change.token_name(), record.as_ref(), change.index())
            .unwrap();
        reg.apply(&change);
    }

    #[test]
    fn state_and_index_survive_reopening() {
        let dir = Scratch::new("reopen");
        let tok = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let other = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        {
            let (store, mut reg) = Store::open(&dir.0).unwrap();
            assert_eq!(reg, Registry::default());
            for name in [tok, other] {
                let c = reg.plan_token(name, 3, 100, 1000, &LIMITS).unwrap();
                persist(&store, &mut reg, c);
            }
            let c = reg
                .plan_register(tok, "a1", "m1=http://127.0.0.1:1", 100, &LIMITS)
                .unwrap();
            persist(&store, &mut reg, c);
            let c = reg.plan_delete(other, 100).unwrap();
            persist(&store, &mut reg, c);
            assert_eq!(reg.index, 4);
        }
        let (_store, reg) = Store::open(&dir.0).unwrap();
        assert_eq!(reg.index, 4);
        assert_eq!(reg.tokens.len(), 1);
        let t = &reg.tokens[tok];
        assert_eq!((t.size, t.created_index, t.members.len()), (3, 1, 1));
        assert_eq!(t.members[0].index, 3);
    }

    #[test]
    fn a_second_opener_is_refused() {
        let dir = Scratch::new("locked");
        let (_store, _) = Store::open(&dir.0).unwrap();
        let err = Store::open(&dir.0).unwrap_err().to_string();
        assert!(err.contains("another musterd"), "{err}");
    }
}
