-- Inline projection handlers in every form (1.8): a plain LANGUAGE sql
-- handler's body is prepared once and kept (functions.c would parse and
-- plan it again in every transaction); every other handler is called
-- through fmgr.  Both must behave exactly like a call of the function.
\set own_db es_projection_handlers_test
\i test/sql/include/own_db.sql

CREATE TABLE seen (handler text, global_position bigint, stream_id text, amount int);

-- by argument name and by $1 (kept plans)
CREATE FUNCTION h_sql_named(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seen VALUES ('sql_named', e.global_position, e.stream_id, (e.data->>'amount')::int)
$$;
CREATE FUNCTION h_sql_positional(event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seen VALUES ('sql_positional', ($1).global_position, ($1).stream_id, (($1).data->>'amount')::int)
$$;
-- two statements (through fmgr)
CREATE FUNCTION h_sql_two(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seen VALUES ('sql_two_a', e.global_position, e.stream_id, 0);
    INSERT INTO seen VALUES ('sql_two_b', e.global_position, e.stream_id, 0)
$$;
-- a standard SQL body (BEGIN ATOMIC, through fmgr)
CREATE FUNCTION h_sql_atomic(e event_store.events) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    INSERT INTO seen VALUES ('sql_atomic', e.global_position, e.stream_id, (e.data->>'amount')::int);
END;
-- PL/pgSQL
CREATE FUNCTION h_plpgsql(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seen VALUES ('plpgsql', e.global_position, e.stream_id, (e.data->>'amount')::int);
END
$$;
SELECT event_store.create_projection(p, (p || '(event_store.events)')::regprocedure, NULL, ARRAY['acct'])
  FROM unnest(ARRAY['h_sql_named', 'h_sql_positional', 'h_sql_two', 'h_sql_atomic', 'h_plpgsql']) p;

SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 5}');
SELECT event_store.append('acct-2', ARRAY[event_store.event('Deposited', '{"amount": 7}'),
                                          event_store.event('Deposited', '{"amount": 9}')]);
SELECT event_store.append_event('other-1', 'Deposited', '{"amount": 1}');   -- filtered out
-- every handler saw every acct event once, in position order
SELECT handler, array_agg(stream_id || ':' || amount ORDER BY global_position) AS events
  FROM seen GROUP BY handler ORDER BY handler;
-- and again in a new transaction (kept plans run again)
SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 11}');
SELECT handler, count(*), sum(amount) FROM seen GROUP BY handler ORDER BY handler;
SELECT event_store.drop_projection(p)
  FROM unnest(ARRAY['h_sql_named', 'h_sql_positional', 'h_sql_two', 'h_sql_atomic', 'h_plpgsql']) p;
TRUNCATE seen;

-- An unqualified name resolves with the handler's own search_path,
-- "$user", public, pg_temp (1.11), never with the appender's: with a.tally
-- and b.tally first in the appender's path, the rows go to public.tally.
CREATE SCHEMA a;
CREATE SCHEMA b;
CREATE TABLE a.tally (n int);
CREATE TABLE b.tally (n int);
CREATE TABLE public.tally (n int);
SET check_function_bodies = off;   -- tally is found only at run time
CREATE FUNCTION h_tally(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tally VALUES ((e.data->>'amount')::int)
$$;
RESET check_function_bodies;
SELECT event_store.create_projection('tally', 'h_tally(event_store.events)');
SET search_path = a, public;
SELECT event_store.append_event('acct-3', 'Deposited', '{"amount": 1}');
SET search_path = b, public;
SELECT event_store.append_event('acct-3', 'Deposited', '{"amount": 2}');
RESET search_path;
SELECT (SELECT array_agg(n) FROM a.tally) AS in_a, (SELECT array_agg(n) FROM b.tally) AS in_b,
       (SELECT array_agg(n ORDER BY n) FROM public.tally) AS in_public;
-- ... the kept plan is planned again when a table it uses is dropped and
-- created again
DROP TABLE public.tally;
CREATE TABLE public.tally (n int, note text DEFAULT 'new');
SET search_path = a, public;
SELECT event_store.append_event('acct-3', 'Deposited', '{"amount": 3}');
RESET search_path;
SELECT * FROM public.tally;
-- ... and when the function is replaced
CREATE OR REPLACE FUNCTION h_tally(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO b.tally VALUES (100 + (e.data->>'amount')::int)
$$;
SELECT event_store.append_event('acct-3', 'Deposited', '{"amount": 4}');
SELECT array_agg(n ORDER BY n) AS in_b FROM b.tally;
SELECT event_store.drop_projection('tally');

-- A handler that is not VOLATILE may not write, exactly as when called:
-- the append fails and nothing is written.
CREATE FUNCTION h_stable(e event_store.events) RETURNS void LANGUAGE sql STABLE AS $$
    INSERT INTO seen VALUES ('stable', e.global_position, e.stream_id, 0)
$$;
SELECT event_store.create_projection('stable', 'h_stable(event_store.events)');
SELECT event_store.stream_version('acct-4') AS before;
SELECT event_store.append_event('acct-4', 'Deposited', '{"amount": 1}');
SELECT event_store.stream_version('acct-4') AS after, (SELECT count(*) FROM seen) AS seen;
SELECT event_store.drop_projection('stable');

-- A failing body rolls the append back, with the projection in the context.
CREATE FUNCTION h_divide(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seen VALUES ('divide', e.global_position, e.stream_id, 1 / (e.data->>'amount')::int)
$$;
SELECT event_store.create_projection('divide', 'h_divide(event_store.events)');
SELECT event_store.append_event('acct-5', 'Deposited', '{"amount": 0}');
SELECT event_store.stream_version('acct-5') AS not_written, (SELECT count(*) FROM seen) AS seen;
SELECT event_store.append_event('acct-5', 'Deposited', '{"amount": 1}');
SELECT handler, stream_id, amount FROM seen;
SELECT event_store.drop_projection('divide');
TRUNCATE seen;

-- SECURITY DEFINER and SET clauses are honoured (such handlers go through
-- fmgr): the writer may not touch the owner's table, the handler may.
CREATE ROLE es_handler_writer;
GRANT event_store_writer TO es_handler_writer;
CREATE TABLE private_log (who text, what text);
CREATE FUNCTION h_definer(e event_store.events) RETURNS void LANGUAGE sql SECURITY DEFINER AS $$
    INSERT INTO public.private_log VALUES (current_user, e.stream_id)
$$;
CREATE FUNCTION h_set(e event_store.events) RETURNS void LANGUAGE sql SET search_path = b AS $$
    INSERT INTO tally VALUES (-1)
$$;
GRANT EXECUTE ON FUNCTION h_set(event_store.events) TO es_handler_writer;
GRANT INSERT ON b.tally TO es_handler_writer;
GRANT USAGE ON SCHEMA b TO es_handler_writer;
SELECT event_store.create_projection('definer', 'h_definer(event_store.events)');
SELECT event_store.create_projection('set_path', 'h_set(event_store.events)');
SET ROLE es_handler_writer;
SELECT event_store.append_event('acct-6', 'Deposited', '{"amount": 1}');
SELECT count(*) FROM private_log;   -- the writer cannot read it
RESET ROLE;
SELECT * FROM private_log;
SELECT count(*) FILTER (WHERE n = -1) AS set_path_rows FROM b.tally;
SELECT event_store.drop_projection('definer');
SELECT event_store.drop_projection('set_path');

-- A kept plain handler runs as its registrar (here the superuser that
-- registered it, not the appending writer); made SECURITY DEFINER
-- afterwards, and given to another owner, it runs as that owner from then
-- on (the cache is rebuilt and the handler goes through fmgr).
CREATE FUNCTION h_switch(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.private_log VALUES (current_user, e.stream_id)
$$;
GRANT EXECUTE ON FUNCTION h_switch(event_store.events) TO es_handler_writer;
GRANT INSERT ON private_log TO es_handler_writer;
SELECT event_store.create_projection('switch', 'h_switch(event_store.events)');
SET ROLE es_handler_writer;
SELECT event_store.append_event('acct-7', 'Deposited', '{"amount": 1}');
RESET ROLE;
ALTER FUNCTION h_switch(event_store.events) SECURITY DEFINER;
ALTER FUNCTION h_switch(event_store.events) OWNER TO es_handler_writer;
SET ROLE es_handler_writer;
SELECT event_store.append_event('acct-7', 'Deposited', '{"amount": 2}');
RESET ROLE;
SELECT who, what FROM private_log WHERE what = 'acct-7' ORDER BY ctid;
SELECT event_store.drop_projection('switch');
DROP FUNCTION h_switch(event_store.events);

\c :orig_db
DROP DATABASE es_projection_handlers_test;
DROP ROLE es_handler_writer;
