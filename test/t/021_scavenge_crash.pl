# Issue 28 part 4: scavenge() is crash safe.  The postmaster is killed with
# SIGKILL while a scavenge of a closed partition (100000 events, 30 % of
# them hidden by deleted streams) runs: once while it waits for the swap's
# lock (the copy is done), then at increasing delays after it started.
# After each restart the partition holds either exactly what it held
# before (and no audit record) or exactly the survivors (and one audit
# record): never half.  No temporary table is left behind, the partition
# is still an event_store_log partition of the log, and a completed
# scavenge survives a crash too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('scavenge_crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\nrestart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

# SIGKILL the postmaster and start it again (as 002_crash_restart.pl: where
# PID 1 does not reap orphans the dead postmaster lingers as a zombie).
sub crash_and_restart
{
	my $pidfile = $node->data_dir . '/postmaster.pid';
	open my $fh, '<', $pidfile or die "no $pidfile";
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	$node->kill9;
	for (1 .. 100)
	{
		my $state = '';
		if (open my $st, '<', "/proc/$pid/stat")
		{
			$state = (split / /, <$st>)[2];
			close $st;
		}
		last if $state eq '' || $state eq 'Z';
		usleep(50_000);
	}
	for my $try (1 .. 40)
	{
		unlink $pidfile if -e "/proc/$pid" && -e $pidfile;
		return if $node->start(fail_ok => 1);
		usleep(250_000);
	}
	die 'could not restart after the crash';
}

# 2000 streams of 50 events in January 2020, restored as pg_restore would;
# 600 of the streams deleted (300 soft, 300 hard).
$node->safe_psql('postgres', q{
    SELECT event_store.ensure_partitions('2020-01-01', '2020-01-02');
    INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                    event_id, recorded_at, occurred_at, transaction_id)
    SELECT nextval('event_store.global_position_seq'), 'acct-' || s, v, 'Tick',
           jsonb_build_object('s', s, 'v', v, 'pad', repeat('x', 40)), gen_random_uuid(),
           '2020-01-10'::timestamptz + (s * 50 + v) * interval '1 second', '2020-01-10', pg_current_xact_id()
      FROM generate_series(1, 2000) s, generate_series(1, 50) v ORDER BY s, v;
    INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
    SELECT stream_id, 'acct', max(stream_version), min(recorded_at), max(recorded_at), min(global_position), max(global_position)
      FROM event_store.events GROUP BY stream_id;
    SELECT count(event_store.delete_stream('acct-' || s, hard => s % 2 = 0)) FROM generate_series(1, 2000, 10) s;
    SELECT count(event_store.delete_stream('acct-' || s, hard => s % 2 = 0)) FROM generate_series(2, 2000, 10) s;
    SELECT count(event_store.delete_stream('acct-' || s, hard => s % 2 = 0)) FROM generate_series(3, 2000, 10) s;
});
my $part = $node->safe_psql('postgres',
	"SELECT partition FROM event_store.partition_ranges() WHERE '2020-01-10' >= range_start AND '2020-01-10' < range_end");

# The partition's content (every column of every row) and the audit records.
my $state_sql = "SELECT count(*) || ' ' || md5(string_agg(e::text, ',' ORDER BY e.global_position)) "
  . "|| ' audit ' || (SELECT count(*) FROM event_store.events WHERE stream_id = '\$audit-scavenge') "
  . "FROM $part e";
my $before = $node->safe_psql('postgres', $state_sql);
my $after = $node->safe_psql('postgres',
	"SELECT count(*) || ' ' || md5(string_agg(e::text, ',' ORDER BY e.global_position)) || ' audit 1' "
	  . "FROM $part e WHERE NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id "
	  . "AND e.stream_version < h.truncate_before)");
like($before, qr/^100000 /, 'the partition holds 100000 events');
like($after, qr/^70000 /, '70000 of them survive a scavenge');

# What must hold after every restart.
sub check_consistent
{
	my ($label) = @_;
	my $state = $node->safe_psql('postgres', $state_sql);
	ok($state eq $before || $state eq $after, "$label: the partition is as before or as after, never half")
	  or diag("state: $state\nbefore: $before\nafter: $after");
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname LIKE 'es_scav_%'"),
		'0', "$label: no temporary table left");
	is($node->safe_psql('postgres',
			"SELECT am.amname || ' ' || c.relispartition FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE c.oid = '$part'::regclass"),
		'event_store_log true', "$label: still an event_store_log partition of the log");
	return $state eq $after ? 'after' : 'before';
}

# Start the scavenge in the background; return the harness and its pid.
sub start_scavenge
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c', "SELECT event_store.scavenge('$part')" ],
		'>', \$out, '2>', \$err);
	my $pid = '';
	for (1 .. 400)
	{
		$pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT event_store.scavenge(%' AND state = 'active'");
		last if $pid ne '';
		usleep(10_000);
	}
	return ($h, $pid);
}

# 1. Killed while the copy is done and the swap waits for its lock: a
#    reader holds ACCESS SHARE on the log.
{
	my ($in, $out) = ("BEGIN;\nLOCK TABLE event_store.events IN ACCESS SHARE MODE;\nSELECT 'locked';\n", '');
	my $locker = IPC::Run::start([ 'psql', '-X', '-At', '-d', $node->connstr('postgres') ], '<', \$in, '>', \$out);
	for (1 .. 400) { $locker->pump_nb; last if $out =~ /locked/; usleep(10_000); }
	like($out, qr/locked/, 'a reader holds the log');
	my ($h, $pid) = start_scavenge();
	ok($pid ne '', 'the scavenge started');
	my $waiting = '';
	for (1 .. 3000)
	{
		$waiting = $node->safe_psql('postgres', "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid");
		last if $waiting eq 'Lock';
		usleep(20_000);
	}
	is($waiting, 'Lock', 'the scavenge copied and waits at the swap');
	crash_and_restart();
	eval { $h->finish; };
	eval { $locker->kill_kill; };
	is(check_consistent('killed at the swap'), 'before', 'killed at the swap: the log is as before');
}

# 2. Killed at increasing delays after the scavenge started.
my $outcome = 'before';
for my $delay_ms (0, 20, 60, 150, 300, 600, 1200)
{
	my ($h, $pid) = start_scavenge();
	usleep($delay_ms * 1000);
	crash_and_restart();
	eval { $h->finish; };
	$outcome = check_consistent("killed after ${delay_ms} ms");
	note("killed after ${delay_ms} ms: $outcome");
	last if $outcome eq 'after';
}

# 3. A scavenge that completes, then a crash: the result is durable.
if ($outcome eq 'before')
{
	is($node->safe_psql('postgres', "SELECT event_store.scavenge('$part')"), '30000', 'a completed scavenge removes 30000 events');
}
is($node->safe_psql('postgres', $state_sql), $after, 'the partition holds exactly the survivors');
crash_and_restart();
is(check_consistent('crash after the scavenge committed'), 'after', 'the completed scavenge survives a crash');
is($node->safe_psql('postgres', "SELECT event_store.scavenge('$part')"), '0', 'nothing left to scavenge');
is($node->safe_psql('postgres', "SELECT count(*) FROM event_store.read_category('acct', 0, 1000000)"),
	'70000', 'readers see the 70000 surviving events');

$node->stop;
done_testing();
