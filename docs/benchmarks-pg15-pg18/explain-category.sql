-- issue 24 item 6: the raw category read of test/bench/run.sh, its generic plan;
-- run with psql -X -f on a fresh database of each major
\set QUIET on
CREATE SCHEMA bench_raw;
CREATE FUNCTION bench_raw.category(stream_name varchar) RETURNS varchar AS $$
BEGIN
  RETURN SPLIT_PART(category.stream_name, '-', 1);
END;
$$ LANGUAGE plpgsql IMMUTABLE;
CREATE TABLE bench_raw.messages (
  global_position bigserial NOT NULL, position bigint NOT NULL,
  time TIMESTAMP WITHOUT TIME ZONE DEFAULT (now() AT TIME ZONE 'utc') NOT NULL,
  stream_name text NOT NULL, type text NOT NULL, data jsonb, metadata jsonb,
  id UUID NOT NULL DEFAULT gen_random_uuid());
ALTER TABLE bench_raw.messages ADD PRIMARY KEY (global_position);
CREATE INDEX messages_category ON bench_raw.messages (
  bench_raw.category(stream_name), global_position, bench_raw.category(metadata->>'correlationStreamName'));
CREATE UNIQUE INDEX messages_id ON bench_raw.messages (id);
CREATE UNIQUE INDEX messages_stream ON bench_raw.messages (stream_name, position);
INSERT INTO bench_raw.messages (stream_name, position, type, data, metadata)
SELECT c || '-' || s, r, 'Deposited', jsonb_build_object('amount', r), '{"correlationStreamName": "booking-1"}'
  FROM generate_series(0, 19) r, generate_series(1, 500) s, (VALUES ('account'), ('other')) v(c) ORDER BY r, s, c;
VACUUM ANALYZE;
\set QUIET off
PREPARE q(bigint) AS SELECT * FROM bench_raw.messages WHERE bench_raw.category(stream_name) = 'account' AND global_position >= $1 ORDER BY global_position LIMIT 100;
\o /dev/null
EXECUTE q(100); EXECUTE q(200); EXECUTE q(300); EXECUTE q(400); EXECUTE q(500); EXECUTE q(600); EXECUTE q(700);
\o
EXPLAIN (ANALYZE, BUFFERS, COSTS, TIMING OFF, SUMMARY OFF) EXECUTE q(9000);
