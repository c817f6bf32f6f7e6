# Issue 28: logical replication of stream deletions, truncations and
# metadata.  The state is in event_store.streams (publication
# event_store_streams), so a subscriber hides the same events as the
# publisher, and later appends to a recreated stream replicate too.
# Since 1.12: a scavenge on the publisher is local (the subscriber keeps
# and hides the events) and replication goes on after it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $preload = "shared_preload_libraries = 'event_store'\n";

my $pa = PostgreSQL::Test::Cluster->new('lc_publisher');
$pa->init(allows_streaming => 'logical');
$pa->append_conf('postgresql.conf', $preload);
$pa->start;
$pa->safe_psql('postgres', q{
    CREATE EXTENSION event_store;
    SELECT event_store.append('acct-' || i, ARRAY[
        event_store.event('Opened', jsonb_build_object('n', i)),
        event_store.event('Deposited', jsonb_build_object('n', i)),
        event_store.event('Deposited', jsonb_build_object('n', i))])
      FROM generate_series(1, 6) i;
    SELECT event_store.create_publication();
});

my $sb = PostgreSQL::Test::Cluster->new('lc_subscriber');
$sb->init;
$sb->append_conf('postgresql.conf', $preload);
$sb->start;
$sb->safe_psql('postgres', 'CREATE EXTENSION event_store');
my $oldest = $pa->safe_psql('postgres', 'SELECT min(recorded_at) FROM event_store.events');
$sb->safe_psql('postgres', "SELECT event_store.ensure_partitions('$oldest', now() + interval '2 months')");
my $a_conn = $pa->connstr('postgres') =~ s/'/''/gr;
$sb->safe_psql('postgres', qq{
    CREATE SUBSCRIPTION lc_from_a CONNECTION '$a_conn'
        PUBLICATION event_store, event_store_streams});
$sb->wait_for_subscription_sync($pa, 'lc_from_a');

# The lifecycle changes, then an append that recreates a soft-deleted stream.
$pa->safe_psql('postgres', q{
    SELECT event_store.delete_stream('acct-1', reason => 'closed');
    SELECT event_store.delete_stream('acct-2', hard => true, reason => 'erasure');
    SELECT event_store.truncate_stream('acct-3', 3);
    SELECT event_store.set_stream_metadata('acct-4', '{"max_count": 1, "owner": "x"}');
});
$pa->safe_psql('postgres', q{SELECT event_store.append_event('acct-1', 'Reopened', '{}', expected_version => 3)});
$pa->wait_for_catchup('lc_from_a');

my %q = (
    lifecycle => q{
        SELECT string_agg(format('%s|%s|%s|%s|%s|%s', stream_id, version, state, first_visible_version,
                          max_count, event_store.stream_metadata(stream_id)), ',' ORDER BY stream_id)
          FROM event_store.stream_lifecycle},
    visible => q{
        SELECT string_agg(format('%s:%s', stream_id, stream_version), ',' ORDER BY global_position)
          FROM event_store.read_all(0, 100000) WHERE stream_id LIKE 'acct-%'},
    stream_reads => q{
        SELECT string_agg(format('%s:%s', i, (SELECT string_agg(stream_version::text, ' ')
                                                FROM event_store.read_stream('acct-' || i))), ',')
          FROM generate_series(1, 6) i},
    audits => q{SELECT count(*) FROM event_store.events WHERE stream_id = '$audit-deletions'},
);
foreach my $k (sort keys %q) {
    my $want = $pa->safe_psql('postgres', $q{$k});
    ok($want ne '', "A: $k is not empty");
    is($sb->safe_psql('postgres', $q{$k}), $want, "B: $k as on A");
}
is($sb->safe_psql('postgres', q{SELECT string_agg(stream_version::text, ' ') FROM event_store.read_stream('acct-1')}),
   '4', 'B: the recreated stream shows only its new event');
is($sb->safe_psql('postgres', q{SELECT state FROM event_store.stream_lifecycle WHERE stream_id = 'acct-2'}),
   'tombstoned', 'B: the tombstone replicated');

# 1.12: a scavenge is local.  Events restored into a closed partition on A
# replicate to B; after a hard delete and a scavenge on A (its DDL is not
# replicated, its copy is made in a table that is not yet published), B
# still holds the events and hides them, replication goes on, and B can
# scavenge them itself.
$sb->safe_psql('postgres', "SELECT event_store.ensure_partitions('2020-01-01', '2020-01-02')");
$pa->safe_psql('postgres', q{
    SELECT event_store.ensure_partitions('2020-01-01', '2020-01-02');
    INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                    event_id, recorded_at, occurred_at, transaction_id)
    SELECT nextval('event_store.global_position_seq'), 'old-' || s, v, 'Tick', '{}', gen_random_uuid(),
           '2020-01-10'::timestamptz + (s * 10 + v) * interval '1 second', '2020-01-10', pg_current_xact_id()
      FROM generate_series(1, 2) s, generate_series(1, 3) v ORDER BY s, v;
    INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
    SELECT stream_id, 'old', max(stream_version), min(recorded_at), max(recorded_at), min(global_position), max(global_position)
      FROM event_store.events WHERE stream_id LIKE 'old-%' GROUP BY stream_id;
});
$pa->wait_for_catchup('lc_from_a');
is($sb->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream_id LIKE 'old-%'}),
   '6', 'B: the restored events replicated');
my $old_part = $pa->safe_psql('postgres',
    "SELECT partition FROM event_store.partition_ranges() WHERE '2020-01-10' >= range_start AND '2020-01-10' < range_end");
$pa->safe_psql('postgres', q{SELECT event_store.delete_stream('old-1', hard => true)});
is($pa->safe_psql('postgres', "SELECT event_store.scavenge('$old_part')"), '3', 'A: scavenge removed old-1');
$pa->safe_psql('postgres', q{SELECT event_store.append_event('acct-5', 'AfterScavenge', '{}')});
$pa->wait_for_catchup('lc_from_a');
is($pa->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream_id = 'old-1'}),
   '0', 'A: old-1 is gone from the log');
is($sb->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE stream_id = 'old-1'}),
   '3', 'B: the scavenge is local, B keeps old-1');
is($sb->safe_psql('postgres', q{SELECT count(*) FROM event_store.read_stream('old-1')}),
   '0', 'B: and hides it (the tombstone replicated)');
is($sb->safe_psql('postgres', q{SELECT count(*) FROM event_store.events WHERE event_type = 'AfterScavenge'}),
   '1', 'B: replication goes on after the scavenge');
my $b_part = $sb->safe_psql('postgres',
    "SELECT partition FROM event_store.partition_ranges() WHERE '2020-01-10' >= range_start AND '2020-01-10' < range_end");
is($sb->safe_psql('postgres', "SELECT event_store.scavenge('$b_part')"), '3', 'B: its own scavenge removes old-1 there');

done_testing();
