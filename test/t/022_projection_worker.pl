# Live async projections (issue 29, 1.12): the projection worker.
#
# Preloaded, with the default event_store.projection_workers = 1:
#  (a) appends are projected by the worker, nobody calling run_projection():
#      four async projections catch up with 2,000 events of 20 streams;
#      projection_status shows the worker's pid for each; a handler runs as
#      the role that registered its projection, not as the worker's
#      superuser;
#  (b) a poison event (on_error 'park') is parked while the other events of
#      that projection, and the other two projections, go on; after a fix,
#      replay_parked() puts it back and the worker applies it;
#  (c) kill -9 of the worker in the middle of a backlog: the server
#      restarts, the launcher starts a worker again, and it catches up with
#      no new append; every read model holds each event exactly once (the
#      handlers count applications: no unique key hides a second one) and
#      equals a fold of the log;
#  (d) pg_terminate_backend() of the worker: the launcher starts another;
#  (e) ALTER DATABASE ... SET event_store.live_projections = off: a new
#      worker leaves the database alone;
#  (f) one worker and two databases with async projections: both served;
#  (g) blue/green rebuilds are live too: the new version of an async
#      projection, and of an inline one in a database without async
#      projections (starting the rebuild brings a worker there), catch up
#      by themselves while appends continue, nobody calling
#      catch_up_projection(); the worker does not swap; swap_projection()
#      with max_lag => 0 then succeeds, and each read model after the swap,
#      and after more appends, equals a fold of the log;
#  (h) a manual catch_up_projection() (its checkpoint and its
#      projection_versions row), then a transaction holding the version row
#      alone (as swap_projection() takes it first), hold a new version
#      open: the worker does not wait behind them (another projection goes
#      on, no lock awaited), and catches the new version up once they
#      commit; a handler failing for the new version only: the worker
#      reports it in projection_workers().last_error and backs off, the
#      live version goes on, and after the fix the new version catches up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('projection_worker');
$node->init;
$node->append_conf('postgresql.conf',
    "shared_preload_libraries = 'event_store'\nrestart_after_crash = on\nmax_worker_processes = 16\n");
$node->start;

sub poll_until
{
    my ($sql, $want, $tries) = @_;
    my $got = '';
    for (1 .. ($tries // 1200))
    {
        $got = $node->safe_psql('postgres', $sql);
        return 1 if $got eq $want;
        usleep(50_000);
    }
    diag("last: $got, wanted: $want");
    return 0;
}

sub worker_pid
{
    return $node->safe_psql('postgres',
        "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE backend_type = 'event_store projection worker'");
}

is($node->safe_psql('postgres', 'SHOW event_store.projection_workers'), '1', 'one worker by default');

$node->safe_psql('postgres', q{
CREATE EXTENSION event_store;
-- every application is a row: a second application of an event shows
CREATE TABLE applied (projection text, pos bigint, stream_id text);
CREATE TABLE broken (yes boolean);
INSERT INTO broken VALUES (true);
CREATE FUNCTION h_a(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO applied VALUES ('a', e.global_position, e.stream_id) $$;
CREATE FUNCTION h_b(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO applied VALUES ('b', e.global_position, e.stream_id) $$;
CREATE FUNCTION h_poison(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Poison' AND (SELECT yes FROM broken) THEN
    RAISE EXCEPTION 'cannot handle %', e.global_position;
  END IF;
  INSERT INTO applied VALUES ('c', e.global_position, e.stream_id);
END $$;
SELECT event_store.create_projection('pa', 'h_a(event_store.events)', mode => 'async');
SELECT event_store.create_projection('pb', 'h_b(event_store.events)', mode => 'async');
SELECT event_store.create_projection('pc', 'h_poison(event_store.events)', mode => 'async', on_error => 'park');
-- registered by an admin that is no superuser: the worker runs it as that role
CREATE ROLE proj_admin;
GRANT event_store_admin TO proj_admin;
CREATE TABLE whoami (pos bigint, who text);
GRANT INSERT ON whoami TO proj_admin;
CREATE FUNCTION h_who(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO whoami VALUES (e.global_position, current_user) $$;
SET ROLE proj_admin;
SELECT event_store.create_projection('pd', 'h_who(event_store.events)', mode => 'async');
RESET ROLE;
});

# (a) 10,000 events, a poison one in the middle, 100 appends of 100
for my $k (1 .. 100)
{
    my $type = $k == 50 ? "CASE WHEN i = 50 THEN 'Poison' ELSE 'Tick' END" : "'Tick'";
    $node->safe_psql('postgres',
        "SELECT event_store.append('s-$k', (SELECT array_agg(event_store.event($type, jsonb_build_object('i', i)) ORDER BY i) FROM generate_series(1, 100) i))");
}
my $last = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');
ok(poll_until("SELECT bool_and(checkpoint = $last) FROM event_store.projection_status", 't', 6000),
   'the worker moved all four checkpoints to the last event, without run_projection()');
is($node->safe_psql('postgres', "SELECT projection, count(*), count(DISTINCT pos) FROM applied GROUP BY 1 ORDER BY 1"),
   "a|10000|10000\nb|10000|10000\nc|9999|9999", 'each event once in pa and pb; pc all but the poison event');
is($node->safe_psql('postgres', 'SELECT who, count(*) FROM whoami GROUP BY 1'), 'proj_admin|10000',
   'the worker ran the handler as the role that registered the projection');
my $pid = worker_pid();
like($pid, qr/^\d+$/, 'one worker runs');
is($node->safe_psql('postgres', "SELECT string_agg(name || ':' || (worker_pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_store projection worker')), ',' ORDER BY name) FROM event_store.projection_status"),
   'pa:true,pb:true,pc:true,pd:true', 'projection_status shows the worker serving each projection');

# (b) the poison event is parked, the rest went on; fix and replay
my $poison = $node->safe_psql('postgres', "SELECT global_position FROM event_store.events WHERE event_type = 'Poison'");
is($node->safe_psql('postgres', "SELECT consumer, kind, global_position, attempts FROM event_store.parked_events"),
   "pc|projection|$poison|1", 'the poison event is parked');
$node->safe_psql('postgres', "UPDATE broken SET yes = false; SELECT event_store.replay_parked('pc', $poison)");
ok(poll_until("SELECT count(*) FROM applied WHERE projection = 'c' AND pos = $poison", '1'),
   'after the fix, the worker applied the replayed event');
is($node->safe_psql('postgres', 'SELECT count(*) FROM event_store.parked_events'), '0', 'nothing parked');

# (c) a backlog the worker needs a while for (each application sleeps),
# kill -9 of the worker in the middle of it
$node->safe_psql('postgres', q{
CREATE OR REPLACE FUNCTION h_a(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO applied VALUES ('a', e.global_position, e.stream_id); SELECT pg_sleep(0.0005) $$;
});
$node->safe_psql('postgres',
    "SELECT event_store.append('big-' || (i % 7), ARRAY[event_store.event('Tick', '{}')]) FROM generate_series(1, 3000) i");
$last = $node->safe_psql('postgres', 'SELECT max(global_position) FROM event_store.events');
my $before = $node->safe_psql('postgres', "SELECT checkpoint FROM event_store.projection_status WHERE name = 'pa'");
ok(poll_until("SELECT checkpoint > $before FROM event_store.projection_status WHERE name = 'pa'", 't'),
   'the worker works through the backlog');
$pid = worker_pid();
like($pid, qr/^\d+$/, 'the worker runs');
my $mid = $node->safe_psql('postgres', "SELECT checkpoint FROM event_store.projection_status WHERE name = 'pa'");
kill 'KILL', $pid;
ok($mid < $last, "killed with the checkpoint at $mid of $last");
$node->poll_query_until('postgres', 'SELECT 1', '1');
# (>=: after a crash the position sequence resumes past its logged value)
ok(poll_until("SELECT bool_and(checkpoint >= $last) FROM event_store.projection_status", 't'),
   'after the crash a worker caught up, with no new append');
isnt(worker_pid(), $pid, 'a new worker process');
is($node->safe_psql('postgres', q{
SELECT projection, count(*) = count(DISTINCT pos), count(*) = (SELECT count(*) FROM event_store.events)
  FROM applied GROUP BY 1 ORDER BY 1}),
   "a|t|t\nb|t|t\nc|t|t", 'every event applied exactly once by each projection');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (
  (SELECT p.projection, e.stream_id, count(*) FROM event_store.events e CROSS JOIN (VALUES ('a'), ('b'), ('c')) p(projection)
    GROUP BY 1, 2
   EXCEPT
   SELECT projection, stream_id, count(*) FROM applied GROUP BY 1, 2)
  UNION ALL
  (SELECT projection, stream_id, count(*) FROM applied GROUP BY 1, 2
   EXCEPT
   SELECT p.projection, e.stream_id, count(*) FROM event_store.events e CROSS JOIN (VALUES ('a'), ('b'), ('c')) p(projection)
    GROUP BY 1, 2)) d}), '0', 'each read model equals a fold of the log (events per stream)');

# (d) terminated in the middle of another backlog: the launcher starts
# another worker, which finishes it
$node->safe_psql('postgres',
    "SELECT event_store.append('term-' || (i % 3), ARRAY[event_store.event('Tick', '{}')]) FROM generate_series(1, 3000) i");
ok(poll_until("SELECT worker_pid IS NOT NULL FROM event_store.projection_status WHERE name = 'pa'", 't'),
   'a worker serves the new backlog');
$pid = worker_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(poll_until("SELECT count(*) FROM applied WHERE stream_id LIKE 'term-%'", '9000'),
   'after pg_terminate_backend() a new worker applied the rest');
is($node->safe_psql('postgres', q{
SELECT projection, count(*) = count(DISTINCT pos), count(*) = (SELECT count(*) FROM event_store.events)
  FROM applied GROUP BY 1 ORDER BY 1}),
   "a|t|t\nb|t|t\nc|t|t", 'still every event exactly once');

# (e) switched off for the database: a worker started later leaves it alone
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET event_store.live_projections = off');
$pid = worker_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)") if $pid ne '';
ok(poll_until("SELECT count(*) FROM event_store.projection_workers() w JOIN pg_database d ON d.oid = w.datid WHERE d.datname = 'postgres' AND w.state = 'none'", '1'),
   'the database is marked without live projections');
$node->safe_psql('postgres', "SELECT event_store.append('after-off', ARRAY[event_store.event('Tick', '{}')])");
usleep(1_500_000);
is($node->safe_psql('postgres', "SELECT count(*) FROM applied WHERE stream_id = 'after-off'"), '0',
   'no worker applied the event');
is($node->safe_psql('postgres', "SELECT event_store.run_projection('pa')"), '1', 'run_projection() works as before');

# (f) one worker, two databases: both are served in turn
# (a registry change brings a worker back at once; appends alone after a minute)
$node->safe_psql('postgres', 'ALTER DATABASE postgres RESET event_store.live_projections');
$node->safe_psql('postgres', "SELECT event_store.create_projection('pe', 'h_who(event_store.events)', mode => 'async')");
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', q{
CREATE EXTENSION event_store;
CREATE TABLE applied2 (pos bigint);
CREATE FUNCTION h2(e event_store.events) RETURNS void LANGUAGE sql AS $$ INSERT INTO applied2 VALUES (e.global_position) $$;
SELECT event_store.create_projection('p2', 'h2(event_store.events)', mode => 'async');
SELECT event_store.append('db2-s', (SELECT array_agg(event_store.event('Tick', '{}')) FROM generate_series(1, 50)));
});
$node->safe_psql('postgres', "SELECT event_store.append('back-on', ARRAY[event_store.event('Tick', '{}')])");
my $served2 = 0;
for (1 .. 1200)
{
    $served2 = $node->safe_psql('db2', 'SELECT count(*) FROM applied2');
    last if $served2 eq '50';
    usleep(50_000);
}
is($served2, '50', 'the worker served the second database');
ok(poll_until("SELECT count(*) FROM applied WHERE stream_id = 'back-on'", '3'),
   'and the first one, with live_projections reset');

# (g) live blue/green rebuilds
sub poll_db
{
    my ($db, $sql, $want) = @_;
    my $got = '';
    for (1 .. 1200)
    {
        $got = $node->safe_psql($db, $sql);
        return 1 if $got eq $want;
        usleep(50_000);
    }
    diag("last: $got, wanted: $want");
    return 0;
}

# rows of the fold of the log (events per stream of category bg) that the
# table lacks, plus rows it has that the fold lacks
sub fold_diff
{
    my ($table) = @_;
    my $fold = "SELECT stream_id, count(*)::int FROM event_store.events WHERE stream_id LIKE 'bg-%' GROUP BY 1";
    return "SELECT count(*) FROM (($fold EXCEPT SELECT stream, n FROM $table)"
      . " UNION ALL (SELECT stream, n FROM $table EXCEPT $fold)) d";
}

my $bg_setup = q{
SET client_min_messages = warning;
CREATE TABLE bg_KIND (stream text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION h_bg_KIND(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO %s AS t VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = t.n + 1',
                 event_store.projection_target('public.bg_KIND')) USING e.stream_id;
END $$;
CREATE FUNCTION reset_bg_KIND() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('TRUNCATE %s', event_store.projection_target('public.bg_KIND'));
END $$;
SELECT event_store.create_projection('bg_KIND', 'h_bg_KIND(event_store.events)', categories => ARRAY['bg'],
                                     reset => 'reset_bg_KIND()', mode => 'KIND');
};
my %db_of = (async => 'postgres', inline => 'db3');
$node->safe_psql('postgres', 'CREATE DATABASE db3');
$node->safe_psql('db3', 'CREATE EXTENSION event_store');
for my $kind (qw(async inline))
{
    (my $sql = $bg_setup) =~ s/KIND/$kind/g;
    $node->safe_psql($db_of{$kind}, $sql);
}
my $append_bg = "SELECT event_store.append('bg-' || (i % 5), ARRAY[event_store.event('Tick', '{}')]) FROM generate_series(1, N) i";
sub append_bg
{
    my ($n) = @_;
    (my $sql = $append_bg) =~ s/N/$n/;
    $node->safe_psql($_, $sql) for values %db_of;
}
append_bg(100);
ok(poll_until("SELECT checkpoint = (SELECT max(global_position) FROM event_store.events) FROM event_store.projection_status WHERE name = 'bg_async'", 't'),
   'the worker ran the async projection bg_async');
is($node->safe_psql('db3', 'SELECT count(*) FROM event_store.projection_registry WHERE mode = \'async\''), '0',
   'db3 has no async projection');

my %start;
for my $kind (qw(async inline))
{
    $node->safe_psql($db_of{$kind}, "SET client_min_messages = warning; "
        . "SELECT event_store.rebuild_projection('bg_$kind', into_table => 'bg_${kind}_next', live_table => 'bg_$kind')");
    $start{$kind} = $node->safe_psql($db_of{$kind}, "SELECT position FROM event_store.projection_versions WHERE name = 'bg_$kind'");
}
# appends continue; nobody calls catch_up_projection()
for my $round (1 .. 10)
{
    append_bg(10);
    if ($round == 5)
    {
        for my $kind (qw(async inline))
        {
            ok(poll_db($db_of{$kind}, "SELECT position > $start{$kind} FROM event_store.projection_versions WHERE name = 'bg_$kind'", 't'),
               "the new version of bg_$kind moves while appends continue");
        }
    }
    usleep(50_000);
}
for my $kind (qw(async inline))
{
    my $db = $db_of{$kind};
    ok(poll_db($db, "SELECT position >= event_store._last_drawn_position() FROM event_store.projection_versions WHERE name = 'bg_$kind'", 't'),
       "the new version of bg_$kind caught up with the log by itself");
    is($node->safe_psql($db, "SELECT count(*) FROM event_store.projection_versions WHERE name = 'bg_$kind'"), '1',
       "the worker did not swap bg_$kind");
    is($node->safe_psql($db, fold_diff("bg_${kind}_next")), '0',
       "the new version of bg_$kind equals a fold of the log");
    like($node->safe_psql($db, "SELECT event_store.swap_projection('bg_$kind', max_lag => 0)"), qr/bg_${kind}_next/,
         "swap_projection('bg_$kind', max_lag => 0) succeeds");
    is($node->safe_psql($db, fold_diff("bg_$kind")), '0',
       "after the swap, bg_$kind equals a fold of the log");
    is($node->safe_psql($db, "SELECT count(*) FROM event_store.projection_versions"), '0',
       'no rebuild under way');
}
append_bg(20);
for my $kind (qw(async inline))
{
    ok(poll_db($db_of{$kind}, fold_diff("bg_$kind"), '0'),
       "after more appends, bg_$kind still equals a fold of the log");
}

# (h) a new version held by another transaction: the worker skips it
$node->safe_psql('postgres', q{
SET client_min_messages = warning;
DROP TABLE bg_async_next;
CREATE TABLE hold (released boolean);
INSERT INTO hold VALUES (false);
SELECT event_store.rebuild_projection('bg_async', into_table => 'bg_async_next', live_table => 'bg_async');
});
my $tmp = PostgreSQL::Test::Utils::tempdir;
my %holds = (
    'a manual catch_up_projection()' => "SELECT event_store.catch_up_projection('bg_async')",
    'the version row alone, as swap_projection() locks it first' =>
      "SELECT 1 FROM event_store.projection_versions WHERE name = 'bg_async' FOR UPDATE");
my $k = 0;
for my $what (sort keys %holds)
{
    $k++;
    my $held_at = $node->safe_psql('postgres', "SELECT position FROM event_store.projection_versions WHERE name = 'bg_async'");
    $node->safe_psql('postgres', 'UPDATE hold SET released = false');
    open(my $fh, '>', "$tmp/hold$k.sql") or die;
    print $fh "BEGIN;\n$holds{$what};\n"
      . "DO \$\$ BEGIN WHILE NOT (SELECT released FROM hold) LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$;\nCOMMIT;\n";
    close $fh;
    my $holder = IPC::Run::start(
        [ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/hold$k.sql", '-d', $node->connstr('postgres') ],
        '<', '/dev/null', '>', "$tmp/hold$k.out", '2>', "$tmp/hold$k.err");
    ok(poll_until("SELECT count(*) FROM pg_stat_activity a WHERE a.query LIKE '%WHILE NOT%' AND a.pid <> pg_backend_pid()", '1'),
       "$what holds the new version of bg_async in an open transaction");
    append_bg(10);
    $node->safe_psql('postgres', "SELECT event_store.append('held-$k', ARRAY[event_store.event('Tick', '{}')])");
    ok(poll_until("SELECT count(*) FROM applied WHERE projection = 'a' AND stream_id = 'held-$k'", '1'),
       "$what: meanwhile the worker goes on with the other projections");
    is($node->safe_psql('postgres', "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE NOT l.granted AND a.backend_type = 'event_store projection worker'"),
       '0', "$what: the worker waits for no lock");
    is($node->safe_psql('postgres', "SELECT position FROM event_store.projection_versions WHERE name = 'bg_async'"), $held_at,
       "$what: the held new version has not moved");
    $node->safe_psql('postgres', 'UPDATE hold SET released = true');
    $holder->finish;
    ok(poll_until("SELECT position >= event_store._last_drawn_position() FROM event_store.projection_versions WHERE name = 'bg_async'", 't'),
       "$what committed: the worker caught the new version up");
}
# a handler that fails for the new version only: the worker backs off
# and reports it; the live version goes on; after the fix it catches up
$node->safe_psql('postgres', q{
CREATE TABLE bg_broken (yes boolean);
INSERT INTO bg_broken VALUES (true);
CREATE OR REPLACE FUNCTION h_bg_async(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF event_store.projection_target('public.bg_async') <> 'public.bg_async' AND (SELECT yes FROM bg_broken) THEN
    RAISE EXCEPTION 'new version broken at %', e.global_position;
  END IF;
  EXECUTE format('INSERT INTO %s AS t VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = t.n + 1',
                 event_store.projection_target('public.bg_async')) USING e.stream_id;
END $$;
});
append_bg(5);
ok(poll_until("SELECT last_error LIKE 'bg_async (new version): new version broken at %' FROM event_store.projection_workers() w JOIN pg_database d ON d.oid = w.datid WHERE d.datname = 'postgres'", 't'),
   'a failing batch of the new version shows in projection_workers().last_error');
ok(poll_until(fold_diff('bg_async'), '0'), 'the live version goes on');
$node->safe_psql('postgres', 'UPDATE bg_broken SET yes = false');
ok(poll_until("SELECT position >= event_store._last_drawn_position() FROM event_store.projection_versions WHERE name = 'bg_async'", 't'),
   'after the fix the worker caught the new version up');
is($node->safe_psql('postgres', fold_diff('bg_async_next')), '0', 'and it equals a fold of the log');
is($node->safe_psql('postgres', "SELECT event_store.abandon_projection_rebuild('bg_async')"), 'public.bg_async_next',
   'abandoned: the worker leaves it');

$node->stop;
done_testing();
