# Persistence (issue 25 item 5): an event partition can never become
# UNLOGGED, so a crash never empties one while event_store.streams keeps
# the old versions.  In both modes (library preloaded, and not: the event
# trigger guard), SET UNLOGGED on a partition, on the parent and on the
# archive parent, CREATE UNLOGGED TABLE ... PARTITION OF and attaching an
# unlogged table are refused with ES003; after an immediate shutdown (crash
# recovery) every acknowledged event is there and the streams agree.  A
# plain unlogged table, emptied by the same recovery, shows that the crash
# really resets unlogged storage.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

for my $preload ('event_store', '')
{
	my $mode = $preload ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'unlogged_pre' : 'unlogged_nopre');
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = '$preload'\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

	# 40 acknowledged events on 8 streams, in a fresh session each time.
	for my $i (1 .. 40)
	{
		my $s = $i % 8;
		$node->safe_psql('postgres',
			"SELECT event_store.append_event('acct-$s', 'Tick', jsonb_build_object('i', $i))");
	}
	$node->safe_psql('postgres',
		'CREATE UNLOGGED TABLE canary AS SELECT g FROM generate_series(1, 10) g; CHECKPOINT;');

	my @parts = split /\n/, $node->safe_psql('postgres',
		'SELECT partition FROM event_store.partition_ranges()');
	ok(@parts > 0, "$mode: the log has partitions");

	my @attempts = (
		(map { "ALTER TABLE $_ SET UNLOGGED" } @parts),
		'ALTER TABLE event_store.events SET UNLOGGED',
		'ALTER TABLE event_store_archive.events SET UNLOGGED',
		"CREATE UNLOGGED TABLE event_store.u1 PARTITION OF event_store.events FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') USING event_store_log",
		"CREATE UNLOGGED TABLE event_store.u2 (LIKE event_store.events) USING event_store_log; "
		  . "ALTER TABLE event_store.events ATTACH PARTITION event_store.u2 FOR VALUES FROM ('2300-01-01') TO ('2300-02-01')",
	);
	for my $sql (@attempts)
	{
		my ($ret, $out, $err) = $node->psql('postgres',
			"\\set VERBOSITY sqlstate\nBEGIN;\n$sql;\nCOMMIT;", on_error_stop => 1);
		like($err, qr/ES003/, "$mode: refused with ES003: $sql");
	}
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_class c JOIN pg_am am ON am.oid = c.relam
		  WHERE am.amname = 'event_store_log' AND c.relpersistence <> 'p'"),
		'0', "$mode: no event table is unlogged");

	# Crash: immediate shutdown, recovery on start.
	$node->stop('immediate');
	$node->start;

	is($node->safe_psql('postgres', 'SELECT count(*) FROM canary'), '0',
		"$mode: the crash emptied a plain unlogged table (recovery did reset unlogged storage)");
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM event_store.events WHERE stream_id LIKE 'acct-%'"),
		'40', "$mode: all 40 acknowledged events are there after the crash");
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM event_store.streams s
		  WHERE s.stream_id LIKE 'acct-%'
		    AND s.version <> (SELECT max(e.stream_version) FROM event_store.events e WHERE e.stream_id = s.stream_id)"),
		'0', "$mode: event_store.streams agrees with the events");
	$node->safe_psql('postgres', "SELECT event_store.append_event('acct-1', 'After', '{}')");
	is($node->safe_psql('postgres', "SELECT event_store.stream_version('acct-1')"), '6',
		"$mode: appends continue at the next version");
	$node->stop;
}

done_testing();
