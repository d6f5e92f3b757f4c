"""Storage: the database plumbing shared by the adapter registry and the key store.

With `registry.store: sqlite` both keep their state in one file, `<data_dir>/registry.sqlite3`:
`sqlite` connects to it and writes transactions, `schema` holds its tables and opens it migrated
to the newest schema. With `postgres` they share one PostgreSQL database: `postgres` holds the
connection, transactions and LISTEN, `pg_schema` the same tables in PostgreSQL's dialect and
their migrations. None of them knows about adapters or keys beyond the tables' definitions.
"""
