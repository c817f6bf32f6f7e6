# Live async projections (issue 29, 1.12): the worker and its settings
# (docs/projections.md "Live async projections").
#
# Preloaded, with the default event_store.projection_workers = 1:
#  (a) a database whose extension is still at 1.11 is not served: the
#      worker looks at it (projection_workers() shows it as 'none') and
#      its async projection's checkpoint stays at 0 while events wait;
#      ALTER EXTENSION event_store UPDATE alone (no further append) brings
#      a worker that projects them, and later appends are projected too;
#  (b) ALTER SYSTEM SET event_store.projection_workers = 0 + reload: the
#      worker leaves and appends stay unprojected; back to the default (1)
#      + reload, a worker catches up with them, nobody appending again;
#  (c) event_store.projection_batch_timeout limits a batch: with 500ms, a
#      projection whose handler sleeps 2 s on one event type is cancelled
#      (projection_workers().last_error shows the statement timeout), its
#      checkpoint stays before that event, while another projection of the
#      same database catches up; after a reset of the setting the slow
#      one catches up too, each event applied once.
#
# Only bounded polling: "stays" checks poll a few seconds and fail at the
# first change, nothing asserts on elapsed time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('projection_worker_settings');
$node->init;
$node->append_conf('postgresql.conf',
    "shared_preload_libraries = 'event_store'\nmax_worker_processes = 16\n");
$node->start;

# poll until $sql in $db returns $want (as in 022_projection_worker.pl)
sub poll_until
{
    my ($db, $sql, $want, $tries) = @_;
    my $got = '';
    for (1 .. ($tries // 1200))
    {
        $got = $node->safe_psql($db, $sql);
        return 1 if $got eq $want;
        usleep(50_000);
    }
    diag("last: $got, wanted: $want");
    return 0;
}

# poll $tries times that $sql in $db keeps returning $want; false at the first change
sub stays
{
    my ($db, $sql, $want, $tries) = @_;
    for (1 .. ($tries // 60))
    {
        my $got = $node->safe_psql($db, $sql);
        if ($got ne $want)
        {
            diag("changed: $got, wanted: $want");
            return 0;
        }
        usleep(50_000);
    }
    return 1;
}

sub worker_state
{
    my ($db) = @_;
    return "SELECT coalesce((SELECT w.state FROM event_store.projection_workers() w "
      . "JOIN pg_database d ON d.oid = w.datid WHERE d.datname = '$db'), 'absent')";
}

sub workers_running
{
    return "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_store projection worker'";
}

# the postgres database is at the default version: projection_workers() is read there
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

# (a) a database at 1.11, then updated
$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('old', q{
CREATE EXTENSION event_store VERSION '1.11';
CREATE TABLE applied (pos bigint);
CREATE FUNCTION h(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO applied VALUES (e.global_position) $$;
SELECT event_store.create_projection('p_old', 'h(event_store.events)', mode => 'async');
SELECT event_store.append('old-1', (SELECT array_agg(event_store.event('Tick', '{}')) FROM generate_series(1, 20)));
});
is($node->safe_psql('old', "SELECT extversion FROM pg_extension WHERE extname = 'event_store'"), '1.11',
   'the extension of database old is at 1.11');
ok(poll_until('postgres', worker_state('old'), 'none'),
   'the append brought a worker, which found the extension at 1.11 and left');
# (no checkpoint row before the first run: 0)
my $checkpoint_old = "SELECT coalesce((SELECT position FROM event_store.projection_checkpoints WHERE name = 'p_old'), 0)";
ok(stays('old', "$checkpoint_old || ':' || (SELECT count(*) FROM applied)", '0:0'),
   'at 1.11 the async projection is not served: checkpoint 0, nothing applied');
$node->safe_psql('old', 'ALTER EXTENSION event_store UPDATE');
is($node->safe_psql('old', "SELECT extversion = default_version FROM pg_extension, pg_available_extensions "
     . "WHERE extname = 'event_store' AND name = extname"), 't',
   'updated to the default version');
my $last_old = $node->safe_psql('old', 'SELECT max(global_position) FROM event_store.events');
ok(poll_until('old', "SELECT ($checkpoint_old) = $last_old", 't'),
   'after ALTER EXTENSION UPDATE alone, a worker projected the waiting events');
$node->safe_psql('old', "SELECT event_store.append('old-2', ARRAY[event_store.event('Tick', '{}')])");
$last_old = $node->safe_psql('old', 'SELECT max(global_position) FROM event_store.events');
ok(poll_until('old', "SELECT ($checkpoint_old) = $last_old", 't'), 'and a later append too');
is($node->safe_psql('old', 'SELECT count(*), count(DISTINCT pos) FROM applied'), '21|21',
   'each event applied once');

# two async projections in postgres: fast, and slow on Slow events
$node->safe_psql('postgres', q{
CREATE TABLE applied (projection text, pos bigint);
CREATE FUNCTION h_fast(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO applied VALUES ('fast', e.global_position) $$;
CREATE FUNCTION h_slow(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Slow' THEN
    PERFORM pg_sleep(2);
  END IF;
  INSERT INTO applied VALUES ('slow', e.global_position);
END $$;
SELECT event_store.create_projection('fast', 'h_fast(event_store.events)', mode => 'async');
SELECT event_store.create_projection('slow', 'h_slow(event_store.events)', mode => 'async');
SELECT event_store.append('s-1', (SELECT array_agg(event_store.event('Tick', '{}')) FROM generate_series(1, 10)));
});
my $all_at = sub {
    my ($pos) = @_;
    return "SELECT string_agg(name || ':' || (checkpoint = $pos), ',' ORDER BY name) FROM event_store.projection_status";
};
my $last = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');
ok(poll_until('postgres', $all_at->($last), 'fast:true,slow:true'), 'the worker serves postgres');

# (b) projection_workers = 0 stops live projection; back to 1, it catches up
$node->safe_psql('postgres', 'ALTER SYSTEM SET event_store.projection_workers = 0; SELECT pg_reload_conf()');
ok(poll_until('postgres', 'SHOW event_store.projection_workers', '0'), 'projection_workers = 0 after the reload');
ok(poll_until('postgres', workers_running(), '0'), 'the worker left');
$node->safe_psql('postgres', "SELECT event_store.append('s-2', (SELECT array_agg(event_store.event('Tick', '{}')) FROM generate_series(1, 5)))");
my $new_last = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');
ok(stays('postgres',
         "SELECT (SELECT string_agg(name || ':' || checkpoint, ',' ORDER BY name) FROM event_store.projection_status) || '/' || ("
           . workers_running() . ")",
         "fast:$last,slow:$last/0"),
   'with no workers allowed, appends stay unprojected and no worker starts');
$node->safe_psql('postgres', 'ALTER SYSTEM SET event_store.projection_workers = 1; SELECT pg_reload_conf()');
ok(poll_until('postgres', $all_at->($new_last), 'fast:true,slow:true'),
   'back to 1 worker: it caught up, with no new append');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET event_store.projection_workers; SELECT pg_reload_conf()');

# (c) projection_batch_timeout cancels the slow batch; fast goes on
$node->safe_psql('postgres', "ALTER SYSTEM SET event_store.projection_batch_timeout = '500ms'; SELECT pg_reload_conf()");
ok(poll_until('postgres', 'SHOW event_store.projection_batch_timeout', '500ms'), 'batch timeout 500ms after the reload');
$node->safe_psql('postgres', "SELECT event_store.append('s-3', ARRAY[event_store.event('Slow', '{}')])");
my $slow_pos = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');
$node->safe_psql('postgres', "SELECT event_store.append('s-4', (SELECT array_agg(event_store.event('Tick', '{}')) FROM generate_series(1, 5)))");
$last = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');
ok(poll_until('postgres',
              "SELECT last_error FROM event_store.projection_workers() w JOIN pg_database d ON d.oid = w.datid WHERE d.datname = 'postgres'",
              'slow: canceling statement due to statement timeout'),
   'projection_workers().last_error shows the slow batch cancelled by the batch timeout');
ok(poll_until('postgres', "SELECT checkpoint = $last FROM event_store.projection_status WHERE name = 'fast'", 't'),
   'meanwhile the other projection of the database caught up');
is($node->safe_psql('postgres', "SELECT checkpoint < $slow_pos FROM event_store.projection_status WHERE name = 'slow'"), 't',
   'the slow projection stays before the Slow event (its batches are rolled back)');
is($node->safe_psql('postgres', "SELECT count(*) FROM applied WHERE projection = 'slow' AND pos >= $slow_pos"), '0',
   'nothing of the cancelled batches was kept');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET event_store.projection_batch_timeout; SELECT pg_reload_conf()');
ok(poll_until('postgres', 'SHOW event_store.projection_batch_timeout', '1min'), 'batch timeout reset to its default');
ok(poll_until('postgres', "SELECT checkpoint = $last FROM event_store.projection_status WHERE name = 'slow'", 't'),
   'after the reset the slow projection caught up');
is($node->safe_psql('postgres', q{
SELECT projection, count(*) = count(DISTINCT pos), count(*) = (SELECT count(*) FROM event_store.events)
  FROM applied GROUP BY 1 ORDER BY 1}),
   "fast|t|t\nslow|t|t", 'each event applied exactly once by each projection');

$node->stop;
done_testing();
