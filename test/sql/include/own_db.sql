-- own_db: a database of its own (test/sql/include/README.md)
SELECT current_database() AS orig_db \gset
CREATE DATABASE :"own_db";
\c :own_db
SET client_min_messages = warning;
\if :{?own_db_extension}
CREATE EXTENSION :own_db_extension;
\unset own_db_extension
\else
CREATE EXTENSION event_store;
\endif
RESET client_min_messages;
