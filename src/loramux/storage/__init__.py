"""Storage: the SQLite plumbing shared by the adapter registry and the key store.

Both keep their state in one file, `<data_dir>/registry.sqlite3`: `sqlite` connects to it and
writes transactions, `schema` holds its tables and opens it migrated to the newest schema.
Neither knows about adapters or keys beyond the tables' definitions.
"""
