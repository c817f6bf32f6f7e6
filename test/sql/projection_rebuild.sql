-- Issue 29 (1.12): zero-downtime (blue/green) rebuilds.  rebuild_projection
-- (into_table => ..., live_table => ...) builds a new version beside the
-- live one, catch_up_projection() feeds it, swap_projection() swaps the
-- tables' names; every bad input is refused with its SQLSTATE and changes
-- nothing.  Also: rebuilds replay only the events reads show (issue 28
-- leftover).  In a database of its own.
\set own_db es_projection_rebuild_test
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)
\set VERBOSITY terse
SET client_min_messages = warning;

CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || msg;
END
$$;

-- One handler builds either version: it writes into projection_target(),
-- which names the new table during the calls of a blue/green rebuild and
-- returns its argument otherwise.
CREATE TABLE public.totals (account text PRIMARY KEY, n int NOT NULL, total numeric NOT NULL);
CREATE FUNCTION public.on_amount(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %s AS t VALUES ($1, 1, $2)
                    ON CONFLICT (account) DO UPDATE SET n = t.n + 1, total = t.total + excluded.total',
                   event_store.projection_target('public.totals'))
    USING event_store.cardinal_id(e.stream_id), (e.data->>'amount')::numeric;
END
$$;
CREATE FUNCTION public.reset_totals() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('TRUNCATE %s', event_store.projection_target('public.totals'));
END
$$;
-- an async one, same shape
CREATE TABLE public.atotals (account text PRIMARY KEY, n int NOT NULL, total numeric NOT NULL);
CREATE FUNCTION public.on_amount_async(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %s AS t VALUES ($1, 1, $2)
                    ON CONFLICT (account) DO UPDATE SET n = t.n + 1, total = t.total + excluded.total',
                   event_store.projection_target('public.atotals'))
    USING event_store.cardinal_id(e.stream_id), (e.data->>'amount')::numeric;
END
$$;
CREATE FUNCTION public.reset_atotals() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('TRUNCATE %s', event_store.projection_target('public.atotals'));
END
$$;

-- The read model as reads show the log: what a rebuild must produce.
CREATE FUNCTION public.expected() RETURNS TABLE (account text, n bigint, total numeric) LANGUAGE sql AS $$
    SELECT event_store.cardinal_id(s.stream_id), count(*), sum((e.data->>'amount')::numeric)
      FROM event_store.streams s, event_store.read_stream(s.stream_id) e
     WHERE s.stream_id LIKE 'acct-%'
     GROUP BY 1 ORDER BY 1
$$;
CREATE FUNCTION public.show(t regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    EXECUTE format('SELECT coalesce(string_agg(account || '':'' || n || ''/'' || total, '' '' ORDER BY account), ''(empty)'') FROM %s', t) INTO r;
    RETURN r;
END
$$;

SELECT event_store.append('acct-1', ARRAY[event_store.event('Deposited', '{"amount": 10}'),
                                         event_store.event('Deposited', '{"amount": 20}'),
                                         event_store.event('Deposited', '{"amount": 30}')]);
SELECT event_store.append('acct-2', ARRAY[event_store.event('Deposited', '{"amount": 1}'),
                                         event_store.event('Deposited', '{"amount": 2}')]);
SELECT event_store.append('acct-3', ARRAY[event_store.event('Deposited', '{"amount": 100}')]);
SELECT event_store.append('acct-4', ARRAY[event_store.event('Deposited', '{"amount": 50}'),
                                         event_store.event('Deposited', '{"amount": 60}')]);

SELECT event_store.create_projection('totals', 'on_amount(event_store.events)',
                                     categories => ARRAY['acct'], reset => 'reset_totals()');
SELECT event_store.create_projection('atotals', 'on_amount_async(event_store.events)',
                                     categories => ARRAY['acct'], mode => 'async',
                                     reset => 'reset_atotals()');
SELECT event_store.rebuild_projection('totals');
SELECT event_store.run_projection('atotals');
SELECT public.show('totals') AS totals, public.show('atotals') AS atotals;

------------------------------------------------------------------------------
-- Rebuilds replay what reads show: not the events that stream lifecycle
-- hides (deleted, truncated, max_count, max_age).
------------------------------------------------------------------------------
SELECT event_store.delete_stream('acct-3');
SELECT event_store.truncate_stream('acct-1', 2);
SELECT event_store.set_stream_metadata('acct-4', '{"max_count": 1}');
-- the live models still hold what was projected when the events came
SELECT public.show('totals') AS live_totals;
SELECT * FROM public.expected();
-- an in-place rebuild, inline ...
SELECT event_store.rebuild_projection('totals');
SELECT public.show('totals') AS rebuilt_inline,
       public.show('totals') = (SELECT string_agg(account || ':' || n || '/' || total, ' ' ORDER BY account) FROM public.expected()) AS as_reads_show;
-- ... and async (run_projection batches during the rebuild)
SELECT event_store.rebuild_projection('atotals', notice_every => 1);
SELECT public.show('atotals') AS rebuilt_async;
-- the live async projection, after the rebuild, again delivers every new event
SELECT event_store.append('acct-2', ARRAY[event_store.event('Deposited', '{"amount": 4}')]);
SELECT event_store.run_projection('atotals');
SELECT public.show('atotals') AS async_after_append;

------------------------------------------------------------------------------
-- Blue/green, inline projection
------------------------------------------------------------------------------
CREATE ROLE es_pr_reader IN ROLE event_store_reader;
GRANT SELECT ON public.totals TO es_pr_reader;
SELECT 'public.totals'::regclass::oid AS old_oid \gset
-- a new table, created like the live one (indexes, privileges, owner)
SELECT event_store.rebuild_projection('totals', into_table => 'totals_next', live_table => 'totals');
SELECT name, live_table, new_table, position = event_store._last_drawn_position() AS caught_up, events_processed
  FROM event_store.projection_versions;
SELECT public.show('totals') AS live, public.show('totals_next') AS new_version;
SELECT has_table_privilege('es_pr_reader', 'public.totals_next', 'SELECT') AS reader_may_read_new,
       (SELECT count(*) FROM pg_index WHERE indrelid = 'public.totals_next'::regclass) AS new_indexes;
-- appends go to the live version as before; the new one catches up from the log
SELECT event_store.append('acct-1', ARRAY[event_store.event('Deposited', '{"amount": 1000}')]);
SELECT public.show('totals') AS live, public.show('totals_next') AS new_version;
SELECT event_store.catch_up_projection('totals') AS caught_up_events;
SELECT event_store.catch_up_projection('totals') AS then;
SELECT public.show('totals_next') AS new_version;
-- an append after the last catch-up: swap brings the new version to the end
SELECT event_store.append('acct-2', ARRAY[event_store.event('Deposited', '{"amount": 8}')]);
SELECT event_store.swap_projection('totals') AS old_version_is_now;
SELECT 'public.totals'::regclass::oid <> :old_oid AS readers_see_new_table,
       'public.totals_next'::regclass::oid = :old_oid AS old_kept,
       public.show('totals') AS totals, public.show('totals_next') AS old_version;
SELECT public.show('totals') = (SELECT string_agg(account || ':' || n || '/' || total, ' ' ORDER BY account) FROM public.expected()) AS as_reads_show;
SELECT count(*) AS versions_left FROM event_store.projection_versions;
-- after the swap appends update the new version through the same name
SELECT event_store.append('acct-2', ARRAY[event_store.event('Deposited', '{"amount": 16}')]);
SELECT public.show('totals') AS totals, public.show('totals_next') AS old_version;
DROP TABLE public.totals_next;

------------------------------------------------------------------------------
-- Blue/green, async projection, into an empty table of one's own
------------------------------------------------------------------------------
CREATE TABLE public.atotals_v2 (LIKE public.atotals INCLUDING ALL);
SELECT event_store.rebuild_projection('atotals', into_table => 'public.atotals_v2', live_table => 'atotals');
SELECT event_store.append('acct-1', ARRAY[event_store.event('Deposited', '{"amount": 5}')]);
-- the live version goes on with run_projection(), the new one with catch_up_projection()
SELECT event_store.run_projection('atotals') AS live_run, event_store.catch_up_projection('atotals') AS new_run;
SELECT public.show('atotals') = public.show('atotals_v2') AS same,
       public.show('atotals_v2') = (SELECT string_agg(account || ':' || n || '/' || total, ' ' ORDER BY account) FROM public.expected()) AS as_reads_show;
SELECT event_store.swap_projection('atotals', max_lag => 0);
SELECT c.position = event_store._last_drawn_position() AS checkpoint_from_new_version,
       c.rebuild_finished_at IS NOT NULL AS finished
  FROM event_store.projection_checkpoints c WHERE c.name = 'atotals';
SELECT public.show('atotals') AS atotals;
DROP TABLE public.atotals_v2;

------------------------------------------------------------------------------
-- Bad input: each refused with its SQLSTATE; nothing changes
------------------------------------------------------------------------------
-- what a refused call must leave alone: versions, checkpoints, the tables
-- of the public schema and the read models' contents
CREATE FUNCTION public.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM event_store.projection_versions) || ' versions; ' ||
           coalesce((SELECT string_agg(v::text, ',' ORDER BY v.name) FROM event_store.projection_versions v), '-') || '; ' ||
           (SELECT string_agg(c.name || '@' || c.position || '/' || c.events_processed, ',' ORDER BY c.name)
              FROM event_store.projection_checkpoints c) || '; ' ||
           (SELECT string_agg(c.oid || '=' || c.relname, ',' ORDER BY c.relname) FROM pg_class c
             WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r') || '; ' ||
           public.show('totals') || '; ' || public.show('atotals')
$$;
CREATE TABLE public.full_table (LIKE public.totals);
INSERT INTO public.full_table VALUES ('x', 1, 1);
CREATE VIEW public.totals_view AS SELECT * FROM public.totals;
CREATE SCHEMA other;
CREATE TABLE other.totals_elsewhere (LIKE public.totals);
SELECT public.fingerprint() AS before \gset
SELECT try($$SELECT event_store.rebuild_projection('nope', into_table => 'nope_next', live_table => 'totals')$$) AS unknown_projection;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'full_table', live_table => 'totals')$$) AS into_not_empty;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'totals', live_table => 'public.totals')$$) AS into_is_live;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'totals_next')$$) AS into_without_live;
SELECT try($$SELECT event_store.rebuild_projection('totals', live_table => 'totals')$$) AS live_without_into;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'totals_next', live_table => 'no_such_table')$$) AS live_missing;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'other.totals_next', live_table => 'totals')$$) AS other_schema_new;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'other.totals_elsewhere', live_table => 'totals')$$) AS other_schema_existing;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'a.b.c', live_table => 'totals')$$) AS bad_name;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'totals_next', live_table => 'totals_view')$$) AS live_is_view;
SELECT try($$SELECT event_store.rebuild_projection('totals', 0, into_table => 'totals_next', live_table => 'totals')$$) AS notice_every_0;
SELECT try($$SELECT event_store.swap_projection('totals')$$) AS swap_without_rebuild;
SELECT try($$SELECT event_store.swap_projection('nope')$$) AS swap_unknown;
SELECT try($$SELECT event_store.catch_up_projection('totals')$$) AS catch_up_without_rebuild;
SELECT try($$SELECT event_store.catch_up_projection('totals', 0)$$) AS catch_up_0;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT event_store.catch_up_projection('totals')$$) AS catch_up_repeatable_read;
ROLLBACK;
SELECT try($$SELECT event_store.abandon_projection_rebuild('totals')$$) AS abandon_without_rebuild;
SELECT try($$SELECT event_store.abandon_projection_rebuild('nope')$$) AS abandon_unknown;
SELECT public.fingerprint() = :'before' AS nothing_changed;
SELECT count(*) AS tables_created FROM pg_class WHERE relname IN ('nope_next', 'totals_next');

-- a rebuild in progress: a second one, in place or blue/green, is refused
SELECT event_store.rebuild_projection('totals', into_table => 'totals_next', live_table => 'totals');
SELECT public.fingerprint() AS before \gset
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'totals_other', live_table => 'totals')$$) AS second_rebuild;
SELECT try($$SELECT event_store.rebuild_projection('totals')$$) AS in_place_during;
-- swap before catch-up: refused (max_lag positions behind at most)
SELECT event_store.append('acct-1', ARRAY[event_store.event('Deposited', '{"amount": 7}')]);
SELECT public.fingerprint() AS before \gset
SELECT try($$SELECT event_store.swap_projection('totals', max_lag => 0)$$) AS swap_not_caught_up;
SELECT try($$SELECT event_store.swap_projection('totals', max_lag => -1)$$) AS negative_max_lag;
SELECT public.fingerprint() = :'before' AS nothing_changed;
SELECT count(*) AS tables_created FROM pg_class WHERE relname = 'totals_other';
-- abandon: the live version is untouched, the new table is left to drop
SELECT event_store.abandon_projection_rebuild('totals');
SELECT count(*) AS versions FROM event_store.projection_versions;
DROP TABLE public.totals_next;
-- drop_projection drops a rebuild in progress with it
SELECT event_store.rebuild_projection('atotals', into_table => 'atotals_next', live_table => 'atotals');
SELECT event_store.drop_projection('atotals');
SELECT count(*) AS versions FROM event_store.projection_versions;

-- who may: the rebuild functions are event_store_admin's, as rebuild_projection
SET ROLE es_pr_reader;
SELECT try($$SELECT event_store.swap_projection('totals')$$) AS reader_swap;
SELECT try($$SELECT event_store.catch_up_projection('totals')$$) AS reader_catch_up;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'x', live_table => 'totals')$$) AS reader_rebuild;
RESET ROLE;
-- an admin must own the tables: the handler writes the new one as its
-- registrar, and the swap renames both
CREATE ROLE es_pr_admin IN ROLE event_store_admin;
GRANT CREATE ON SCHEMA public TO es_pr_admin;
CREATE TABLE public.admins_empty (LIKE public.totals INCLUDING ALL);
ALTER TABLE public.admins_empty OWNER TO es_pr_admin;
SELECT public.fingerprint() AS before \gset
SET ROLE es_pr_admin;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'admins_next', live_table => 'totals')$$) AS admin_not_owner_live;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'admins_empty', live_table => 'totals')$$) AS admin_not_owner_live_own_new;
RESET ROLE;
CREATE TABLE public.others_empty (LIKE public.totals);
ALTER TABLE public.totals OWNER TO es_pr_admin;
SET ROLE es_pr_admin;
SELECT try($$SELECT event_store.rebuild_projection('totals', into_table => 'others_empty', live_table => 'totals')$$) AS admin_not_owner_new;
RESET ROLE;
ALTER TABLE public.totals OWNER TO CURRENT_USER;
DROP TABLE public.others_empty;
SELECT public.fingerprint() = :'before' AS nothing_changed;
-- an admin that owns both tables may
ALTER TABLE public.totals OWNER TO es_pr_admin;
SET ROLE es_pr_admin;
SELECT event_store.rebuild_projection('totals', into_table => 'admins_empty', live_table => 'totals') > 0 AS admin_owner_rebuilds;
SELECT event_store.swap_projection('totals') AS admin_owner_swaps;
RESET ROLE;
SELECT public.show('totals') = public.show('admins_empty') AS same_model;

\c :orig_db
DROP DATABASE es_projection_rebuild_test;
DROP ROLE es_pr_reader;
DROP ROLE es_pr_admin;
