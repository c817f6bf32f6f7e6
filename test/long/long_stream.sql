-- Long streams and large payloads, shared by test/t/008_long_stream.pl (CI,
-- n = 100,000) and test/long/long_stream.sh (on demand, n = 1,000,000).
--
--   psql -X -At -v ON_ERROR_STOP=1 -v n=100000 -v pad=30 -f test/long/long_stream.sql
--
-- Needs a superuser (it reads /proc/<backend pid>/status with pg_read_file)
-- in a database with the extension.  Prints one line per check:
--   check|<name>|<got>|<expected>     passes when got = expected
--   mem|<name>|<bytes>|<bound>        passes when bytes < bound
-- Event i of stream long-1 has data {"k<i % 50>": i, "n": i, "pad": md5(i)
-- repeated :pad times}, so every expected state is a formula of i, computed
-- here without the extension.
\set QUIET on
\pset footer off
\set batch 10000
\if :{?n}
\else
\set n 100000
\endif
\if :{?pad}
\else
\set pad 30
\endif
\if :{?mem_bound}
\else
\set mem_bound 67108864
\endif

SET client_min_messages = warning;
DROP TABLE IF EXISTS long_results;
CREATE TABLE long_results (kind text, name text, got text, expected text, seq serial);

CREATE OR REPLACE FUNCTION long_data(i bigint, pad int) RETURNS jsonb LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object('k' || (i % 50), i, 'n', i, 'pad', repeat(md5(i::text), pad));

-- The merge-patch state after versions 1..v, by formula.
CREATE OR REPLACE FUNCTION long_state(v bigint, pad int) RETURNS jsonb LANGUAGE sql IMMUTABLE
RETURN (SELECT jsonb_object_agg('k' || (i % 50), i) FROM generate_series(greatest(1, v - 49), v) i)
       || jsonb_build_object('n', v, 'pad', repeat(md5(v::text), pad));

CREATE OR REPLACE FUNCTION long_sum(state bigint, e event_store.events) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN coalesce(state, 0) + (e.data->>'n')::bigint; END $$;

-- ---------------------------------------------------------------------------
-- A 1 MB event, a batch of eight of them, read back and folded.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE big_doc AS
SELECT jsonb_build_object('blob', string_agg(md5(g::text), '' ORDER BY g)) AS data
  FROM generate_series(1, 32768) g;                 -- 32768 * 32 chars = 1 MiB
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: payload size', octet_length(data->>'blob')::text, '1048576' FROM big_doc;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: append returns version 1',
       event_store.append_event('large-1', 'Large', data, expected_version => 0)::text, '1' FROM big_doc;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: read back byte for byte',
       (SELECT md5(e.data::text) FROM event_store.read_stream('large-1') e), md5(data::text) FROM big_doc;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: state_as_of is the payload',
       md5(event_store.state_as_of('large-1')::text), md5(data::text) FROM big_doc;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: batch of eight appends',
       event_store.append('large-1', (SELECT array_agg(event_store.event('Large', jsonb_build_object('blob', data->'blob', 'i', i)))
                                        FROM generate_series(1, 8) i), 1)::text, '9' FROM big_doc;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: the batch read back',
       (SELECT string_agg(e.stream_version || ':' || (e.data->>'i') || ':' || (md5(e.data->>'blob') = md5(b.data->>'blob')), ',' ORDER BY e.stream_version)
          FROM event_store.read_stream('large-1', 2) e),
       '2:1:true,3:2:true,4:3:true,5:4:true,6:5:true,7:6:true,8:7:true,9:8:true' FROM big_doc b;
SELECT event_store.append_event('large-1', 'Small', '{"blob": null, "done": true}') AS large_v \gset
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', '1 MB event: fold after a patch removing the blob',
       :large_v || ':' || left(event_store.state_as_of('large-1')::text, 100)
       || ':' || left(event_store.fold('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'large-1')::text, 100)
       || ':' || event_store.fold('event_store.event_count(bigint, event_store.events)', 0::bigint, 'large-1'),
       '10:{"i": 8, "done": true}:{"i": 8, "done": true}:10';

-- ---------------------------------------------------------------------------
-- A batch of exactly event_store.max_batch_size events; one more is refused.
-- ---------------------------------------------------------------------------
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'max batch: event_store.max_batch_size', current_setting('event_store.max_batch_size'), '10000';
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'max batch: append of exactly max_batch_size events',
       event_store.append('maxbatch-1', (SELECT array_agg(event_store.event('E', long_data(i, 1)) ORDER BY i)
                                           FROM generate_series(1, current_setting('event_store.max_batch_size')::int) i), 0)::text,
       current_setting('event_store.max_batch_size');
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'max batch: versions 1..max in order, data intact',
       (SELECT count(*) || ':' || min(stream_version) || ':' || max(stream_version) || ':'
               || bool_and(stream_version = (data->>'n')::bigint) || ':' || count(DISTINCT global_position)
          FROM event_store.read_stream('maxbatch-1', 1, 100000)),
       '10000:1:10000:true:10000';
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'max batch: state_as_of', md5(event_store.state_as_of('maxbatch-1')::text), md5(long_state(10000, 1)::text);
DO $$
BEGIN
    PERFORM event_store.append('maxbatch-2', (SELECT array_agg(event_store.event('E', '{}'))
                                                FROM generate_series(1, current_setting('event_store.max_batch_size')::int + 1)));
    INSERT INTO long_results (kind, name, got, expected) VALUES ('check', 'max batch: one more is refused', 'accepted', '54000');
EXCEPTION WHEN OTHERS THEN
    INSERT INTO long_results (kind, name, got, expected) VALUES ('check', 'max batch: one more is refused', SQLSTATE, '54000');
END $$;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'max batch: nothing of the refused batch written', event_store.stream_version('maxbatch-2')::text, '0';

-- ---------------------------------------------------------------------------
-- The long stream: n events in batches of 10,000 (a transaction each), each
-- append with the expected version of the one before.
-- ---------------------------------------------------------------------------
CREATE TABLE long_appends (b int PRIMARY KEY, version bigint);
SELECT format('INSERT INTO long_appends SELECT %s, event_store.append(''long-1'', '
              '(SELECT array_agg(event_store.event(''Tick'', long_data(i, %s)) ORDER BY i) FROM generate_series(%s, %s) i), %s)',
              b, :pad, b * :batch + 1, least((b + 1) * :batch, :n), b * :batch)
  FROM generate_series(0, (:n - 1) / :batch) b
\gexec
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: every append returned the right version',
       count(*) FILTER (WHERE version = least((b + 1) * :batch, :n))::text, count(*)::text FROM long_appends;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: stream_version', event_store.stream_version('long-1')::text, :'n';

-- A small stream to warm up the same code paths before the baseline.
SELECT event_store.append('long-small', (SELECT array_agg(event_store.event('Tick', long_data(i, :pad)) ORDER BY i)
                                           FROM generate_series(1, 100) i), 0) \gset
CHECKPOINT;

-- ---------------------------------------------------------------------------
-- Reads and folds in a new backend, its memory measured around them.
-- ---------------------------------------------------------------------------
\connect
SET client_min_messages = warning;
SELECT set_config('long.n', :'n', false) AS long_n \gset
CREATE FUNCTION pg_temp.vm(field text) RETURNS bigint LANGUAGE sql AS $$
    SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), field || ':\s+(\d+) kB'))[1]::bigint * 1024
$$;
CREATE FUNCTION pg_temp.ctx() RETURNS bigint LANGUAGE sql AS
    'SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts';
CREATE TEMP TABLE mem (at text, hwm bigint, rss_anon bigint, ctx bigint);
-- warm-up: every read and fold below, once, on the small stream
SELECT event_store.state_as_of('long-small') IS NOT NULL AS w1,
       event_store.state_as_of('long-small', now()) IS NOT NULL AS w2,
       event_store.fold('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'long-small') IS NOT NULL AS w3,
       event_store.fold_to_version('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'long-small', 50) IS NOT NULL AS w4,
       event_store.fold('event_store.event_count(bigint, event_store.events)', 0::bigint, 'long-small') AS w5,
       event_store.fold('long_sum(bigint, event_store.events)', 0::bigint, 'long-small') AS w6,
       (SELECT count(*) FROM event_store.read_stream('long-small', 1, 1000)) AS w7,
       (SELECT count(*) FROM event_store.read_stream_backward('long-small', NULL, 1000)) AS w8 \gset warm_
DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM event_store.read_stream('long-small', 1, 10) LOOP END LOOP; END $$;
INSERT INTO mem SELECT 'before', pg_temp.vm('VmHWM'), pg_temp.vm('RssAnon'), pg_temp.ctx();

INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: state_as_of (C merge-patch fast path)',
       md5(event_store.state_as_of('long-1')::text), md5(long_state(:n, :pad)::text);
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: fold with merge_patch',
       md5(event_store.fold('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'long-1')::text),
       md5(long_state(:n, :pad)::text);
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: fold_to_version in the middle',
       md5(event_store.fold_to_version('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'long-1', :n / 2 + 7)::text),
       md5(long_state(:n / 2 + 7, :pad)::text);
-- as of the time of the batch holding the middle version: every event of that batch
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: state_as_of a past time',
       md5(event_store.state_as_of('long-1', (SELECT recorded_at FROM event_store.read_stream('long-1', :n / 2 + 7, 1)))::text),
       md5(long_state(least(((:n / 2 + 6) / :batch + 1) * :batch, :n), :pad)::text);
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: fold with event_count (C reducer)',
       event_store.fold('event_store.event_count(bigint, event_store.events)', 0::bigint, 'long-1')::text, :'n';
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: fold with a PL/pgSQL reducer',
       event_store.fold('long_sum(bigint, event_store.events)', 0::bigint, 'long-1')::text,
       (:n::bigint * (:n + 1) / 2)::text;
INSERT INTO mem SELECT 'after folds', pg_temp.vm('VmHWM'), pg_temp.vm('RssAnon'), pg_temp.ctx();

-- read_stream paging, 1,000 at a time from the last version read + 1
DO $$
DECLARE
    from_v bigint := 1;
    pages  int := 0;
    total  bigint := 0;
    bad    bigint := 0;
    expect bigint := 1;
    r      record;
BEGIN
    LOOP
        FOR r IN SELECT stream_version, (data->>'n')::bigint AS n FROM event_store.read_stream('long-1', from_v, 1000) LOOP
            IF r.stream_version <> expect OR r.n <> expect THEN bad := bad + 1; END IF;
            expect := r.stream_version + 1;
            total := total + 1;
        END LOOP;
        pages := pages + 1;
        EXIT WHEN expect = from_v;     -- an empty page
        from_v := expect;
    END LOOP;
    INSERT INTO long_results (kind, name, got, expected)
    VALUES ('check', 'long stream: read_stream paged by 1,000: every version once, in order',
            total || ':' || bad || ':' || pages, current_setting('long.n') || ':0:' || (current_setting('long.n')::bigint / 1000 + 1));
END $$;
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: read_stream in one call',
       count(*) || ':' || sum(stream_version) || ':' || bool_and(stream_version = (data->>'n')::bigint),
       :n || ':' || (:n::bigint * (:n + 1) / 2) || ':true'
  FROM event_store.read_stream('long-1', 1, :n + 1);
INSERT INTO long_results (kind, name, got, expected)
SELECT 'check', 'long stream: read_stream_backward in one call',
       count(*) || ':' || max(stream_version) || ':' || min(stream_version), :n || ':' || :n || ':1'
  FROM event_store.read_stream_backward('long-1', NULL, :n + 1);
INSERT INTO mem SELECT 'after reads', pg_temp.vm('VmHWM'), pg_temp.vm('RssAnon'), pg_temp.ctx();

-- Growth of the backend's peak resident memory (shared buffers included:
-- keep shared_buffers small), of its anonymous memory and of its memory
-- contexts, from before the folds to after the reads.  The bounds are
-- generous; a per-event leak of a few hundred bytes exceeds them.
INSERT INTO long_results (kind, name, got, expected)
SELECT 'mem', 'peak RSS (VmHWM) growth over folds and reads', a.hwm - b.hwm, :mem_bound
  FROM mem b, mem a WHERE b.at = 'before' AND a.at = 'after reads';
INSERT INTO long_results (kind, name, got, expected)
SELECT 'mem', 'anonymous RSS growth over folds and reads', a.rss_anon - b.rss_anon, :mem_bound
  FROM mem b, mem a WHERE b.at = 'before' AND a.at = 'after reads';
INSERT INTO long_results (kind, name, got, expected)
SELECT 'mem', 'memory contexts growth over folds and reads', a.ctx - b.ctx, 8 * 1024 * 1024
  FROM mem b, mem a WHERE b.at = 'before' AND a.at = 'after reads';

SELECT kind || '|' || name || '|' || got || '|' || expected FROM long_results ORDER BY seq;
