# Issue 28: pg_dump / pg_restore of a log with deleted, tombstoned,
# truncated streams and stream metadata.  The lifecycle state lives in
# event_store.streams (dumped with its rows), so after a restore the same
# events are hidden, the tombstone still refuses appends (ES006) and a
# soft-deleted stream is still recreated with continuing versions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('lifecycle_dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
    CREATE EXTENSION event_store;
    SELECT event_store.append('acct-' || i, ARRAY[
        event_store.event('Opened', jsonb_build_object('n', i)),
        event_store.event('Deposited', jsonb_build_object('n', i)),
        event_store.event('Deposited', jsonb_build_object('n', i))])
      FROM generate_series(1, 6) i;
    SELECT event_store.delete_stream('acct-1', reason => 'closed');
    SELECT event_store.delete_stream('acct-2', hard => true, reason => 'erasure');
    SELECT event_store.truncate_stream('acct-3', 3);
    SELECT event_store.set_stream_metadata('acct-4', '{"max_count": 1, "owner": "x"}');
});

my $lifecycle = q{
    SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s', stream_id, version, state, first_visible_version,
                      max_count, metadata_version, event_store.stream_metadata(stream_id)), ',' ORDER BY stream_id)
      FROM event_store.stream_lifecycle
};
my $visible = q{
    SELECT string_agg(format('%s:%s', stream_id, stream_version), ',' ORDER BY global_position)
      FROM event_store.read_all() WHERE stream_id LIKE 'acct-%'
};
my %want = (
    lifecycle => $node->safe_psql('src', $lifecycle),
    visible   => $node->safe_psql('src', $visible),
    audits    => $node->safe_psql('src', q{SELECT count(*) FROM event_store.events WHERE stream_id = '$audit-deletions'}),
);
is($want{audits}, '3', 'three audit events before the dump');
my $tmp = PostgreSQL::Test::Utils::tempdir;

my @restores = (
    [ 'plain',  [ 'pg_dump', '-Fp', '-f', "$tmp/dump.sql" ],
                [ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/dump.sql" ] ],
    [ 'custom', [ 'pg_dump', '-Fc', '-f', "$tmp/dump.custom" ],
                [ 'pg_restore', '--exit-on-error', "$tmp/dump.custom" ] ],
);

foreach my $r (@restores) {
    my ($name, $dump, $restore) = @$r;
    my $db = "dst_$name";
    $node->command_ok([ @$dump, '-d', $node->connstr('src') ], "$name: pg_dump");
    $node->safe_psql('postgres', "CREATE DATABASE $db");
    $node->command_ok([ @$restore, '-d', $node->connstr($db) ], "$name: restore");

    is($node->safe_psql($db, $lifecycle), $want{lifecycle}, "$name: lifecycle state identical");
    is($node->safe_psql($db, $visible), $want{visible}, "$name: same events visible");
    is($node->safe_psql($db, q{SELECT count(*) FROM event_store.events WHERE stream_id = '$audit-deletions'}),
       $want{audits}, "$name: audit events restored");

    my ($ret, $out, $err) = $node->psql($db, q{SELECT event_store.append_event('acct-2', 'Deposited', '{}')});
    like($err, qr/stream "acct-2" is tombstoned/, "$name: tombstone still refuses appends");
    is($node->safe_psql($db, q{SELECT count(*) FROM event_store.events WHERE stream_id = 'acct-2'}),
       '3', "$name: nothing appended to the tombstoned stream");
    is($node->safe_psql($db, q{SELECT event_store.append_event('acct-1', 'Reopened', '{}', expected_version => 3)}),
       '4', "$name: soft-deleted stream recreated at version 4");
    is($node->safe_psql($db, q{SELECT string_agg(stream_version::text, ',') FROM event_store.read_stream('acct-1')}),
       '4', "$name: only the new event of the recreated stream is read");
}

done_testing();
