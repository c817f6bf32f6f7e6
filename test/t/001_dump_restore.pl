# pg_dump / pg_restore of a database using event_store: events, streams,
# positions and partitions come back identical, append-only still holds and
# appends continue at the right versions and positions.  Plain-text,
# custom-format and parallel directory-format restores are all checked.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
    CREATE EXTENSION event_store;
    SELECT event_store.append('booking-' || i, ARRAY[
        event_store.event('BookingCreated', jsonb_build_object('n', i), '{"by": "tap"}'),
        event_store.event('SeatAssigned', jsonb_build_object('seat', i || 'A'))])
      FROM generate_series(1, 50) i;
    SELECT event_store.append_event('booking-1', 'BookingPaid', '{"amount": 10}', expected_version => 2);
    -- an extra, older partition (recorded_at is the store's, so make it directly)
    SELECT event_store._create_partition_for('2020-01-15');
});

my $snapshot = q{
    SELECT md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s', global_position, stream_id, stream_version,
                 event_type, data, metadata, event_id, recorded_at, occurred_at), ',' ORDER BY global_position))
      FROM event_store.events
};
my $streams = q{
    SELECT md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s', stream_id, category, version, created_at, updated_at,
                 first_position, last_position), ',' ORDER BY stream_id))
      FROM event_store.streams
};
my $parts = q{SELECT string_agg(format('%s %s %s %s', partition, range_start, range_end, access_method), ',' ORDER BY range_start)
                FROM event_store.partition_info};

my %want = (
    events     => $node->safe_psql('src', $snapshot),
    streams    => $node->safe_psql('src', $streams),
    partitions => $node->safe_psql('src', $parts),
);
my $tmp = PostgreSQL::Test::Utils::tempdir;

my @restores = (
    [ 'plain',    [ 'pg_dump', '-Fp', '-f', "$tmp/dump.sql" ],
                  [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/dump.sql" ] ],
    [ 'custom',   [ 'pg_dump', '-Fc', '-f', "$tmp/dump.custom" ],
                  [ 'pg_restore', '--exit-on-error', "$tmp/dump.custom" ] ],
    [ 'parallel', [ 'pg_dump', '-Fd', '-j', '2', '-f', "$tmp/dump.dir" ],
                  [ 'pg_restore', '--exit-on-error', '-j', '2', "$tmp/dump.dir" ] ],
);

foreach my $r (@restores) {
    my ($name, $dump, $restore) = @$r;
    my $db = "dst_$name";
    $node->command_ok([ @$dump, '-d', $node->connstr('src') ], "$name: pg_dump");
    $node->safe_psql('postgres', "CREATE DATABASE $db");
    $node->command_ok([ @$restore, '-d', $node->connstr($db) ], "$name: restore");

    is($node->safe_psql($db, $snapshot), $want{events}, "$name: events identical");
    is($node->safe_psql($db, $streams), $want{streams}, "$name: streams identical");
    is($node->safe_psql($db, $parts), $want{partitions}, "$name: partitions identical");

    my ($ret, $out, $err) = $node->psql($db, 'DELETE FROM event_store.events');
    like($err, qr/append-only/, "$name: DELETE still refused");
    ($ret, $out, $err) = $node->psql($db, 'UPDATE event_store.events SET data = \'{}\'');
    like($err, qr/append-only/, "$name: UPDATE still refused");
    ($ret, $out, $err) = $node->psql($db, 'TRUNCATE event_store.events');
    like($err, qr/append-only/, "$name: TRUNCATE still refused");

    is($node->safe_psql($db, q{SELECT event_store.append_event('booking-1', 'Checked', '{}', expected_version => 3)}),
       '4', "$name: appends continue at the right version");
    is($node->safe_psql($db, q{SELECT global_position > (SELECT max(global_position) FROM event_store.events WHERE stream_version < 4 OR stream_id <> 'booking-1')
                                 FROM event_store.events WHERE stream_id = 'booking-1' AND stream_version = 4}),
       't', "$name: positions continue after the restored ones");
    is($node->safe_psql($db, q{SELECT event_store.append_event('newcomer-1', 'Hello', '{}', expected_version => 0)}),
       '1', "$name: new streams work");
}

$node->stop;
done_testing();
