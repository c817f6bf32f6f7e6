#!/usr/bin/env bash
# The lifecycle visibility rule in one function (1.13, review of 1.12
# item 1): read_all, read_category and poll take the rule's comparisons
# from the inlined event_store._lifecycle_hides() instead of writing them
# out in each branch.  This compares them with the
# definitions of BASE_REV (default 1a15336, the 1.12 bodies), loaded into
# schema "old" of the same database, on a log of BENCH_EVENTS events (10
# categories x 200 streams), in two states:
#
#   few   5 streams hide events (the hash of _stream_visible())
#   many  1,200 streams hide events (the per-event subplan)
#
# Each query runs K times with the old and K times with the new function,
# the order alternating every round (ABAB...), ROUNDS rounds in one session;
# printed: the median over rounds of time(new) / time(old), and the median
# milliseconds per call of each.
#
#   bash test/bench/visibility_helper_bench.sh
#
# Run as root with the extension installed (make install).
# Environment: PGBIN, BASE_REV, BENCH_EVENTS (100000), ROUNDS (21), K (20).
set -euo pipefail
cd "$(dirname "$0")/../.."
PGBIN=${PGBIN:-$(pg_config --bindir)}
BASE_REV=${BASE_REV:-1a15336}
BENCH_EVENTS=${BENCH_EVENTS:-100000}
ROUNDS=${ROUNDS:-21}
K=${K:-20}
. test/bench/lib.sh
# the 1.12-era definitions come from git history: a shallow clone or a
# tarball has none
git cat-file -e "$BASE_REV:sql/event_store--1.13.sql" 2>/dev/null ||
    { echo "needs commit $BASE_REV (git history; set BASE_REV): not found in this checkout" >&2; exit 2; }
bench_cluster_start es_visibility_bench
P() { runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
runuser -u postgres -- "$PGBIN/psql" -X -q -d postgres -c 'CREATE DATABASE bench'
OLD=$WORK/old_funcs.sql

git show "$BASE_REV:sql/event_store--1.13.sql" > "$WORK/base.sql"
python3 - "$WORK/base.sql" "$OLD" <<'PY'
import sys
src = open(sys.argv[1]).read()
out = ['CREATE SCHEMA old;']
for name in ('read_category', 'read_all', 'poll'):
    i = src.index('CREATE FUNCTION event_store.%s(' % name)
    j = src.index('\n$$;\n', i) + 5
    out.append(src[i:j].replace('CREATE FUNCTION event_store.', 'CREATE FUNCTION old.', 1))
open(sys.argv[2], 'w').write('\n'.join(out))
PY
chmod 644 "$OLD"
P <<SQL
CREATE EXTENSION event_store;
SELECT count(event_store.append_event('cat' || (i % 10) || '-' || (i % 2000), 'Ev', jsonb_build_object('n', i)))
  FROM generate_series(1, $BENCH_EVENTS) i;
ANALYZE;
SELECT event_store.subscribe('b_all', NULL), event_store.subscribe('b_cat', ARRAY['cat3']),
       event_store.subscribe('b_two', ARRAY['cat3', 'cat4']);
\i $OLD
CREATE FUNCTION bench(q_old text, q_new text, rounds int, k int)
RETURNS TABLE (median_ratio numeric, old_ms numeric, new_ms numeric)
LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; a float8; b float8;
        ratios float8[] := '{}'; ta float8[] := '{}'; tb float8[] := '{}';
BEGIN
  FOR r IN 1..rounds LOOP
    IF r % 2 = 1 THEN
      t0 := clock_timestamp(); FOR i IN 1..k LOOP EXECUTE q_old; END LOOP; a := extract(epoch FROM clock_timestamp() - t0);
      t0 := clock_timestamp(); FOR i IN 1..k LOOP EXECUTE q_new; END LOOP; b := extract(epoch FROM clock_timestamp() - t0);
    ELSE
      t0 := clock_timestamp(); FOR i IN 1..k LOOP EXECUTE q_new; END LOOP; b := extract(epoch FROM clock_timestamp() - t0);
      t0 := clock_timestamp(); FOR i IN 1..k LOOP EXECUTE q_old; END LOOP; a := extract(epoch FROM clock_timestamp() - t0);
    END IF;
    ratios := ratios || (b / a); ta := ta || a; tb := tb || b;
  END LOOP;
  RETURN QUERY SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(ratios) x)::numeric, 3),
                      round(((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(ta) x) * 1000 / k)::numeric, 3),
                      round(((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(tb) x) * 1000 / k)::numeric, 3);
END \$\$;
SQL
run() {
    local state=$1
    P <<SQL
SELECT '$state' AS state, q.name, b.*
  FROM (VALUES ('read_all', 'read_all(50000, 1000)'), ('read_category', 'read_category(''cat3'', 20000, 1000)'),
               ('read_all 10', 'read_all(50000, 10)'), ('read_category 10', 'read_category(''cat3'', 20000, 10)'),
               ('poll all', 'poll(''b_all'', 100)'), ('poll cat', 'poll(''b_cat'', 100)'),
               ('poll two', 'poll(''b_two'', 100)')) q(name, call),
       LATERAL bench('SELECT count(*) FROM old.' || q.call, 'SELECT count(*) FROM event_store.' || q.call, $ROUNDS, $K) b;
SQL
}
bench_machine
P -c "SELECT event_store.truncate_stream('cat' || (i % 10) || '-' || i, 25) FROM generate_series(1, 5) i" >/dev/null
run few
P -c "SELECT event_store.truncate_stream('cat' || (i % 10) || '-' || i, 25) FROM generate_series(6, 1200) i" >/dev/null
P -c "ANALYZE event_store.streams"
run many
