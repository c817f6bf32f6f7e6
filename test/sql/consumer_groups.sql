-- Consumer groups at C speed (1.8): consumer_group_member and poll's
-- filter _in_consumer_group are C (src/consumer_group.c), with a planner
-- support function; feed reads of a log with many partitions are planned
-- for their actual values.  In a database of its own, with 12 partitions.
\set own_db es_consumer_groups_test
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)

-- 1. The C rule gives what the 1.7 SQL rule gave:
--    abs(hash_64(cardinal_id(stream_id))) % size, for ids with and without
--    a category, with '+' compound ids, empty parts and multibyte text.
CREATE TEMP TABLE ids AS
SELECT id FROM (
    SELECT 'account-' || i AS id FROM generate_series(1, 300) i
    UNION ALL SELECT 'account-' || i || '+position' FROM generate_series(1, 50) i
    UNION ALL SELECT 'account:command-' || md5(i::text) FROM generate_series(1, 50) i
    UNION ALL SELECT 'noid' || i FROM generate_series(1, 20) i
    UNION ALL VALUES ('cat-'), ('-x'), ('-'), ('a-b-c'), ('a-+b'), ('a-b+c+d'), ('kontø-bjørn'), ('流-水'), (''),
                     ('noid+x'), ('+'), ('+x'), ('noid+x+y')
) s;
SELECT count(*) AS ids,
       count(*) FILTER (WHERE event_store.consumer_group_member(id, size)
                              IS DISTINCT FROM
                              (abs(event_store._hash_64(event_store.cardinal_id(id))) % size)::int) AS mismatches
  FROM ids, generate_series(1, 7) size;
-- the boolean filter agrees with it, for every member
SELECT count(*) FILTER (WHERE event_store._in_consumer_group(id, member, size)
                              <> (event_store.consumer_group_member(id, size) = member)) AS mismatches
  FROM ids, generate_series(1, 5) size, generate_series(0, size - 1) member;
-- each stream is in exactly one member
SELECT count(*) AS streams_not_in_exactly_one_member
  FROM (SELECT id, size, count(*) FILTER (WHERE event_store._in_consumer_group(id, member, size)) AS n
          FROM ids, generate_series(1, 5) size, generate_series(0, size - 1) member
         GROUP BY id, size) x
 WHERE n <> 1;
-- known values: Message DB's hash_64 of the cardinal id, written out
SELECT id, ('x' || left(md5(event_store.cardinal_id(id)), 16))::bit(64)::bigint AS hash_64,
       event_store.consumer_group_member(id, 4) AS of_4, event_store.consumer_group_member(id, 3) AS of_3
  FROM (VALUES ('account-1'), ('account-123'), ('account-123+x'), ('withdrawal-123'), ('account-789'), ('noid'), ('noid+x')) v(id);

-- 2. Bad group sizes: a clear error (22023), as in 1.7
\set VERBOSITY sqlstate
SELECT event_store.consumer_group_member('account-1', 0);
SELECT event_store.consumer_group_member('account-1', -3);
SELECT event_store._in_consumer_group('account-1', 0, 0);
\set VERBOSITY default
SELECT event_store.consumer_group_member('account-1', 0);
SELECT event_store.consumer_group_member(NULL, 4) IS NULL AS null_in_null_out;

-- 3. The planner is told that 1/size of the rows pass (it guessed 1/200
--    before and planned polls as if they could never stop early).
CREATE TEMP TABLE est AS SELECT 'account-' || i AS stream_id FROM generate_series(1, 10000) i;
ANALYZE est;
CREATE FUNCTION pg_temp.estimated_rows(q text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::int;
END
$$;
SELECT pg_temp.estimated_rows('SELECT * FROM est WHERE event_store._in_consumer_group(stream_id, 0, 4)') AS of_4,
       pg_temp.estimated_rows('SELECT * FROM est WHERE event_store._in_consumer_group(stream_id, 1, 10)') AS of_10,
       pg_temp.estimated_rows('SELECT * FROM est WHERE event_store._in_consumer_group(stream_id, 0, 1)') AS of_1;

-- 4. poll() with a group over 12 partitions: every event of the subscribed
--    categories reaches exactly one member, in position order, whatever
--    plan the session would otherwise use; the filters still apply.
SELECT event_store.set_partition_interval('1 day');
-- daily partitions before this month's (which holds the appends below)
SELECT count(event_store._create_partition_for(now() - make_interval(days => 31 + d))) AS made
  FROM generate_series(1, 11) d;
SELECT count(*) >= 12 AS many_partitions FROM event_store.partition_info;
SELECT count(event_store.append_event(c || '-' || s, CASE WHEN r % 2 = 0 THEN 'Even' ELSE 'Odd' END,
                                      jsonb_build_object('r', r)))
  FROM generate_series(1, 6) r, generate_series(1, 25) s, (VALUES ('account'), ('order'), ('other')) v(c);
SELECT event_store.subscribe('one_category', ARRAY['account']);
SELECT event_store.subscribe('two_categories', ARRAY['account', 'order']);
SELECT event_store.subscribe('all_even', NULL, ARRAY['Even']);
-- a category named twice, and an array whose subscripts start at 0
SELECT event_store.subscribe('dup_categories', ARRAY['account', 'order', 'account']);
SELECT event_store.subscribe('zero_based', '[0:0]={account}'::text[]);
CREATE TEMP TABLE delivered (mode text, sub text, member int, n int, global_position bigint, stream_id text, event_type text);
CREATE FUNCTION pg_temp.drain(mode text, sub text, size int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    got int;
    last bigint;
BEGIN
    PERFORM set_config('plan_cache_mode', mode, false);
    FOR m IN 0 .. size - 1 LOOP
        FOR n IN 1 .. 100 LOOP
            INSERT INTO delivered
            SELECT mode, sub, m, n, e.global_position, e.stream_id, e.event_type
              FROM event_store.poll(sub, 7, m, size) e;
            GET DIAGNOSTICS got = ROW_COUNT;
            EXIT WHEN got = 0;
            SELECT max(d.global_position) INTO last FROM delivered d
             WHERE d.mode = drain.mode AND d.sub = drain.sub AND d.member = m;
            PERFORM event_store.ack(sub, last, m, size);
        END LOOP;
        -- start over for the next plan mode
        DELETE FROM event_store.subscription_checkpoints c WHERE c.name = sub;
    END LOOP;
    PERFORM set_config('plan_cache_mode', 'auto', false);
END
$$;
SELECT pg_temp.drain(mode, sub, 3)
  FROM (VALUES ('force_generic_plan'), ('force_custom_plan'), ('auto')) m(mode),
       (VALUES ('one_category'), ('two_categories'), ('all_even'), ('dup_categories'), ('zero_based')) s(sub);
-- the expected sets
CREATE TEMP TABLE wanted AS
SELECT s.sub, e.global_position, e.stream_id
  FROM event_store.events e,
       (VALUES ('one_category', ARRAY['account'], NULL::text[]),
               ('two_categories', ARRAY['account', 'order'], NULL),
               ('all_even', NULL, ARRAY['Even']),
               ('dup_categories', ARRAY['account', 'order'], NULL),
               ('zero_based', ARRAY['account'], NULL)) s(sub, cats, types)
 WHERE (s.cats IS NULL OR split_part(e.stream_id, '-', 1) = ANY (s.cats))
   AND (s.types IS NULL OR e.event_type = ANY (s.types));
SELECT w.sub, m.mode, count(*) AS wanted,
       count(d.global_position) AS delivered,
       count(*) FILTER (WHERE d.member IS DISTINCT FROM event_store.consumer_group_member(w.stream_id, 3)) AS wrong_member
  FROM wanted w
 CROSS JOIN (VALUES ('force_generic_plan'), ('force_custom_plan'), ('auto')) m(mode)
  LEFT JOIN delivered d ON d.sub = w.sub AND d.mode = m.mode AND d.global_position = w.global_position
 GROUP BY w.sub, m.mode ORDER BY 1, 2;
-- nothing delivered twice, nothing outside the subscription
SELECT count(*) AS duplicates FROM (SELECT 1 FROM delivered GROUP BY mode, sub, global_position HAVING count(*) > 1) x;
SELECT count(*) AS unwanted FROM delivered d
 WHERE NOT EXISTS (SELECT 1 FROM wanted w WHERE w.sub = d.sub AND w.global_position = d.global_position);
-- in position order within each member
SELECT count(*) AS out_of_order FROM (
    SELECT global_position < lag(global_position) OVER (PARTITION BY mode, sub, member ORDER BY n, global_position) AS back
      FROM delivered) x WHERE back;

-- 5. The plan mode chosen inside a feed read ends with the call.
SET plan_cache_mode = force_generic_plan;
SELECT count(*) FROM event_store.read_category('account', 0, 10);
SELECT count(*) FROM event_store.read_all(0, 10);
SHOW plan_cache_mode;
RESET plan_cache_mode;
SHOW plan_cache_mode;

-- 6. Partitions premade for the future hold no position at or below the
--    horizon: feed reads end at the latest partition that has any block.
SELECT count(event_store._create_partition_for(now() + make_interval(days => 40 + d))) AS made_ahead
  FROM generate_series(1, 5) d;
SELECT event_store._feed_scan_to(event_store.feed_horizon())
       = (SELECT p.range_end FROM event_store.partition_info p
           WHERE (SELECT max(recorded_at) FROM event_store.events) >= p.range_start
             AND (SELECT max(recorded_at) FROM event_store.events) < p.range_end) AS bound_is_end_of_latest_written;
SELECT (SELECT count(*) FROM event_store.read_all(0, 100000)) = (SELECT count(*) FROM event_store.events) AS read_all_complete,
       (SELECT count(*) FROM event_store.read_category('order', 0, 100000))
       = (SELECT count(*) FROM event_store.events WHERE stream_id LIKE 'order-%') AS read_category_complete;

-- run_projection reads the feed with the same bounds: all of it
CREATE TABLE counted (global_position bigint PRIMARY KEY);
CREATE FUNCTION count_event(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO counted VALUES (e.global_position)
$$;
SELECT event_store.create_projection('counter', 'count_event(event_store.events)', mode => 'async');
SELECT event_store.run_projection('counter', 100000) = (SELECT count(*) FROM event_store.events) AS run_projection_complete;

\c :orig_db
DROP DATABASE es_consumer_groups_test;
