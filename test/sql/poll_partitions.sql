-- poll over many partitions (issue 26/29): a retry due is read from its own
-- partition, however far before the checkpoint's partition it lies; the
-- read is bounded by recorded_at so that it plans and probes only the
-- partitions that can hold it (docs/benchmarks.md, "Poll over many
-- partitions, 1.12"; test/bench/poll_partitions_bench.sh measures it).
\set own_db es_poll_partitions_test
\i test/sql/include/own_db.sql
\i test/sql/include/restored.sql
-- daily partitions of the last 30 days, two of them with restored events
SELECT event_store.set_partition_interval('1 day');
SELECT count(event_store._create_partition_for(now() - make_interval(days => i)))
  FROM generate_series(1, 30) i;
SELECT pg_temp.restore_stream('account-1', now() - interval '20 days',
       '[{"type": "Opened", "data": {"n": 1}}, {"type": "Deposited", "data": {"n": 2}}]');
SELECT pg_temp.restore_stream('account-2', now() - interval '10 days',
       '[{"type": "Opened", "data": {"n": 3}}]');
SELECT count(event_store.append_event('account-' || (i % 3 + 1) || '0', 'Deposited', jsonb_build_object('n', i)))
  FROM generate_series(4, 9) i;
-- more than 4 partitions: poll plans for the actual values
SELECT count(*) > 4 AS many_partitions FROM event_store.partition_info;
SELECT event_store.subscribe('pp', ARRAY['account'], NULL, 5, '1 millisecond');
SELECT global_position, stream_id, data FROM event_store.poll('pp', 4);
-- the events of both past partitions fail; the consumer goes on past them
SELECT event_store.nack('pp', 1, 'boom');
SELECT event_store.nack('pp', 3, 'boom');
SELECT event_store.ack('pp', 4);
SELECT pg_sleep(0.05);
-- the retries first (from the partitions of 20 and 10 days ago, before the
-- checkpoint's), then the new events after position 4; account-1's second
-- event waits behind its first (a held row)
SELECT global_position, stream_id, data FROM event_store.poll('pp', 10);
SELECT global_position, state, attempts FROM event_store.subscription_retries ORDER BY 1;
-- account-1's first event done: its second (20 days ago, held) and the
-- retry of account-2's (10 days ago) are read, each from its partition
SELECT event_store.nack('pp', 3, 'boom again');
SELECT event_store.ack('pp', 1);
SELECT pg_sleep(0.05);
SELECT global_position, stream_id, data FROM event_store.poll('pp', 3);
-- a group of 2: each member gets its own streams' retries
SELECT event_store.subscribe('pg', ARRAY['account'], NULL, 5, '1 millisecond');
SELECT m, array_agg(global_position ORDER BY global_position) AS delivered
  FROM generate_series(0, 1) m, event_store.poll('pg', 3, m, 2) GROUP BY m ORDER BY m;
SELECT event_store.nack('pg', p.global_position, 'boom', m, 2)
  FROM generate_series(0, 1) m, event_store.poll('pg', 1, m, 2) p ORDER BY m;
SELECT pg_sleep(0.05);
SELECT m, array_agg(global_position ORDER BY global_position) AS delivered
  FROM generate_series(0, 1) m, event_store.poll('pg', 2, m, 2) GROUP BY m ORDER BY m;
\c :orig_db
DROP DATABASE es_poll_partitions_test;
