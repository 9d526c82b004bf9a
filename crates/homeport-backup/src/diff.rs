//! What a restore discards: the rows a database held just before it was restored that the
//! restored database does not have (new rows, and rows changed since the backup), per table.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::BackupError;

/// Rows of one table that a restore discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

/// Databases larger than this are not compared row by row (the comparison sorts every table);
/// the report then says the count is unknown.
pub const MAX_COMPARED_BYTES: u64 = 1 << 30;

/// The rows of `before` (the database as it was just before a restore) that `after` (the
/// restored database) does not hold, per table, for tables where any are missing. A table only
/// `before` has counts all its rows; columns only one side has are left out of the comparison.
/// `None` when either file is too large to compare.
pub fn discarded_rows(before: &Path, after: &Path) -> Result<Option<Vec<TableRows>>, BackupError> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if size(before).max(size(after)) > MAX_COMPARED_BYTES {
        return Ok(None);
    }
    let sql = |e| BackupError::Sqlite(before.to_path_buf(), e);
    let conn =
        Connection::open_with_flags(before, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql)?;
    conn.execute("ATTACH DATABASE ?1 AS restored", [after.to_string_lossy()])
        .map_err(sql)?;
    let tables = |schema: &str| -> rusqlite::Result<Vec<String>> {
        conn.prepare(&format!(
            "SELECT name FROM {schema}.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ))?
        .query_map([], |r| r.get(0))?
        .collect()
    };
    let columns = |schema: &str, table: &str| -> rusqlite::Result<Vec<String>> {
        conn.prepare(&format!("PRAGMA {schema}.table_info({})", quote(table)))?
            .query_map([], |r| r.get(1))?
            .collect()
    };
    let restored = tables("restored").map_err(sql)?;
    let mut out = Vec::new();
    for table in tables("main").map_err(sql)? {
        let rows: i64 = if restored.contains(&table) {
            let theirs = columns("restored", &table).map_err(sql)?;
            let common: Vec<String> = columns("main", &table)
                .map_err(sql)?
                .into_iter()
                .filter(|c| theirs.contains(c))
                .map(|c| quote(&c))
                .collect();
            if common.is_empty() {
                conn.query_row(
                    &format!("SELECT COUNT(*) FROM main.{}", quote(&table)),
                    [],
                    |r| r.get(0),
                )
            } else {
                let cols = common.join(", ");
                let t = quote(&table);
                conn.query_row(
                    &format!(
                        "SELECT COUNT(*) FROM (SELECT {cols} FROM main.{t} EXCEPT SELECT {cols} FROM restored.{t})"
                    ),
                    [],
                    |r| r.get(0),
                )
            }
        } else {
            conn.query_row(
                &format!("SELECT COUNT(*) FROM main.{}", quote(&table)),
                [],
                |r| r.get(0),
            )
        }
        .map_err(sql)?;
        if rows > 0 {
            out.push(TableRows {
                table,
                rows: rows as u64,
            });
        }
    }
    Ok(Some(out))
}

/// An identifier quoted for SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_changed_rows_and_new_tables_are_counted() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let after = dir.path().join("after.db");
        Connection::open(&after)?.execute_batch(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b');
             CREATE TABLE quiet(x); INSERT INTO quiet VALUES (1);",
        )?;
        let before = dir.path().join("before.db");
        Connection::open(&before)?.execute_batch(
            r#"CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, extra TEXT);
             INSERT INTO items VALUES (1, 'a', 'x'), (2, 'B', NULL), (3, 'c', NULL), (4, 'd', NULL);
             CREATE TABLE quiet(x); INSERT INTO quiet VALUES (1);
             CREATE TABLE "odd ""name"""(y); INSERT INTO "odd ""name""" VALUES (1), (2);"#,
        )?;
        let got = discarded_rows(&before, &after)?.ok_or("not compared")?;
        assert_eq!(
            got,
            [
                TableRows {
                    table: "items".into(),
                    rows: 3
                },
                TableRows {
                    table: "odd \"name\"".into(),
                    rows: 2
                },
            ]
        );
        Ok(())
    }
}
