-- event_store 1.11 -> 1.12.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.12'" to load this file. \quit


------------------------------------------------------------------------------
-- issue 30: align upgraded installs with fresh ones
------------------------------------------------------------------------------
-- events_with_archive was created in 1.6 from e.* and a.*, which PostgreSQL
-- expands once, when the view is made: installs updated past 1.11 lack
-- the schema_version column that 1.11 added to both tables, while a fresh
-- install (sql/event_store--1.12.sql) has it.  Remade with today's columns;
-- its privileges are as before (none but the owner's).
DROP VIEW event_store.events_with_archive;
CREATE VIEW event_store.events_with_archive AS
SELECT e.*, false AS archived FROM event_store.events e
UNION ALL
SELECT a.*, true AS archived FROM event_store_archive.events a;
COMMENT ON VIEW event_store.events_with_archive IS 'Every event, attached or archived; the last column says which.';
REVOKE ALL ON event_store.events_with_archive FROM PUBLIC;

-- The partitions that CREATE EXTENSION event_store VERSION '1.0' premade
-- were extension members when _create_partition_for revoked UPDATE, DELETE
-- and TRUNCATE on them, so PostgreSQL recorded that ACL as their initial
-- privileges (pg_init_privs); 1.0 then removed them from the extension but
-- the record stayed.  pg_dump dumps a partition's ACL as the difference
-- from that record, i.e. nothing, and a restore gave the owner UPDATE,
-- DELETE and TRUNCATE on those partitions again.  Partitions are not
-- members: they have no initial privileges, as in a fresh install.
DELETE FROM pg_catalog.pg_init_privs ip
 WHERE ip.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND ip.privtype OPERATOR(pg_catalog.=) 'e'
   AND ip.objoid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                      WHERE i.inhparent IN ('event_store.events'::pg_catalog.regclass,
                                            'event_store_archive.events'::pg_catalog.regclass))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid OPERATOR(pg_catalog.=) ip.objoid
                      AND d.deptype OPERATOR(pg_catalog.=) 'e');
