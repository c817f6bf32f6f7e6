-- poll over several categories (review 1.13 poll2): a subscription to two
-- or more categories gets exactly the events of the union of its
-- categories' own reads, in global_position order, page by page: events
-- interleaved across the categories, across a partition boundary, with
-- generic plans (up to 4 partitions) and with custom plans (more), for a
-- plain subscription and for a consumer group.  poll runs without JIT
-- (docs/benchmarks.md, "Poll over several categories, 1.13":
-- the merged read's generic plan cost over jit_above_cost made every call
-- compile; test/bench/poll_categories_bench.sh measures it).
\set own_db es_poll_categories_test
\i test/sql/include/own_db.sql
\i test/sql/include/restored.sql
-- poll and read_category keep their SET clauses, jit = off among them
-- (ALTER FUNCTION after their last restatement in the upgrade script)
SELECT p.oid::regprocedure AS function, unnest(p.proconfig) AS setting FROM pg_proc p
 WHERE p.oid IN ('event_store.poll(text, int, int, int)'::regprocedure,
                 'event_store.read_category(text, bigint, int)'::regprocedure) ORDER BY p.proname, 2;
-- last month (its own partition): streams of three categories restored in
-- turn, so that their positions interleave
SELECT sum(pg_temp.restore_stream(c || '-' || s, date_trunc('month', now()) - interval '10 days' + make_interval(mins => s),
           jsonb_build_array(jsonb_build_object('type', 'Old', 'data', jsonb_build_object('c', c, 's', s)))))
  FROM (SELECT s, c FROM generate_series(1, 4) s, (VALUES (1, 'account'), (2, 'order'), (3, 'user')) v(k, c)
         ORDER BY s, k) x;
-- this month: appends interleaved the same way, some to the streams above
SELECT count(event_store.append_event(c || '-' || (i % 5 + 1), 'New', jsonb_build_object('i', i)))
  FROM (SELECT i, c FROM generate_series(1, 8) i, (VALUES (1, 'order'), (2, 'user'), (3, 'account')) v(k, c)
         ORDER BY i, k) x;
-- a category the subscriptions leave out, and a truncated stream (the
-- lifecycle hides its first events from every read)
SELECT count(event_store.append_event('other-1', 'New', jsonb_build_object('i', i))) FROM generate_series(1, 3) i;
SELECT event_store.truncate_stream('order-2', 2);
SELECT count(*) AS partitions FROM event_store.partition_info;
SELECT count(DISTINCT tableoid) AS partitions_with_events FROM event_store.events;
-- page through a subscription (member) max_count events at a time, acking
-- each page's last event; the positions delivered, in order
CREATE FUNCTION pg_temp.page(sub text, page int, m int DEFAULT NULL, n int DEFAULT NULL)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    got bigint[] := '{}';
    p   bigint[];
BEGIN
    LOOP
        p := ARRAY(SELECT global_position FROM event_store.poll(sub, page, m, n));
        EXIT WHEN cardinality(p) = 0;
        got := got || p;
        PERFORM event_store.ack(sub, p[cardinality(p)], m, n);
    END LOOP;
    RETURN got;
END
$$;
-- the union of the categories' reads, in position order
CREATE FUNCTION pg_temp.expected(categories text[]) RETURNS bigint[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(r.global_position ORDER BY r.global_position), '{}')
      FROM (SELECT DISTINCT c FROM unnest(categories) c) c,
           event_store.read_category(c.c) r
$$;
-- the sets compared: single-category subscriptions and read_category agree
SELECT c, pg_temp.page('one_' || c, 4) = pg_temp.expected(ARRAY[c]) AS same,
       cardinality(pg_temp.expected(ARRAY[c])) AS events
  FROM (VALUES ('account'), ('order'), ('user')) v(c),
       LATERAL (SELECT event_store.subscribe('one_' || c, ARRAY[c])) s;
-- generic plans (at most 4 partitions): two and three categories (one
-- named twice), pages of 1, 3 and 100 events
SELECT event_store.subscribe('two_' || k, ARRAY['account', 'order']),
       event_store.subscribe('three_' || k, ARRAY['user', 'order', 'account', 'order'])
  FROM generate_series(1, 3) k;
SELECT sub, page, cardinality(got) AS events,
       got = pg_temp.expected(cats) AS same_as_union
  FROM (VALUES ('two_1', 1, ARRAY['account', 'order']), ('two_2', 3, ARRAY['account', 'order']),
               ('two_3', 100, ARRAY['account', 'order']),
               ('three_1', 1, ARRAY['user', 'order', 'account']), ('three_2', 3, ARRAY['user', 'order', 'account']),
               ('three_3', 100, ARRAY['user', 'order', 'account'])) v(sub, page, cats),
       LATERAL pg_temp.page(sub, page) got
 ORDER BY sub;
-- the first page of two categories: the interleaving shown
SELECT event_store.subscribe('show', ARRAY['order', 'account']);
SELECT global_position, stream_id, event_type, recorded_at < date_trunc('month', now()) AS last_month
  FROM event_store.poll('show', 10);
-- a consumer group of 2: each event of the union to one member
SELECT event_store.subscribe('grp', ARRAY['account', 'order']);
SELECT cardinality(a) + cardinality(b) AS events,
       ARRAY(SELECT x FROM unnest(a || b) x ORDER BY x) = pg_temp.expected(ARRAY['account', 'order']) AS same_as_union,
       NOT a && b AS disjoint
  FROM pg_temp.page('grp', 2, 0, 2) a, pg_temp.page('grp', 2, 1, 2) b;
-- custom plans (more than 4 partitions): the same for new subscriptions
SELECT count(event_store._create_partition_for(now() - make_interval(months => i))) FROM generate_series(2, 4) i;
SELECT count(*) > 4 AS custom_plans FROM event_store.partition_info;
SELECT event_store.subscribe('two_c', ARRAY['account', 'order']),
       event_store.subscribe('three_c', ARRAY['user', 'order', 'account']);
SELECT pg_temp.page('two_c', 3) = pg_temp.expected(ARRAY['account', 'order']) AS two_same,
       pg_temp.page('three_c', 2) = pg_temp.expected(ARRAY['user', 'order', 'account']) AS three_same;
\c :orig_db
DROP DATABASE es_poll_categories_test;
