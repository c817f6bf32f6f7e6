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


------------------------------------------------------------------------------
-- issue 29: a new group member starts where its own group left off
------------------------------------------------------------------------------
-- Where a member continues when it polls, acks or nacks: its own
-- checkpoint.  A member without one (new, or new to this group size) must
-- not skip an event of its streams that no one acknowledged.  Until 1.12 it
-- started at the lowest checkpoint of the whole subscription, which counted
-- the other members of its own size: they handle other streams, so member
-- 1 of 2 started past its own events once member 0 had acknowledged them.
-- Now only a group size other than its own counts, and only one whose
-- members 0 .. size-1 all have checkpoints: every event up to the lowest
-- of them was handled by the member that had its stream.  Of several such
-- sizes the highest such position wins; without one, the beginning of the
-- log.  A resize thus redelivers (at least once), never skips.
CREATE OR REPLACE FUNCTION event_store._subscription_position(name text, member int, size int) RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(
    (SELECT c.position FROM event_store.subscription_checkpoints c
      WHERE c.name = $1 AND c.consumer_group_member = $2 AND c.consumer_group_size = $3),
    (SELECT max(g.handled) FROM (
        SELECT min(c.position) AS handled
          FROM event_store.subscription_checkpoints c
         WHERE c.name = $1 AND c.consumer_group_size <> $3
           AND c.consumer_group_member >= 0 AND c.consumer_group_member < c.consumer_group_size
         GROUP BY c.consumer_group_size
        HAVING count(*) = c.consumer_group_size) g),
    0);
